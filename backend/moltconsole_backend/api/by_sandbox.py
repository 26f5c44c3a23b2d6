"""Requests to one sandbox, by name: ``/v1/sandboxes/NAME/RESOURCE`` to that sandbox's app.

Each sandbox has an app of its own (its status, operations, events, stats, logs, devices and
exec, memory, built once by ``sandbox_app``). This router reads the name, finds the sandbox in the
fleet and hands the request to its app at the resource's path there; the older unprefixed
paths (``/v1/status``, ``/v1/sandbox/start``, ``/v1/logs``...) go to the default sandbox's app;
everything else (health, the list of sandboxes, keys, costs) to the backend's own routes.

An unknown sandbox or resource is the error body with 404; a WebSocket handshake is refused
with the same answer (the denial response), so the client reads the same error either way.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from moltconsole_backend.api.answers import error, refuse
from moltconsole_backend.api.sandbox_routes import ACTIONS
from moltconsole_backend.fleet import Sandbox, SandboxFleet, UnknownSandbox

PREFIX = "/v1/sandboxes/"
# The first part of a resource under /v1/sandboxes/NAME/ -> its path in the sandbox's app.
RESOURCES: dict[str, str] = {
    "status": "/v1/status",
    "processes": "/v1/sandbox/processes",
    "events": "/v1/events",
    "stats": "/v1/stats",
    "logs": "/v1/logs",
    "exec": "/v1/exec",
    "devices": "/v1/devices",
    "memory": "/v1/memory",
    **{verb: f"/v1/sandbox/{verb}" for verb in ACTIONS},
}
_DEFAULT_PATHS = frozenset(RESOURCES.values())


def _default_sandbox_path(path: str) -> bool:
    return path in _DEFAULT_PATHS or path.startswith(("/v1/devices/", "/v1/memory/"))


class SandboxRouter:
    """The API's entry: per-sandbox requests to their sandbox's app, the rest to ``backend``."""

    def __init__(
        self, fleet: SandboxFleet, backend: ASGIApp, sandbox_app: Callable[[Sandbox], ASGIApp],
    ) -> None:
        self.fleet = fleet
        self.backend = backend
        self._make = sandbox_app
        self._apps: dict[str, tuple[Sandbox, ASGIApp]] = {}

    def _app(self, sandbox: Sandbox) -> ASGIApp:
        built = self._apps.get(sandbox.name)
        if built is None or built[0] is not sandbox:  # new, or removed and added again
            built = (sandbox, self._make(sandbox))
            self._apps[sandbox.name] = built
        return built[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.backend(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(PREFIX):
            name, slash, resource = path[len(PREFIX):].partition("/")
            if slash and resource:
                await self._by_name(name, resource, scope, receive, send)
                return
        elif _default_sandbox_path(path):
            await self._app(self.fleet.default)(scope, receive, send)
            return
        await self.backend(scope, receive, send)

    async def _by_name(self, name: str, resource: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            sandbox = self.fleet.get(name)
        except UnknownSandbox as exc:
            await _not_found(str(exc), scope, receive, send)
            return
        first, slash, rest = resource.partition("/")
        target = RESOURCES.get(first)
        if target is None:
            known = ", ".join(sorted(RESOURCES))
            await _not_found(
                f"a sandbox has no resource {first!r}; it has: {known}", scope, receive, send
            )
            return
        inner = target + (f"/{rest}" if slash else "")
        await self._app(sandbox)(dict(scope, path=inner, raw_path=inner.encode()), receive, send)


async def _not_found(message: str, scope: Scope, receive: Receive, send: Send) -> None:
    answer = error("not_found", message, 404)
    if scope["type"] == "websocket":
        ws = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await ws.send_denial_response(answer)
        else:  # a server without denial responses: accept, tell, close
            await ws.accept()
            await refuse(ws, "not_found", message)
        return
    await answer(scope, receive, send)
