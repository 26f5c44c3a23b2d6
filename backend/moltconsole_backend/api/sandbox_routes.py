"""The sandbox itself: who answers, its status, and what the user asks it to do.

Requests:   GET  /v1/health, /v1/status, /v1/sandbox/processes
            POST /v1/sandbox/{start,stop,restart,destroy,rebuild,rotate-token}

An operation answers the status it led to (``SandboxStatus``); with ``{"wait": false}`` it
answers 202 with the status at once and goes on in the background (the caller follows
/v1/events). ``rebuild`` takes ``{"version": "2026.9.6"}`` to change the OpenClaw version.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from moltconsole_backend.api.answers import answer, error, guarded, json_body
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.logs.collector import LogCollector
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_shared import __version__
from moltconsole_shared.wire.sandbox import SANDBOX_STATUS

ACTIONS = ("start", "stop", "restart", "destroy", "rebuild", "rotate-token")
# Operations started with {"wait": false}, kept until they end (a task nobody holds may vanish).
_background: set[asyncio.Task[Any]] = set()


def sandbox_routes(
    manager: SandboxManager, logs: LogCollector | None, gateway: GatewayService | None
) -> list[BaseRoute]:
    """Health, status, processes and the operations on ``manager``'s sandbox."""
    started = time.time()

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "backend": "moltconsole",
                "version": __version__,
                "pid": os.getpid(),
                "uptime": time.time() - started,
                "gateway": gateway.status() if gateway is not None else None,
            }
        )

    async def status(_: Request) -> Response:
        body = manager.status.to_json()
        body["gateway"] = gateway.status() if gateway is not None else None
        body["log_lines_not_kept"] = logs.lines_not_kept if logs is not None else None  # disk full
        return JSONResponse(body)

    def action(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            body = await json_body(request)
            if isinstance(body, Response):
                return body

            async def run() -> Response:
                if name == "rebuild":
                    version = body.get("version")
                    if version is not None and not isinstance(version, str):
                        return error("request", "'version' must be a string such as 2026.9.6", 400)
                    if version:
                        from moltconsole_backend.settings import SandboxSettings

                        try:
                            SandboxSettings(openclaw_version=version)
                        except ValueError:
                            return error("request", f"{version!r} is not an OpenClaw version", 400)
                    result = await manager.rebuild(version or None)
                elif name == "rotate-token":
                    result = await manager.rotate_token()
                else:
                    result = await getattr(manager, name)()
                return answer(SANDBOX_STATUS, result)

            if body.get("wait", True):
                return await guarded(run)
            # Fire and forget: the caller follows /v1/events.
            task = asyncio.get_running_loop().create_task(guarded(run))
            _background.add(task)
            task.add_done_callback(_background.discard)
            return answer(SANDBOX_STATUS, manager.status, 202)

        return handler

    async def processes(_: Request) -> Response:
        async def run() -> Response:
            return JSONResponse(await manager.processes())

        return await guarded(run)

    return [
        Route("/v1/health", health),
        Route("/v1/status", status),
        Route("/v1/sandbox/processes", processes),
        *(Route(f"/v1/sandbox/{name}", action(name), methods=["POST"]) for name in ACTIONS),
    ]
