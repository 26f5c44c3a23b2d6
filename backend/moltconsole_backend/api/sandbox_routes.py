"""One sandbox: its status, and what the user asks it to do.

Requests:   GET  /v1/status, /v1/sandbox/processes
            POST /v1/sandbox/{start,stop,restart,destroy,rebuild,rotate-token}
(paths in the sandbox's own app: ``by_sandbox.py`` serves them as
``/v1/sandboxes/NAME/{status,processes,start,...}``, and at these paths for the default sandbox)

An operation answers the status it led to (``SandboxStatus``); with ``{"wait": false}`` it
answers 202 with the status at once and goes on in the background (the caller follows
/v1/events). ``rebuild`` takes ``{"version": "2026.9.6"}`` to change the OpenClaw version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from moltconsole_backend.api.answers import answer, error, guarded, json_body
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.logs.collector import LogCollector
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_shared.wire.memory import MEMORY_STATUS, MemoryStatus
from moltconsole_shared.wire.sandbox import SANDBOX_STATUS

ACTIONS = ("start", "stop", "restart", "destroy", "rebuild", "rotate-token")
# Operations started with {"wait": false}, kept until they end (a task nobody holds may vanish).
_background: set[asyncio.Task[Any]] = set()


def sandbox_routes(
    manager: SandboxManager, logs: LogCollector | None, gateway: GatewayService | None,
    name: str | None = None, memory: Callable[[], MemoryStatus] | None = None,
) -> list[BaseRoute]:
    """Status, processes and the operations on ``manager``'s sandbox (called ``name``; None:
    the default); ``memory`` gives its memory's sync status for the status answer."""

    async def status(_: Request) -> Response:
        body = manager.status.to_json()
        body["gateway"] = gateway.status(name) if gateway is not None else None
        body["log_lines_not_kept"] = logs.lines_not_kept if logs is not None else None  # disk full
        body["memory"] = MEMORY_STATUS.dump(memory()) if memory is not None else None
        return JSONResponse(body)

    def action(verb: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            body = await json_body(request)
            if isinstance(body, Response):
                return body

            async def run() -> Response:
                if verb == "rebuild":
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
                elif verb == "rotate-token":
                    result = await manager.rotate_token()
                else:
                    result = await getattr(manager, verb)()
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
        Route("/v1/status", status),
        Route("/v1/sandbox/processes", processes),
        *(Route(f"/v1/sandbox/{verb}", action(verb), methods=["POST"]) for verb in ACTIONS),
    ]
