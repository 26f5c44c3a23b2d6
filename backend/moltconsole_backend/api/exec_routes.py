"""A command run in the sandbox, its output streamed as it comes.

Stream:     WS /v1/exec: the client sends ``{"cmd": ["prog", "arg", ...]}``; the backend sends
               binary frames (``moltconsole_shared.wire.exec``: the stream, then the bytes) and, last,
               ``{"exit_code": n}``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole_backend.api.answers import refuse
from moltconsole_backend.api.streams import forward
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_shared.wire.exec import STDERR, STDOUT, frame


def exec_routes(manager: SandboxManager) -> list[BaseRoute]:
    """Commands in ``manager``'s sandbox."""

    async def run(ws: WebSocket) -> None:
        await ws.accept()
        try:
            request = await ws.receive_json()
            cmd = request.get("cmd") if isinstance(request, dict) else None
            if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
                await refuse(ws, "request", 'send {"cmd": ["prog", "arg", ...]}')
                return
        except (WebSocketDisconnect, RuntimeError, ValueError):
            return

        async def send(item: tuple[str, bytes] | int) -> None:
            if isinstance(item, int):
                await ws.send_json({"exit_code": item})
            else:
                await ws.send_bytes(frame(STDOUT if item[0] == "stdout" else STDERR, item[1]))

        await forward(ws, manager.exec_stream(cmd), send)

    return [WebSocketRoute("/v1/exec", run)]
