"""The AI gateway's provider keys: which it sees and where each comes from, never a value.

Request:    GET /v1/keys (409 when the backend runs no gateway)

(The agent's own gateway token is rotated by POST /v1/sandbox/rotate-token, a sandbox
operation: see sandbox_routes.)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from moltconsole_backend.api.answers import error
from moltconsole_backend.gateway.keys import key_rows
from moltconsole_backend.gateway.service import GatewayService


def key_routes(gateway: GatewayService | None) -> list[BaseRoute]:
    """The keys report of ``gateway`` (None: a backend without one says so)."""

    async def keys(_: Request) -> Response:
        if gateway is None:
            return error("operation", "this backend runs no AI gateway", 409)
        return JSONResponse(await asyncio.to_thread(keys_report, gateway))

    return [Route("/v1/keys", keys)]


def keys_report(gateway: GatewayService) -> dict[str, Any]:
    """``GET /v1/keys``: the keys the gateway sees (``key_rows``: names, sources, masked hints),
    what the providers in use lack, and the keys file's path and state. Values never leave."""
    return {
        "keys_file": str(gateway.settings.keys_path),
        "keys_file_error": gateway.keys_file_error(),
        "keys": key_rows(gateway.settings.gateway, gateway.env),
        "missing": [m.to_json() for m in gateway.missing_keys()],
        "pid": os.getpid(),
    }
