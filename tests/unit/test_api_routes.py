"""The API is assembled from one module of routes per domain (service.create_app): every route
of version 1 is there once, with its methods, whatever the backend runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.routing import Route, WebSocketRoute

from moltconsole_backend.api.service import create_app
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import Settings
from tests.unit.test_manager_events import StubEngine
from tests.unit.test_manager_events import settings as settings  # the fixture

HTTP = {
    ("/v1/health", "GET"), ("/v1/status", "GET"), ("/v1/sandbox/processes", "GET"),
    ("/v1/devices", "GET"), ("/v1/keys", "GET"),
    ("/v1/devices/{request_id}/{decision}", "POST"),
    *((f"/v1/sandbox/{name}", "POST")
      for name in ("start", "stop", "restart", "destroy", "rebuild", "rotate-token")),
}
STREAMS = {"/v1/events", "/v1/stats", "/v1/exec", "/v1/logs"}


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[SandboxManager]:
    engine = StubEngine()
    yield SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]


async def test_every_route_of_version_1_is_there_once(manager: SandboxManager) -> None:
    app = create_app(manager)
    http = [(r.path, m) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"]
    streams = [r.path for r in app.routes if isinstance(r, WebSocketRoute)]
    assert sorted(http) == sorted(HTTP)
    assert sorted(streams) == sorted(STREAMS)
