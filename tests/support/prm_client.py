"""A real OAuth client's discovery against bearer-guard: the MCP Python SDK's own
functions (mcp.client.auth.utils, as its OAuthClientProvider runs them) take the
resource_metadata URL from a 401, fetch the protected-resource metadata document, then
the authorization server's metadata. Prints what the client learned, as JSON.

Usage: python prm_client.py <resource URL>   (run by tests/e2e/resource.rs)
"""

import asyncio
import json
import sys

import httpx
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    get_client_metadata_scopes,
    handle_auth_metadata_response,
    handle_protected_resource_response,
)


async def discover(server_url: str) -> dict:
    async with httpx.AsyncClient(timeout=10) as client:
        challenge = await client.get(server_url)
        metadata_url = extract_resource_metadata_from_www_auth(challenge)
        prm = None
        for url in build_protected_resource_metadata_discovery_urls(metadata_url, server_url):
            prm = await handle_protected_resource_response(await client.get(url))
            if prm is not None:
                break
        if prm is None:
            return {"status": challenge.status_code, "resource_metadata": metadata_url}
        server = str(prm.authorization_servers[0])
        meta = None
        for url in build_oauth_authorization_server_metadata_discovery_urls(server, server_url):
            _, meta = await handle_auth_metadata_response(await client.get(url))
            if meta is not None:
                break
        return {
            "status": challenge.status_code,
            "resource_metadata": metadata_url,
            "resource": str(prm.resource),
            "authorization_server": server,
            "issuer": str(meta.issuer) if meta else None,
            "token_endpoint": str(meta.token_endpoint) if meta else None,
            "scope": get_client_metadata_scopes(extract_scope_from_www_auth(challenge), prm, meta),
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(discover(sys.argv[1]))))
