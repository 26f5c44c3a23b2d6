"""BackendClient against tiny fake backends on a real unix socket: broken answers become BackendErrors.

Each fake speaks the real wire protocol (HTTP through uvicorn, WebSocket through the websockets
server), and fails the way a dying or buggy backend does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection, unix_serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from moltconsole.client import BackendClient, BackendError, BackendUnreachable, BackendWentAway


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A socket path short enough for sun_path (pytest's tmp_path can be too long)."""
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    yield root / "backend.sock"
    shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, path: Path) -> AsyncIterator[None]:
    """Serve ``app`` with uvicorn on a unix socket that accepts connections from the start.

    The socket is bound and listening before the server task runs, so a client may connect at
    once (the kernel queues it): no waiting for the server to report that it started.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="websockets-sansio",
        ws_ping_interval=None, timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def vanishing_backend(path: Path) -> AsyncIterator[None]:
    """A backend that takes each request and dies before answering.

    Closing with the request still unread makes the kernel reset the connection, so the client
    reads ECONNRESET (httpx.ReadError), as when the real backend is killed mid-request.
    """
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.setblocking(False)

    async def serve() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            await wait_readable(conn.fileno())
            conn.close()

    task = asyncio.create_task(serve())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        listener.close()


async def wait_readable(fd: int) -> None:
    """Until ``fd`` has something to read (data or end of file)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


# --- requests ------------------------------------------------------------------------------
async def test_plain_text_500_becomes_a_backend_error_with_status_and_body(socket_path: Path) -> None:
    body = "Internal Server Error: " + "x" * 400

    async def status(_: Request) -> Response:
        return PlainTextResponse(body, status_code=500)

    async with serve_asgi(Starlette(routes=[Route("/v1/status", status)]), socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError) as caught:
                await client.status()
    message = str(caught.value)
    assert caught.value.status == 500
    assert "HTTP 500" in message and "GET /v1/status" in message
    assert body[:200] in message and body[:201] not in message


async def test_json_error_body_keeps_the_backend_message(socket_path: Path) -> None:
    async def start(_: Request) -> Response:
        return JSONResponse({"error": {"kind": "operation", "message": "port 18789 is in use"}}, 409)

    app = Starlette(routes=[Route("/v1/sandbox/start", start, methods=["POST"])])
    async with serve_asgi(app, socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError) as caught:
                await client.action("start")
    assert (str(caught.value), caught.value.kind, caught.value.status) == (
        "port 18789 is in use", "operation", 409,
    )


async def test_backend_dying_mid_request_is_unreachable_with_the_hint(socket_path: Path) -> None:
    async with vanishing_backend(socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendUnreachable) as caught:
                await client.action("start")
    message = str(caught.value)
    assert str(socket_path) in message and "POST /v1/sandbox/start" in message
    assert "moltconsole serve" in message


async def test_no_backend_is_unreachable(socket_path: Path) -> None:
    async with BackendClient(socket_path) as client:
        with pytest.raises(BackendUnreachable, match="no moltconsole backend answers"):
            await client.health()


# --- streams -------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def ws_backend(path: Path, *, cut_handshake: bool = False) -> AsyncIterator[None]:
    """A WebSocket backend that sends one message per stream, then dies (no closing handshake).

    With ``cut_handshake`` it dies while answering the upgrade request instead.
    """

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/v1/exec":
            await ws.recv()
            await ws.send(b"\x01partial output")
        else:
            await ws.send(json.dumps({"type": "status", "status": {"state": "ready"}}))
        assert ws.transport is not None
        ws.transport.abort()

    def process_request(conn: ServerConnection, request: WsRequest) -> WsResponse | None:
        if cut_handshake:
            assert conn.transport is not None
            conn.transport.abort()
        return None

    async with unix_serve(handler, str(path), process_request=process_request):
        yield


async def _drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


@pytest.mark.parametrize("stream", ["events", "stats", "exec"])
async def test_stream_cut_during_handshake_is_unreachable(socket_path: Path, stream: str) -> None:
    async with ws_backend(socket_path, cut_handshake=True):
        async with BackendClient(socket_path) as client:
            streams: dict[str, Callable[[], AsyncIterator[Any]]] = {
                "events": client.events, "stats": client.stats,
                "exec": lambda: client.exec(["true"]),
            }
            with pytest.raises(BackendUnreachable, match="moltconsole serve"):
                await _drain(streams[stream]())


async def test_exec_cut_mid_stream_says_the_backend_went_away(socket_path: Path) -> None:
    async with ws_backend(socket_path):
        async with BackendClient(socket_path) as client:
            got: list[Any] = []
            with pytest.raises(BackendUnreachable, match="went away during exec"):
                async for item in client.exec(["tail", "-f", "x"]):
                    got.append(item)
    assert got == [(1, b"partial output")]


STREAMS: dict[str, Callable[[BackendClient], AsyncIterator[Any]]] = {
    "the event stream": lambda client: client.events(history=5),
    "the stats stream": lambda client: client.stats(),
    "the log stream": lambda client: client.logs(tail=10),
    "the cost tail": lambda client: client.costs_tail(),
}


READY = {"type": "ready"}
# /v1/stats sends samples only (the client checks each against the shared StatsSample).
SAMPLE = {"time": "2026-12-03T07:00:00Z", "cpu_percent": 1.5, "memory_bytes": 1 << 20,
          "memory_limit": 1 << 30, "memory_percent": 0.1, "pids": 3, "cache_bytes": 0}


@contextlib.asynccontextmanager
async def ending_backend(path: Path, end: Callable[[ServerConnection], Any]) -> AsyncIterator[None]:
    """A WebSocket backend that sends one message on any stream, then ``end``s it."""

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/v1/logs":
            await ws.recv()  # the query comes first
        await ws.send(json.dumps(SAMPLE if ws.request.path == "/v1/stats" else READY))
        await end(ws)

    async with unix_serve(handler, str(path)):
        yield


async def _abort(ws: ServerConnection) -> None:
    assert ws.transport is not None
    ws.transport.abort()  # killed: no closing handshake


@pytest.mark.parametrize("what", list(STREAMS))
async def test_a_stream_cut_mid_way_says_the_backend_went_away_and_what_it_cut(
    socket_path: Path, what: str,
) -> None:
    async with ending_backend(socket_path, _abort):
        async with BackendClient(socket_path) as client:
            got: list[Any] = []
            with pytest.raises(BackendWentAway) as caught:
                async for message in STREAMS[what](client):
                    got.append(message)
    assert got == [SAMPLE if what == "the stats stream" else READY]
    assert f"went away during {what} (the connection broke without a close)" in str(caught.value)
    assert "moltconsole serve" in str(caught.value)


async def test_a_backend_shutting_down_is_named_as_such(socket_path: Path) -> None:
    async def shut_down(ws: ServerConnection) -> None:
        await ws.close(1012)  # what uvicorn sends to every stream when the backend stops

    async with ending_backend(socket_path, shut_down):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendWentAway) as caught:
                await _drain(client.events())
    assert "during the event stream (the backend is shutting down)" in str(caught.value)


async def test_a_stream_the_backend_closes_normally_just_ends(socket_path: Path) -> None:
    async def close(ws: ServerConnection) -> None:
        await ws.close(1000)

    async with ending_backend(socket_path, close):
        async with BackendClient(socket_path) as client:
            assert await _drain(client.stats()) == [SAMPLE]


async def test_the_backends_error_on_a_stream_keeps_its_kind_and_words(socket_path: Path) -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"error": {"kind": "operation", "message": "the sandbox is not running"}}))
        await ws.close()

    async with ending_backend(socket_path, refuse):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError) as caught:
                await _drain(client.stats())
    assert (str(caught.value), caught.value.kind) == ("the sandbox is not running", "operation")
    assert not isinstance(caught.value, BackendUnreachable)


@pytest.mark.parametrize("frame", ['["a", "list"]', "not json \x1b[2J"])
async def test_a_message_that_is_not_a_json_object_is_a_backend_bug(socket_path: Path, frame: str) -> None:
    async def garble(ws: ServerConnection) -> None:
        await ws.send(frame)
        await ws.close()

    async with ending_backend(socket_path, garble):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match="not a JSON object") as caught:
                await _drain(client.events())
    assert "\x1b" not in str(caught.value)  # the backend's bytes, made inert


async def test_closing_a_stream_early_closes_its_connection(socket_path: Path) -> None:
    closed = asyncio.Event()

    async def wait_for_the_client(ws: ServerConnection) -> None:
        await ws.wait_closed()
        closed.set()

    async with ending_backend(socket_path, wait_for_the_client):
        async with BackendClient(socket_path) as client:
            stream = client.costs_tail()
            assert await anext(stream) == {"type": "ready"}
            await stream.aclose()
            await asyncio.wait_for(closed.wait(), 5)
