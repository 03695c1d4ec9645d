"""A real MCP client through Envoy: the MCP Python SDK's ClientSession over Streamable
HTTP with a bearer token. Runs the steps given and prints one JSON line per step:
`list` → {"tools": [names]}, `prompts` → {"prompts": [names]}, `resources` →
{"resources": [uris]}, `call:NAME` → {"call": NAME, "text": ...} or {"call": NAME,
"error": ...}.

Usage: python mcp_client.py URL TOKEN STEP...   (run by tests/e2e/mcp.rs)
"""

import asyncio
import json
import sys
from datetime import timedelta

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def run(url: str, token: str, steps: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with streamablehttp_client(url, headers=headers, timeout=10) as (read, write, _):
        async with ClientSession(read, write, read_timeout_seconds=timedelta(seconds=10)) as session:
            await session.initialize()
            for step in steps:
                if step == "list":
                    tools = await session.list_tools()
                    out = {"tools": [t.name for t in tools.tools]}
                elif step == "prompts":
                    prompts = await session.list_prompts()
                    out = {"prompts": [p.name for p in prompts.prompts]}
                elif step == "resources":
                    resources = await session.list_resources()
                    out = {"resources": [str(r.uri) for r in resources.resources]}
                elif step.startswith("call:"):
                    name = step[5:]
                    args = {"query": "chairs"} if name == "search_items" else {}
                    if name == "delete_index":
                        args = {"index": "main"}
                    try:
                        result = await session.call_tool(name, args)
                        out = {"call": name, "text": result.content[0].text}
                    except Exception as e:  # the transport's error for a refused call
                        out = {"call": name, "error": type(e).__name__}
                else:
                    raise SystemExit(f"unknown step {step}")
                print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3:]))
