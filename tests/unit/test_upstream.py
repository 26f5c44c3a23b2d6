"""The gateway's client to the providers, against real TCP (and TLS) servers on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from moltconsole_backend.gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A TCP server whose connections run ``handler``; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> Server:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def keep_alive_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(chunked(b"event: a\ndata: 1\n\n", b"event: b\ndata: 2\n\n"))
        await writer.drain()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    p = UpstreamPool(connect_timeout=5, read_timeout=5)
    yield p
    await p.close()


async def test_streams_chunks_and_reuses_the_connection(pool: UpstreamPool) -> None:
    server = await Server(keep_alive_handler).start()
    url = f"http://127.0.0.1:{server.port}/v1/messages"
    for _ in range(3):
        response = await pool.request("POST", url, [("content-type", "application/json")], b"{}")
        assert response.status == 200
        assert (b"content-type", b"text/event-stream") in response.raw_headers
        assert await response.read() == b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"
        response.release()
    assert server.connections == 1  # keep-alive: one connection for three requests
    await server.stop()


async def test_the_request_goes_out_whole_with_host_and_length(pool: UpstreamPool) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    server = await Server(handler).start()
    body = b'{"model":"m"}'
    response = await pool.request(
        "POST",
        f"http://127.0.0.1:{server.port}/v1/x?y=1",
        [("x-api-key", "k"), ("bad", "a\r\nInjected: 1")],
        body,
    )
    assert response.status == 204
    request = seen[0]
    assert request.startswith(b"POST /v1/x?y=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert b"content-length: 13\r\n" in request and b"x-api-key: k\r\n" in request
    assert b"Injected" not in request  # a header value with CR/LF is never sent
    assert request.endswith(body)
    response.release()
    await server.stop()


async def test_a_stale_pooled_connection_is_replaced(pool: UpstreamPool) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # then the server drops the idle connection, as providers do

    server = await Server(one_then_close).start()
    url = f"http://127.0.0.1:{server.port}/"
    first = await pool.request("POST", url, [], b"")
    assert await first.read() == b"ok"
    first.release()
    second = await pool.request("POST", url, [], b"")
    assert await second.read() == b"ok"
    second.release()
    assert server.connections == 2
    await server.stop()


async def test_a_response_ended_by_closing_the_connection(pool: UpstreamPool) -> None:
    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    server = await Server(close_delimited).start()
    response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    assert await response.read() == b"all of it"
    response.release()
    await server.stop()


async def test_a_connection_broken_mid_body_is_an_error(pool: UpstreamPool) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()

    server = await Server(broken).start()
    response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    got = b""
    with pytest.raises(UpstreamError, match="closed the connection mid-response"):
        async for chunk in response.chunks():
            got += chunk
    assert got == b"hello"
    response.close()
    await server.stop()


async def test_silence_longer_than_the_read_timeout_fails() -> None:
    stalled = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await stalled.wait()

    server = await Server(stall).start()
    pool = UpstreamPool(connect_timeout=5, read_timeout=0.3)
    response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    with pytest.raises(UpstreamTimeout, match="sent nothing for"):
        await response.read()
    stalled.set()
    await pool.close()
    await server.stop()


async def test_closing_a_response_drops_the_connection(pool: UpstreamPool) -> None:
    gone = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while not reader.at_eof():
            writer.write(b"1\r\nx\r\n")
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.01)
        gone.set()

    server = await Server(endless).start()
    response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    async for _ in response.chunks():
        break
    response.close()
    async with asyncio.timeout(5):
        await gone.wait()  # the server saw the request abandoned
    await server.stop()


async def test_a_slow_reader_pauses_the_provider_instead_of_buffering(pool: UpstreamPool) -> None:
    from moltconsole_backend.gateway import upstream

    big = b"x" * 65536
    parts = 40  # 2.5 MiB, ten times the high-water mark

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(parts):
            writer.write(b"%x\r\n%s\r\n" % (len(big), big))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await Server(flood).start()
    response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    total = 0
    peak = 0
    async for chunk in response.chunks():
        total += len(chunk)
        peak = max(peak, len(chunk))
        await asyncio.sleep(0.005)  # a slow agent
    assert total == len(big) * parts
    assert peak < upstream.HIGH_WATER + 4 * len(big)  # bounded by the pause, not by the body
    response.release()
    await server.stop()


async def test_connection_refused_is_a_clear_error(pool: UpstreamPool) -> None:
    from tests.conftest import free_port

    with pytest.raises(UpstreamError, match=r"cannot connect to 127\.0\.0\.1"):
        await pool.request("POST", f"http://127.0.0.1:{free_port()}/", [], b"")


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 'localhost', and a client that trusts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


async def test_https_with_certificate_verification(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed(tmp_path)
    server = await Server(keep_alive_handler).start(tls=server_ctx)
    trusting = UpstreamPool(connect_timeout=5, read_timeout=5)
    trusting._ssl = client_ctx
    response = await trusting.request("POST", f"https://localhost:{server.port}/v1/messages", [], b"{}")
    assert await response.read() == b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"
    response.release()
    await trusting.close()

    default = UpstreamPool(connect_timeout=5, read_timeout=5)  # the system's CAs: refused
    with pytest.raises(UpstreamError, match="TLS with localhost"):
        await default.request("POST", f"https://localhost:{server.port}/", [], b"")
    await default.close()
    await server.stop()


class Collect:
    """A relay sink that keeps what it was given."""

    def __init__(self) -> None:
        self.body = b""
        self.finished: asyncio.Future[UpstreamError | None] = asyncio.get_running_loop().create_future()

    def data(self, chunk: bytes) -> None:
        assert not self.finished.done(), f"bytes after the end of the response: {chunk!r}"
        self.body += chunk

    def done(self, error: UpstreamError | None) -> None:
        assert not self.finished.done(), "done twice"
        self.finished.set_result(error)


async def test_interim_responses_are_skipped_and_never_reach_the_next_request(pool: UpstreamPool) -> None:
    # 103 and 100 before the real answer: agent A used to take the 103 as its response, and
    # the 200 stayed on the pooled connection for agent B.
    async def hints_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            n += 1
            body = b"answer %d" % n
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)  # the final response in a later segment
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-n: %d\r\n\r\n%s" % (len(body), n, body))
            await writer.drain()

    server = await Server(hints_first).start()
    url = f"http://127.0.0.1:{server.port}/v1/messages"
    async with asyncio.timeout(5):
        first = await pool.request("POST", url, [], b"{}")
        assert first.status == 200
        assert list(first.raw_headers) == [(b"content-length", b"8"), (b"x-n", b"1")]
        assert await first.read() == b"answer 1"
        first.release()
        second = await pool.request("POST", url, [], b"{}")
        assert second.status == 200
        sink = Collect()
        second.relay(sink)
        assert await sink.finished is None
        assert sink.body == b"answer 2"
        second.release()
    assert server.connections == 1  # a complete final response: the connection is reused
    await server.stop()


async def test_interim_and_final_response_in_one_segment(pool: UpstreamPool) -> None:
    async def together(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n")
        )
        await writer.drain()

    server = await Server(together).start()
    async with asyncio.timeout(5):
        response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
        assert response.status == 200
        assert list(response.raw_headers) == [(b"transfer-encoding", b"chunked")]
        assert await response.read() == b"data: 1\n\n"
        response.release()
    await server.stop()


async def test_a_101_is_an_error_and_drops_the_connection(pool: UpstreamPool) -> None:
    closed = asyncio.Event()

    async def switches(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
        writer.write(b"\x81\x05hello")
        await writer.drain()
        await reader.read()  # until the client hangs up
        closed.set()

    server = await Server(switches).start()
    async with asyncio.timeout(5):
        with pytest.raises(UpstreamError, match="101"):
            await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
        await closed.wait()
    await server.stop()


async def test_an_interim_response_then_silence_is_never_pooled() -> None:
    pool = UpstreamPool(connect_timeout=5, read_timeout=0.3)
    stalled = asyncio.Event()

    async def hint_then_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
        await writer.drain()
        await stalled.wait()

    server = await Server(hint_then_nothing).start()
    async with asyncio.timeout(5):
        with pytest.raises(UpstreamTimeout):
            await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    assert not pool._idle.get(("http", "127.0.0.1", server.port))
    stalled.set()
    await pool.close()
    await server.stop()


async def test_a_stray_response_in_the_same_segment_is_never_relayed(pool: UpstreamPool) -> None:
    # Two responses to one request: the second used to reach the agent (two content-length
    # headers, extra bytes), or the next request that took the pooled connection.
    async def two_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            n += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok %d" % n
                + b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray"
            )
            await writer.drain()

    server = await Server(two_answers).start()
    url = f"http://127.0.0.1:{server.port}/"
    async with asyncio.timeout(5):
        first = await pool.request("POST", url, [], b"")
        sink = Collect()
        first.relay(sink)
        assert await sink.finished is None
        await asyncio.sleep(0.05)  # anything late would reach the sink (Collect asserts)
        assert sink.body == b"ok 1"
        assert list(first.raw_headers) == [(b"content-length", b"4")]
        first.release()
        second = await pool.request("POST", url, [], b"")
        assert await second.read() == b"ok 1"  # a fresh connection's first answer, not "stray"
        assert list(second.raw_headers) == [(b"content-length", b"4")]
        second.release()
    assert server.connections == 2  # the connection that said too much was not reused
    await server.stop()


async def test_garbage_after_a_complete_response_does_not_fail_it(pool: UpstreamPool) -> None:
    async def trailing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokNOT HTTP AT ALL")
            await writer.drain()

    server = await Server(trailing).start()
    url = f"http://127.0.0.1:{server.port}/"
    async with asyncio.timeout(5):
        for _ in range(2):
            response = await pool.request("POST", url, [], b"")
            assert await response.read() == b"ok"
            response.release()
    assert server.connections == 2
    await server.stop()


async def test_bytes_sent_while_idle_close_the_pooled_connection(pool: UpstreamPool) -> None:
    released = asyncio.Event()
    hung_up = asyncio.Event()

    async def late_stray(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-first: 1\r\n\r\nfirst")
        await writer.drain()
        await released.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-stray: 1\r\n\r\nstray")
        await writer.drain()
        await reader.read()  # the client hangs up on a connection that talks out of turn
        hung_up.set()

    async def fresh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")
        await writer.drain()

    server = await Server(late_stray).start()
    url = f"http://127.0.0.1:{server.port}/"
    async with asyncio.timeout(5):
        first = await pool.request("POST", url, [], b"")
        assert await first.read() == b"first"
        headers = list(first.raw_headers)
        first.release()
        released.set()
        await hung_up.wait()
        assert list(first.raw_headers) == headers  # a later message never touches them
        server.handler = fresh
        second = await pool.request("POST", url, [], b"")
        assert await second.read() == b"fresh"
        second.release()
    assert server.connections == 2
    await server.stop()


async def test_a_framed_body_cut_by_the_close_is_an_error(pool: UpstreamPool) -> None:
    # "connection: close" with a content-length: the end of the connection does not end the
    # body early; only a response without length or chunking is delimited by the close.
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()

    server = await Server(short).start()
    response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
    async with asyncio.timeout(5):
        sink = Collect()
        response.relay(sink)
        error = await sink.finished
    assert isinstance(error, UpstreamError)
    assert sink.body == b"abc"
    response.close()
    await server.stop()


async def test_a_response_released_before_its_end_is_never_reused(pool: UpstreamPool) -> None:
    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"def")
            await writer.drain()

    server = await Server(slow_body).start()
    url = f"http://127.0.0.1:{server.port}/"
    async with asyncio.timeout(5):
        for _ in range(2):
            response = await pool.request("POST", url, [], b"")
            async for chunk in response.chunks():
                assert chunk == b"abc"
                break
            response.release()  # not read to the end
        response = await pool.request("POST", url, [], b"")
        assert await response.read() == b"abcdef"
        response.release()
    assert server.connections == 3
    await server.stop()


async def test_connections_the_provider_closed_leave_the_pool(pool: UpstreamPool) -> None:
    gone = asyncio.Event()

    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        gone.set()

    server = await Server(one_then_close).start()
    url = f"http://127.0.0.1:{server.port}/"
    async with asyncio.timeout(5):
        for _ in range(5):
            gone.clear()
            response = await pool.request("POST", url, [], b"")
            assert await response.read() == b"ok"
            response.release()
            await gone.wait()
            await asyncio.sleep(0.01)  # the close reaches the client
    assert len(pool._all) == 0  # none kept for closing later, none handed out again
    await server.stop()


async def test_a_provider_that_closes_after_each_response(pool: UpstreamPool) -> None:
    from tests.support.fake_llm import FakeServer

    async with FakeServer() as fake:
        fake.provider.close_connections = True
        body = b'{"model": "claude-sonnet-4-6", "stream": true, "messages": []}'
        for _ in range(3):
            response = await pool.request("POST", fake.url + "/v1/messages", [], body)
            assert (b"connection", b"close") in response.raw_headers
            assert (await response.read()).endswith(b'data: {"type":"message_stop"}\n\n')
            response.release()
            assert not pool._idle.get(("http", "127.0.0.1", fake.port))  # never pooled
        assert len(fake.provider.seen) == 3  # one send each: no stale-connection retry


async def test_a_closed_connection_is_freed_without_the_garbage_collector(pool: UpstreamPool) -> None:
    # Under load with a provider that closes after each response, every request's connection
    # used to be left in reference cycles (parser and transport pointing back at it) that only
    # the cyclic collector frees, and its full collections stalled the gateway.
    import gc
    import weakref

    hung_up = asyncio.Event()

    async def close_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # the client closes a connection that said "close"
        hung_up.set()

    server = await Server(close_after).start()
    gc.collect()
    gc.disable()
    try:
        response = await pool.request("POST", f"http://127.0.0.1:{server.port}/", [], b"")
        assert await response.read() == b"ok"
        response.release()
        conn = weakref.ref(response._conn)
        del response
        async with asyncio.timeout(5):
            await hung_up.wait()
        for _ in range(10):  # the loop runs connection_lost and lets go of the transport
            await asyncio.sleep(0)
        assert conn() is None
    finally:
        gc.enable()
    await server.stop()


async def test_a_broken_answer_on_a_reused_connection_is_not_sent_again(pool: UpstreamPool) -> None:
    # Only a pooled connection that died before answering anything (closed while idle) is
    # retried on a fresh one: a provider that answered, even badly, has the request already.
    async def ok_then_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)
        writer.write(b"NOT HTTP\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await Server(ok_then_garbage).start()
    url = f"http://127.0.0.1:{server.port}/"
    async with asyncio.timeout(5):
        first = await pool.request("POST", url, [], b"")
        assert await first.read() == b"ok"
        first.release()
        with pytest.raises(UpstreamError, match="malformed"):
            await pool.request("POST", url, [], b"")
    assert server.connections == 1  # not sent again on a fresh connection
    await server.stop()
