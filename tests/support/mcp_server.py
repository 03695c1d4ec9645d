"""A real MCP server for the end-to-end tests: the MCP Python SDK's FastMCP over
Streamable HTTP (POST /mcp), answering with JSON (`json`) or server-sent events (`sse`).
Every tool that runs appends its name to CALLS, so a test can tell that a refused call
never reached the server.

Usage: python mcp_server.py PORT json|sse CALLS   (run by tests/e2e/mcp.rs)
"""

import sys

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings

port, mode, calls = int(sys.argv[1]), sys.argv[2], sys.argv[3]

server = FastMCP(
    "items",
    host="127.0.0.1",
    port=port,
    json_response=(mode == "json"),
    stateless_http=True,
    log_level="WARNING",
    # Envoy forwards the client's Host; the filter in front is what guards this server.
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)


def ran(name: str) -> None:
    with open(calls, "a", encoding="utf-8") as f:
        f.write(name + "\n")


@server.tool()
def search_items(query: str) -> str:
    """Searches the catalogue."""
    ran("search_items")
    return f"found {query}"


@server.tool()
def delete_index(index: str) -> str:
    """Deletes a search index."""
    ran("delete_index")
    return f"deleted {index}"


@server.tool()
def export_items() -> str:
    """Exports every item."""
    ran("export_items")
    return "exported"


@server.prompt()
def summary() -> str:
    """Summarises the catalogue."""
    return "Summarise the catalogue."


@server.prompt()
def audit() -> str:
    """Audits the catalogue."""
    return "Audit the catalogue."


@server.resource("file:///public/readme.md")
def readme() -> str:
    return "read me"


@server.resource("file:///private/keys.md")
def keys() -> str:
    return "secret"


server.run(transport="streamable-http")
