"""The gateway HTTP server's limits, each tested as the attack it stops, over real loopback sockets.

Trailers are dropped and bounded; a trickled head or body meets its deadline however slowly it
comes; connections are capped overall and per source address; the bytes held for request bodies
are capped across all connections, and every path that reserves them releases them. The
clients and the server harness are those of ``test_gateway_http_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from moltconsole_backend.gateway import http_server
from moltconsole_backend.gateway.http_server import (
    MAX_HEADER_BYTES,
    Headers,
    Request,
    ResponseWriter,
    ServerStats,
    _Connection,
)
from moltconsole_backend.gateway.server import GatewayServer, bind_tcp
from tests.unit.test_gateway_http_server import (
    CONTINUE,
    OK_BODY,
    TEXT,
    TIMEOUT,
    Client,
    Harness,
    HeldStream,
    Reads,
    Response,
    Served,
    echo_body,
    http,
    reply_ok,
)

CHUNKED_HEAD = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """Servers and clients for one test, all closed afterwards."""
    h = Harness()
    yield h
    await h.aclose()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Spy on every read of the servers' connections (see ``Reads``)."""
    spy = Reads()
    original = _Connection.data_received

    def data_received(conn: _Connection, data: bytes) -> None:
        spy.saw(data)
        original(conn, data)

    monkeypatch.setattr(_Connection, "data_received", data_received)
    return spy


class Losses:
    """Counts the server connections that are gone, so a test can wait for the n-th."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def saw(self) -> None:
        self.count += 1
        self._changed.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def losses(monkeypatch: pytest.MonkeyPatch) -> Losses:
    """Spy on the servers' ``connection_lost`` (it runs after the connection's bookkeeping)."""
    spy = Losses()
    original = _Connection.connection_lost

    def connection_lost(conn: _Connection, exc: Exception | None) -> None:
        original(conn, exc)
        spy.saw()

    monkeypatch.setattr(_Connection, "connection_lost", connection_lost)
    return spy


def overloaded(response: Response) -> str:
    """The message of a 503 refusal, its framing and Anthropic-shaped body checked."""
    assert (response.status, response.reason) == (503, "Service Unavailable")
    assert response.header("connection") == "close"
    assert response.header("retry-after") == "1"
    return response.error_message("overloaded_error")


async def connect_from(served: Served, harness: Harness, source: str) -> Client:
    """A connection to ``served`` from the loopback address ``source`` (127.0.0.2, ...)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port, local_addr=(source, 0))
    client = Client(reader, writer)
    harness.clients.append(client)
    return client


async def trickle(client: Client, data: bytes, every: float) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, until done or cut off."""
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            await client.send(data[i : i + 1])
            await asyncio.sleep(every)  # the trickle is the attack: time itself is under test


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class UntilLost:
    """A handler that starts a streamed response and waits for the agent to go away.

    ``held`` records the server's bodies counter at that moment; ``done`` is set as it returns.
    """

    def __init__(self, server: list[Served]) -> None:
        self.server = server
        self.started, self.done = asyncio.Event(), asyncio.Event()
        self.held: list[int] = []

    async def __call__(self, request: Request, writer: ResponseWriter) -> None:
        lost = asyncio.Event()
        writer.on_lost = lost.set
        writer.start(200, TEXT)
        writer.write(b"partial")
        self.started.set()
        await lost.wait()
        self.held.append(self.server[0].server.stats.bodies_bytes_held)
        self.done.set()


# -- trailers and other non-body bytes of a chunked body ---------------------------------------


async def test_trailers_are_dropped_and_never_reach_the_handler(harness: Harness) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    # A trailer the provider would act on, had it been forwarded.
    await client.send(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nAnthropic-Beta: evil\r\nX-Other: 1\r\n\r\n")
    response = await client.response()
    assert (response.status, response.body) == (200, b"hello")
    [request] = served.requests
    assert request.headers == [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked")]
    # The stream is still in step: the next request on the connection parses.
    await client.send(http("GET", "/next"))
    assert (await client.response()).status == 200


@pytest.mark.parametrize(
    "endless",
    [
        pytest.param(b"5\r\nhello\r\n0\r\nX-Bomb: ", id="trailer"),
        pytest.param(b"5\r\nhello\r\n5;", id="chunk-extension"),
        pytest.param(b"5\r\nhello\r\n", id="zero-padded-chunk-size"),
    ],
)
async def test_non_body_bytes_in_a_body_are_bounded_like_a_header_section(
    harness: Harness, reads: Reads, endless: bytes
) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    filler = b"0" if endless.endswith(b"\r\n") else b"v"  # leading zeros of a chunk size
    loop = asyncio.get_running_loop()
    began = loop.time()
    # Sent in pieces the server reads one by one, none carrying body: the last crosses 64 KiB.
    await reads.send_apart(client, CHUNKED_HEAD + endless)
    await reads.send_apart(client, *[filler * 8192] * (MAX_HEADER_BYTES // 8192 + 1))
    response = await client.response()
    assert (response.status, response.header("connection")) == (431, "close")
    assert "not body" in response.error_message()
    assert await client.until_closed() == b""
    assert loop.time() - began < TIMEOUT  # refused on its size, not on a timeout
    assert served.requests == []
    stats = served.server.stats
    assert (stats.trailer_refused, stats.body_timeouts, stats.too_large) == (1, 0, 0)


async def test_a_body_in_small_chunks_is_not_mistaken_for_non_body_bytes(harness: Harness) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    pieces = [b"%08d" % i for i in range(20_000)]  # 160,000 bytes, 8 to a chunk: framing < body
    await client.send(CHUNKED_HEAD + b"".join(b"8\r\n" + p + b"\r\n" for p in pieces) + b"0\r\n\r\n")
    response = await client.response()
    assert (response.status, response.body) == (200, b"".join(pieces))
    assert served.server.stats.trailer_refused == 0


# -- deadlines a trickle cannot extend ---------------------------------------------------------


async def test_a_head_trickled_a_byte_at_a_time_gets_408_at_its_deadline(harness: Harness) -> None:
    served = await harness.serve(reply_ok, header_timeout=0.3, idle_timeout=10.0)
    client = await harness.connect(served)
    loop = asyncio.get_running_loop()
    began = loop.time()
    # Every byte comes well within any per-read timeout; the whole head would take 10 s.
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"v" * 500 + b"\r\n\r\n"
    sender = asyncio.create_task(trickle(client, head, every=0.02))
    response = await client.response()
    elapsed = loop.time() - began
    await stop(sender)
    assert (response.status, response.header("connection")) == (408, "close")
    assert (
        response.error_message()
        == "the request's headers did not arrive within 0.3 s (gateway.header_timeout)"
    )
    assert 0.29 <= elapsed < 2.0
    assert await client.until_closed() == b""
    assert served.server.stats.head_timeouts == 1


async def test_a_body_trickled_a_byte_at_a_time_gets_408_at_its_deadline(
    harness: Harness, losses: Losses
) -> None:
    served = await harness.serve(echo_body, header_timeout=10.0, body_timeout=0.3)
    client = await harness.connect(served)
    loop = asyncio.get_running_loop()
    await client.send(http("POST", "/v1/messages", "Content-Length: 500"))
    began = loop.time()
    sender = asyncio.create_task(trickle(client, b"x" * 500, every=0.02))
    response = await client.response()
    elapsed = loop.time() - began
    await stop(sender)
    assert (response.status, response.header("connection")) == (408, "close")
    assert "within 0.3 s of its headers (gateway.body_timeout)" in response.error_message()
    assert 0.29 <= elapsed < 2.0
    assert await client.until_closed() == b""
    await losses.wait(1)
    stats = served.server.stats
    assert (stats.body_timeouts, stats.head_timeouts, stats.bodies_bytes_held) == (1, 0, 0)


async def test_a_head_pipelined_behind_a_long_response_is_timed_from_the_end_of_that_response(
    harness: Harness, reads: Reads
) -> None:
    handler = HeldStream(b"one", b"two", only="/slow", other=reply_ok)
    served = await harness.serve(handler, header_timeout=0.2)
    client = await harness.connect(served)
    await client.send(http("GET", "/slow"))
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    first = await client.head()
    assert await client.chunk(first) == b"one"
    await reads.send_apart(client, b"GET /next HTTP/1.1\r\nHost: 127")  # unfinished, pipelined
    await asyncio.sleep(0.3)  # past the header timeout, while the response still streams
    loop = asyncio.get_running_loop()
    released = loop.time()
    handler.release.set()
    await client.body(first)
    assert first.chunks == [b"one", b"two"]  # not cut by the pipelined head's deadline
    second = await client.response()
    assert second.status == 408
    assert loop.time() - released >= 0.19  # the head had its full time after the response


# -- connections -------------------------------------------------------------------------------


async def test_connections_over_max_connections_are_refused_with_503(
    harness: Harness, losses: Losses
) -> None:
    served = await harness.serve(reply_ok, max_connections=2, max_connections_per_client=100)
    first, second = await harness.connect(served), await harness.connect(served)
    for client in (first, second):
        await client.send(http("GET", "/"))
        assert (await client.response()).status == 200  # accepted and served

    # Refused as it connects, before any request: the client reads the 503 before it writes.
    excess = await harness.connect(served)
    message = overloaded(await excess.response())
    assert "2 connections" in message and "gateway.max_connections" in message
    assert await excess.until_closed() == b""
    await losses.wait(1)
    stats = served.server.stats
    assert (stats.connections_refused, stats.connections_open) == (1, 2)

    # Once one of the two goes, a new connection is served again.
    first.close()
    await losses.wait(2)
    assert served.server.stats.connections_open == 1
    again = await harness.connect(served)
    await again.send(http("GET", "/"))
    assert (await again.response()).status == 200


async def test_connections_are_capped_per_source_address(harness: Harness, losses: Losses) -> None:
    served = await harness.serve(reply_ok, max_connections=100, max_connections_per_client=2)
    for _ in range(2):
        client = await harness.connect(served)
        await client.send(http("GET", "/"))
        assert (await client.response()).status == 200

    excess = await harness.connect(served)
    message = overloaded(await excess.response())
    assert "127.0.0.1" in message and "gateway.max_connections_per_client" in message
    assert await excess.until_closed() == b""

    # Another source address has its own allowance, and the handler learns which one it is.
    other = await connect_from(served, harness, "127.0.0.2")
    await other.send(http("GET", "/"))
    assert (await other.response()).status == 200
    assert [r.peer for r in served.requests] == ["127.0.0.1", "127.0.0.1", "127.0.0.2"]
    await losses.wait(1)
    assert (served.server.stats.connections_refused, served.server.stats.connections_open) == (1, 3)


# -- memory held for request bodies ------------------------------------------------------------


EXPECTING = "Expect: 100-continue"


async def reserve(client: Client, length: int) -> None:
    """Announce a body of ``length`` bytes and wait until the server has reserved them.

    The server answers ``100 Continue`` once the headers are accepted, its reservation made.
    """
    await client.send(http("POST", "/v1/messages", EXPECTING, f"Content-Length: {length}"))
    async with asyncio.timeout(TIMEOUT):
        assert await client.reader.readexactly(len(CONTINUE)) == CONTINUE


async def test_a_body_past_max_bodies_bytes_gets_503_and_the_reservation_is_returned(
    harness: Harness, losses: Losses
) -> None:
    served = await harness.serve(echo_body, max_body=64, max_bodies_bytes=100)
    stats = served.server.stats
    holder = await harness.connect(served)
    await reserve(holder, 60)  # its body not sent yet: 60 bytes reserved
    assert stats.bodies_bytes_held == 60

    refused = await harness.connect(served)
    await refused.send(http("POST", "/v1/messages", body=b"x" * 50))  # 110 > 100
    message = overloaded(await refused.response())
    assert "100 bytes" in message and "gateway.max_bodies_mb" in message
    assert await refused.until_closed() == b""
    assert (stats.too_many_bodies, stats.bodies_bytes_held) == (1, 60)

    fits = await harness.connect(served)
    await fits.send(http("POST", "/v1/messages", body=b"y" * 40))  # 100: at the cap exactly
    assert (await fits.response()).body == b"y" * 40

    await holder.send(b"z" * 60)
    assert (await holder.response()).body == b"z" * 60
    await losses.wait(1)
    assert stats.bodies_bytes_held == 0  # all answered: nothing held


async def test_a_chunked_body_growing_past_max_bodies_bytes_gets_503(
    harness: Harness, losses: Losses
) -> None:
    served = await harness.serve(echo_body, max_body=1000, max_bodies_bytes=100)
    stats = served.server.stats
    holder = await harness.connect(served)
    await reserve(holder, 60)

    client = await harness.connect(served)
    # 60 + 25 fits, 60 + 50 does not.
    await client.send(CHUNKED_HEAD + b"19\r\n" + b"a" * 25 + b"\r\n" + b"19\r\n" + b"b" * 25 + b"\r\n")
    message = overloaded(await client.response())
    assert "gateway.max_bodies_mb" in message
    assert await client.until_closed() == b""
    await losses.wait(1)
    assert (stats.too_many_bodies, stats.bodies_bytes_held) == (1, 60)  # the 25 it had are back


async def test_pipelined_bodies_count_against_max_bodies_bytes(harness: Harness, losses: Losses) -> None:
    handler = HeldStream(b"one", b"two", only="/slow", other=echo_body)
    served = await harness.serve(handler, max_body=64, max_bodies_bytes=150)
    stats = served.server.stats
    client = await harness.connect(served)
    await client.send(http("GET", "/slow"))
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    first = await client.head()
    # Three 60-byte bodies parsed ahead while /slow streams: the third would make 180 > 150.
    await client.send(b"".join(http("POST", f"/{i}", body=bytes([65 + i]) * 60) for i in range(3)))
    handler.release.set()
    await client.body(first)
    for i in range(2):  # the two that fit are answered, in order, before the refusal
        assert (await client.response()).body == bytes([65 + i]) * 60
    assert "gateway.max_bodies_mb" in overloaded(await client.response())
    assert await client.until_closed() == b""
    await losses.wait(1)
    assert (stats.too_many_bodies, stats.bodies_bytes_held) == (1, 0)


async def test_a_connection_lost_mid_body_returns_its_reservation(harness: Harness, losses: Losses) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    await reserve(client, 1000)
    await client.send(b"x" * 10)
    assert served.server.stats.bodies_bytes_held == 1000
    client.close()
    await losses.wait(1)
    assert served.server.stats.bodies_bytes_held == 0
    assert served.requests == []


async def test_a_malformed_chunk_after_a_good_one_returns_the_reservation(
    harness: Harness, losses: Losses
) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    await client.send(CHUNKED_HEAD + b"5\r\nhello\r\nzz\r\n")
    response = await client.response()
    assert response.status == 400
    assert await client.until_closed() == b""
    await losses.wait(1)
    assert (served.server.stats.malformed, served.server.stats.bodies_bytes_held) == (1, 0)


async def test_a_body_is_held_until_its_handler_returns_even_if_the_agent_leaves(
    harness: Harness, losses: Losses
) -> None:
    found: list[Served] = []
    handler = UntilLost(found)
    found.append(served := await harness.serve(handler))
    client = await harness.connect(served)
    # One request being answered, two more queued behind it.
    await client.send(b"".join(http("POST", "/v1/messages", body=b"x" * 100) for _ in range(3)))
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    assert served.server.stats.bodies_bytes_held == 300
    client.close()
    await losses.wait(1)
    await asyncio.wait_for(handler.done.wait(), TIMEOUT)
    assert handler.held == [100]  # the queued ones went with the connection; the one in use stayed
    # The handler has returned (done is set as it does, in the worker's own step): all released.
    assert served.server.stats.bodies_bytes_held == 0


async def test_closing_the_server_returns_every_reservation(harness: Harness, losses: Losses) -> None:
    found: list[Served] = []
    handler = UntilLost(found)
    found.append(served := await harness.serve(handler))
    client = await harness.connect(served)
    await client.send(http("POST", "/slow", body=b"s" * 10) + http("POST", "/next", body=b"n" * 20))
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    stalled = await harness.connect(served)
    await reserve(stalled, 30)
    assert served.server.stats.bodies_bytes_held == 60
    await served.server.close(grace=0)
    await losses.wait(2)
    await asyncio.wait_for(handler.done.wait(), TIMEOUT)
    assert served.server.stats.bodies_bytes_held == 0


async def test_a_body_in_many_pieces_is_not_held_twice_when_assembled(harness: Harness, reads: Reads) -> None:
    size = 4 * 1024 * 1024

    async def length(request: Request, writer: ResponseWriter) -> None:
        writer.respond(200, str(len(request.body)).encode(), TEXT)

    served = await harness.serve(length, max_body=size)
    client = await harness.connect(served)
    piece = 64 * 1024
    data = bytes(range(256)) * (size // 256)
    pieces = [http("POST", "/v1/messages", f"Content-Length: {size}")]
    pieces += [data[i : i + piece] for i in range(0, size, piece)]
    tracemalloc.start()
    try:
        await reads.send_apart(client, *pieces)  # one read, one piece of body, at a time
        response = await client.response()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.body == str(size).encode()
    # The body once, its last piece or two, and change; gathering pieces then joining them is 2x.
    assert peak < size * 1.5, f"peak {peak / size:.2f}x the body"


async def test_the_heap_is_trimmed_once_no_body_is_held_after_many_were(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    trimmed = asyncio.Event()
    calls: list[tuple[int, int]] = []

    def trim(pad: int) -> int:  # runs in a worker thread
        calls.append((pad, served.server.stats.bodies_bytes_held))
        loop.call_soon_threadsafe(trimmed.set)
        return 1

    monkeypatch.setattr(http_server, "_MALLOC_TRIM", trim)
    monkeypatch.setattr(http_server, "TRIM_AFTER", 100)
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    await client.send(http("POST", "/v1/messages", body=b"x" * 60))
    assert (await client.response()).status == 200
    assert calls == []  # 60 bytes let go: not worth a trim yet
    await client.send(http("POST", "/v1/messages", body=b"x" * 60))
    assert (await client.response()).status == 200
    await asyncio.wait_for(trimmed.wait(), TIMEOUT)
    assert calls == [(0, 0)]


# -- the admit hook and the client's address ---------------------------------------------------


async def test_admit_sees_the_peer_and_its_refusal_carries_its_headers(harness: Harness) -> None:
    seen: list[tuple[str, str]] = []

    def admit(path: str, headers: Headers, peer: str) -> tuple[int, bytes, Headers] | None:
        seen.append((path, peer))
        if path == "/limited":
            return 429, b'{"type":"error"}', [(b"retry-after", b"7")]
        return None

    served = await harness.serve(reply_ok, admit=admit)
    client = await harness.connect(served)
    await client.send(http("GET", "/fine?x=1"))
    assert (await client.response()).body == OK_BODY
    await client.send(http("POST", "/limited", "Content-Length: 1000000"))
    refused = await client.response()
    assert (refused.status, refused.body, refused.header("retry-after")) == (429, b'{"type":"error"}', "7")
    assert (refused.header("content-type"), refused.header("connection")) == ("application/json", "close")
    assert await client.until_closed() == b""
    assert seen == [("/fine", "127.0.0.1"), ("/limited", "127.0.0.1")]
    assert [r.peer for r in served.requests] == ["127.0.0.1"]
    assert served.server.stats.bodies_bytes_held == 0  # refused before anything was reserved


# -- GatewayServer: the limits from the settings, the stats, the open-files limit --------------


class App:
    """The smallest app GatewayServer serves: a handler, no admit hook."""

    async def handle(self, request: Request, writer: ResponseWriter) -> None:
        writer.respond(200, OK_BODY)


def blocking_get(port: int) -> bytes:
    """One GET over a plain socket; everything the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while piece := sock.recv(65536):
            data += piece
        return data


def test_gateway_server_applies_its_limits_and_reports_stats() -> None:
    server = GatewayServer(App(), bind_tcp("127.0.0.1", 0), max_connections=1, header_timeout=5.0)
    server.start()
    try:
        held = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        try:
            held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # served, then kept open
            answer = b""
            while not answer.endswith(OK_BODY):
                answer += held.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            # The held connection is the one allowed: the next is refused, with its setting named.
            refused = blocking_get(server.port)
            assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            body = json.loads(refused.partition(b"\r\n\r\n")[2])
            assert body["error"]["type"] == "overloaded_error"
            assert "gateway.max_connections" in body["error"]["message"]
        finally:
            held.close()
        stats = server.stats()
        assert isinstance(stats, ServerStats)
        assert stats.connections_refused == 1
        stats.connections_refused = 99  # a snapshot: the server's own counters are not touched
        assert server.stats().connections_refused == 1
    finally:
        server.stop()


def test_gateway_server_raises_the_open_files_limit(caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        server = GatewayServer(App(), bind_tcp("127.0.0.1", 0), max_connections=1)
        with caplog.at_level(logging.WARNING, logger="moltconsole_backend.gateway.server"):
            server.start()
            server.stop()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert not [r for r in caplog.records if r.name == "moltconsole_backend.gateway.server"]

        # Asked for more connections than the hard limit allows: said so in the log.
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        greedy = GatewayServer(App(), bind_tcp("127.0.0.1", 0), max_connections=hard)
        with caplog.at_level(logging.WARNING, logger="moltconsole_backend.gateway.server"):
            greedy.start()
            greedy.stop()
        [record] = [r for r in caplog.records if r.name == "moltconsole_backend.gateway.server"]
        assert "gateway.max_connections" in record.getMessage() and str(hard) in record.getMessage()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
