"""The API is assembled from one module of routes per domain (service.create_app): every route
of version 1 is there once, with its methods, whatever the backend runs; each sandbox's own
routes are reached by name (by_sandbox.py) and, for the default sandbox, at the first paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.routing import Route, WebSocketRoute

from moltconsole_backend.api.by_sandbox import RESOURCES, SandboxRouter
from moltconsole_backend.api.service import create_app
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import Settings
from tests.unit.test_manager_events import StubEngine
from tests.unit.test_manager_events import settings as settings  # the fixture

BACKEND = {
    ("/v1/health", "GET"), ("/v1/keys", "GET"), ("/v1/sandboxes", "GET"), ("/v1/sandboxes", "POST"),
    ("/v1/sandboxes/{name}", "DELETE"),
}
SANDBOX_HTTP = {
    ("/v1/status", "GET"), ("/v1/sandbox/processes", "GET"),
    ("/v1/devices", "GET"), ("/v1/devices/{request_id}/{decision}", "POST"),
    *((f"/v1/sandbox/{name}", "POST")
      for name in ("start", "stop", "restart", "destroy", "rebuild", "rotate-token")),
    ("/v1/memory", "GET"),
    *((f"/v1/memory/{name}", "GET")
      for name in ("snapshots", "files", "file", "log", "diff", "search", "moltworker", "moltworker/file",
                   "db/tables", "db/rows", "sessions", "conversation")),
    ("/v1/memory/file", "PUT"),
    *((f"/v1/memory/{name}", "POST")
      for name in ("backup", "restore", "verify", "prune", "import-moltworker")),
}
SANDBOX_STREAMS = {"/v1/events", "/v1/stats", "/v1/exec", "/v1/logs"}


def _routes(app: Any) -> tuple[list[tuple[str, str]], list[str]]:
    http = [(r.path, m) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"]
    return http, [r.path for r in app.routes if isinstance(r, WebSocketRoute)]


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[SandboxManager]:
    engine = StubEngine()
    yield SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]


async def test_every_route_of_version_1_is_there_once(manager: SandboxManager) -> None:
    router = create_app(manager)
    assert isinstance(router, SandboxRouter)
    http, streams = _routes(router.backend)
    assert sorted(http) == sorted(BACKEND)
    assert streams == []
    http, streams = _routes(router._app(router.fleet.default))
    assert sorted(http) == sorted(SANDBOX_HTTP)
    assert sorted(streams) == sorted(SANDBOX_STREAMS)


def test_every_resource_by_name_leads_to_a_route_of_the_sandbox() -> None:
    paths = {path for path, _ in SANDBOX_HTTP} | SANDBOX_STREAMS
    assert set(RESOURCES.values()) <= paths
    # Every route of a sandbox is reached by name (devices/{id}/{decision} under "devices").
    assert {p for p in paths if not p.startswith(("/v1/devices/", "/v1/memory/"))} == set(RESOURCES.values())
