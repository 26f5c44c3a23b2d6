"""Every refusal of the API is the one error body (``moltconsole_shared.wire.errors``): on HTTP
with its status, on a stream as the last message before the close; and the console reads each
one back with its kind and words.

The real app over the manager with the stand-in engine of test_manager_events (no container),
HTTP through httpx's ASGI transport, streams through uvicorn on a unix socket.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.service import create_app
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import Settings
from moltconsole_shared.wire.errors import ERROR_BODY, ErrorKind
from tests.unit.test_client import serve_asgi
from tests.unit.test_manager_events import StubEngine
from tests.unit.test_manager_events import settings as settings  # the fixture


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[SandboxManager]:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    try:
        yield manager
    finally:
        await manager.close()


@pytest.mark.parametrize(("method", "path", "body", "status", "kind", "words"), [
    ("POST", "/v1/sandbox/start", b"{not json", 400, "request", "the request body is not valid JSON"),
    ("POST", "/v1/sandbox/stop", b"[1, 2]", 400, "request", "the request body must be a JSON object"),
    ("POST", "/v1/sandbox/rebuild", b'{"version": 5}', 400, "request", "'version' must be a string"),
    ("POST", "/v1/sandbox/rebuild", b'{"version": "x; rm"}', 400, "request", "is not an OpenClaw version"),
    ("POST", "/v1/devices/abc/maybe", b"", 404, "request", "use approve or reject"),
    ("GET", "/v1/keys", b"", 409, "operation", "this backend runs no AI gateway"),
])
async def test_http_refusals_are_the_error_body(
    manager: SandboxManager, method: str, path: str, body: bytes, status: int, kind: str, words: str
) -> None:
    transport = httpx.ASGITransport(app=create_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://moltconsole") as http:
        response = await http.request(method, path, content=body)
    assert response.status_code == status
    error = ERROR_BODY.read(response.json()).error
    assert error.kind == kind and error.kind in get_args(ErrorKind)
    assert words in error.message


@pytest.mark.parametrize(("path", "query", "kind", "words"), [
    ("/v1/events?history=lots", None, "request", "history must be a whole number of events, not 'lots'"),
    ("/v1/exec", {"cmd": "ls -l"}, "request", 'send {"cmd": ["prog", "arg", ...]}'),
    ("/v1/logs", {"tail": 5}, "operation", "logs are not collected"),
])
async def test_stream_refusals_are_the_error_body_then_a_close(
    manager: SandboxManager, path: str, query: dict[str, Any] | None, kind: str, words: str
) -> None:
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    try:
        async with serve_asgi(create_app(manager), root / "s.sock"), BackendClient(root / "s.sock") as client:
            ws = await client._ws(path)
            try:
                if query is not None:
                    await ws.send(json.dumps(query))
                reply = await ws.recv()
                await ws.wait_closed()
            finally:
                await ws.close()
            with pytest.raises(BackendError) as caught:
                async for _ in client._objects(path, "the stream", query):
                    pass
    finally:
        shutil.rmtree(root, ignore_errors=True)
    error = ERROR_BODY.read_json(reply).error
    assert error.kind == kind and words in error.message
    assert (caught.value.kind, str(caught.value)) == (error.kind, error.message)
