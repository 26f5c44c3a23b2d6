"""The gateway's own HTTP/1.1 server over real loopback sockets, spoken to in raw bytes.

Each test runs the server in its own event loop on a socket it bound itself, and talks to it
through asyncio streams: requests are written byte for byte and responses are parsed by the
helpers below, so what is checked is the framing on the wire (status line, headers,
content-length or chunked bodies, where the connection closes), not what a client library
makes of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from moltconsole_backend.gateway.http_server import (
    MAX_HEADER_BYTES,
    MAX_PIPELINED,
    Admit,
    Handler,
    Headers,
    HTTPServer,
    Request,
    ResponseWriter,
    _Connection,
)

TIMEOUT = 5.0  # bound on any one wait; the tests themselves take milliseconds
TEXT: Headers = [(b"content-type", b"text/plain")]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
OK_BODY = b'{"ok":true}'


# -- the client side: raw requests out, hand-parsed responses in -------------------------------


def http(method: str, target: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    """A request in wire format; a content-length is added when there is a body."""
    lines = [f"{method} {target} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Response:
    """One response as it came over the wire; ``raw`` holds every byte read for it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of a header (names compared case-insensitively), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def chunked(self) -> bool:
        return self.header("transfer-encoding") == "chunked"

    def error_message(self, kind: str = "api_error") -> str:
        """The message of the gateway's JSON error body (its shape, in Anthropic's, checked)."""
        assert self.header("content-type") == "application/json"
        assert self.header("content-length") == str(len(self.body))
        payload = json.loads(self.body)
        assert payload["type"] == "error"
        assert payload["error"]["type"] == kind
        message: str = payload["error"]["message"]
        return message


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.sent += len(data)
        await self.writer.drain()

    async def head(self) -> Response:
        """The status line and headers of the next response."""
        async with asyncio.timeout(TIMEOUT):
            head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = []
        for line in lines:
            name, colon, value = line.partition(": ")
            assert colon and name and name == name.strip(), f"malformed header line {line!r}"
            headers.append((name, value))
        return Response(int(status), reason, headers, head)

    async def chunk(self, response: Response) -> bytes:
        """The next chunk of a chunked body (b"" for the terminating one), framing checked."""
        async with asyncio.timeout(TIMEOUT):
            line = await self.reader.readuntil(b"\r\n")
            assert re.fullmatch(rb"[0-9a-f]+\r\n", line), f"expected a chunk-size line, got {line!r}"
            size = int(line, 16)
            data = await self.reader.readexactly(size + 2)
        assert data.endswith(b"\r\n"), f"chunk not followed by CRLF: {data!r}"
        response.raw += line + data
        if size:
            response.chunks.append(data[:-2])
            response.body += data[:-2]
        return data[:-2]

    async def body(self, response: Response) -> Response:
        """Read the rest of ``response``'s body as its headers frame it."""
        if response.chunked:
            while await self.chunk(response):
                pass
        elif (length := response.header("content-length")) is not None:
            async with asyncio.timeout(TIMEOUT):
                data = await self.reader.readexactly(int(length))
            response.raw += data
            response.body += data
        else:  # close-delimited
            data = await self.until_closed()
            response.raw += data
            response.body += data
        return response

    async def response(self) -> Response:
        return await self.body(await self.head())

    async def until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection (a reset counts as closed).

        Then this side closes too, as a client does: a server that refused a request waits
        for that (see ``_Connection._linger``).
        """
        data = bytearray()
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    piece = await self.reader.read(65536)
                except ConnectionResetError:
                    break
                if not piece:
                    break
                data += piece
        self.close()
        return bytes(data)

    def close(self) -> None:
        self.writer.close()


async def connect(port: int) -> Client:
    """A new connection to the server on ``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Client(reader, writer)


# -- the server side ---------------------------------------------------------------------------


@dataclass
class Served:
    """A running server, its port and the requests its handler has been given."""

    server: HTTPServer
    port: int
    requests: list[Request] = field(default_factory=list)


class Harness:
    """Starts servers on loopback sockets bound here, opens clients; closes all at the end."""

    def __init__(self) -> None:
        self.served: list[Served] = []
        self.clients: list[Client] = []

    async def serve(
        self,
        handler: Handler,
        *,
        max_body: int = 1024 * 1024,
        idle_timeout: float = 10.0,
        admit: Admit | None = None,
        **limits: float,
    ) -> Served:
        """Run ``handler`` on a fresh loopback socket; the requests it gets are recorded.

        ``limits`` are the server's other keyword arguments (``header_timeout``,
        ``max_connections``, ...).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)

        async def recording(request: Request, writer: ResponseWriter) -> None:
            served.requests.append(request)
            await handler(request, writer)

        server = HTTPServer(recording, max_body=max_body, admit=admit, idle_timeout=idle_timeout, **limits)
        served = Served(server, sock.getsockname()[1])
        await server.start(sock)
        self.served.append(served)
        return served

    async def connect(self, served: Served) -> Client:
        """A connection to ``served``, closed at the end of the test."""
        client = await connect(served.port)
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            client.close()
        for served in self.served:
            await served.server.close(grace=0)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """Servers and clients for one test, all closed afterwards."""
    h = Harness()
    yield h
    await h.aclose()


class Reads:
    """Watches the server's socket reads, so a request can be sent in pieces read one by one.

    For tests with a single connection: it counts the bytes read on all of them.
    """

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._grew = asyncio.Event()

    def saw(self, data: bytes) -> None:
        self.sizes.append(len(data))
        self._grew.set()

    async def send_apart(self, client: Client, *pieces: bytes) -> None:
        """Send each piece only once the server has read everything sent before it."""
        for piece in pieces:
            await client.send(piece)
            async with asyncio.timeout(TIMEOUT):
                while sum(self.sizes) < client.sent:
                    self._grew.clear()
                    await self._grew.wait()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Spy on every read of the servers' connections (the protocol's ``data_received``)."""
    spy = Reads()
    original = _Connection.data_received

    def data_received(conn: _Connection, data: bytes) -> None:
        spy.saw(data)
        original(conn, data)

    monkeypatch.setattr(_Connection, "data_received", data_received)
    return spy


async def reply_ok(request: Request, writer: ResponseWriter) -> None:
    """A small JSON response with a content-length."""
    writer.respond(200, OK_BODY)


async def stream_path(request: Request, writer: ResponseWriter) -> None:
    """A streamed (length-less) response whose body is the request's path."""
    writer.start(200, TEXT)
    writer.write(request.path.encode())
    writer.end()


async def echo_body(request: Request, writer: ResponseWriter) -> None:
    """The request's body sent back, with a content-length."""
    writer.respond(200, request.body, TEXT)


# -- requests and responses --------------------------------------------------------------------


class HeldStream:
    """A handler that streams ``first``, waits for ``release``, then streams ``second`` and ends.

    With ``only``, other paths go to ``other``. ``started`` is set once ``first`` is written.
    """

    def __init__(
        self, first: bytes, second: bytes, only: str | None = None, other: Handler | None = None
    ) -> None:
        self.first, self.second, self.only, self.other = first, second, only, other
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, request: Request, writer: ResponseWriter) -> None:
        if self.only is not None and request.path != self.only and self.other is not None:
            await self.other(request, writer)
            return
        writer.start(200, TEXT)
        writer.write(self.first)
        self.started.set()
        await self.release.wait()
        writer.write(self.second)
        writer.end()


async def test_request_fields_and_a_content_length_response(harness: Harness) -> None:
    served = await harness.serve(reply_ok)
    client = await harness.connect(served)
    await client.send(
        b"POST /v1/messages?beta=true&x=%20y HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        b"X-Api-Key: Sandbox-Token\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 13\r\n"
        b"\r\n"
        b'{"model":"m"}'
    )
    response = await client.response()

    assert response.raw == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + OK_BODY
    )
    [request] = served.requests
    assert (request.method, request.path, request.query) == ("POST", "/v1/messages", "beta=true&x=%20y")
    # Names lower-cased, values exactly as sent, in order.
    assert request.headers == [
        (b"host", b"127.0.0.1"),
        (b"x-api-key", b"Sandbox-Token"),
        (b"content-type", b"application/json"),
        (b"content-length", b"13"),
    ]
    assert request.header(b"x-api-key") == b"Sandbox-Token"
    assert request.header(b"authorization") is None
    assert request.body == b'{"model":"m"}'
    assert (request.keep_alive, request.http_10) == (True, False)


async def test_a_request_sent_in_several_writes_arrives_intact(harness: Harness, reads: Reads) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    body = bytes(range(256)) * 4  # every byte value, CR and LF included
    request = http("PUT", "/blob?part=1", "Content-Type: application/octet-stream", body=body)
    cut = request.index(b"\r\n\r\n")
    pieces = [
        request[:7],
        request[7:30],
        request[30 : cut + 2],
        request[cut + 2 : cut + 300],
        request[cut + 300 :],
    ]
    await reads.send_apart(client, *pieces)
    response = await client.response()

    assert len(reads.sizes) >= len(pieces)  # the server really got it in pieces
    assert (response.status, response.body) == (200, body)
    [received] = served.requests
    assert (received.method, received.path, received.query) == ("PUT", "/blob", "part=1")
    assert received.body == body


async def test_a_streamed_response_is_chunked_and_each_write_leaves_at_once(harness: Harness) -> None:
    first_read, done = asyncio.Event(), asyncio.Event()

    async def stream(request: Request, writer: ResponseWriter) -> None:
        writer.start(200, [(b"content-type", b"text/event-stream")])
        writer.write(b"data: 1\n\n")
        await first_read.wait()  # the test has read that event before anything else is sent
        writer.write(b"")  # must send nothing: an empty chunk would end the body
        writer.write(b"data: 22\n\n" * 2)
        writer.end()
        writer.write(b"after the end")  # ignored
        writer.end()  # a second end adds nothing
        done.set()

    served = await harness.serve(stream)
    client = await harness.connect(served)
    await client.send(http("GET", "/events"))
    response = await client.head()
    assert await client.chunk(response) == b"data: 1\n\n"
    first_read.set()
    await client.body(response)

    assert response.raw == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        b"9\r\ndata: 1\n\n\r\n"
        b"14\r\ndata: 22\n\ndata: 22\n\n\r\n"
        b"0\r\n\r\n"
    )
    await asyncio.wait_for(done.wait(), TIMEOUT)
    # Nothing stray followed the terminating chunk: the next response on the connection parses.
    await client.send(http("GET", "/again"))
    again = await client.response()
    assert (again.status, again.chunks) == (200, [b"data: 1\n\n", b"data: 22\n\ndata: 22\n\n"])


async def test_a_response_starts_once(harness: Harness) -> None:
    errors: list[str] = []

    async def twice(request: Request, writer: ResponseWriter) -> None:
        writer.start(200, [(b"content-length", b"2")])
        try:
            writer.start(500, [])
        except RuntimeError as exc:
            errors.append(str(exc))
        writer.write(b"ok")
        writer.end()

    served = await harness.serve(twice)
    client = await harness.connect(served)
    await client.send(http("GET", "/"))
    response = await client.response()
    assert response.raw == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    assert errors == ["the response has already started"]


async def test_two_requests_on_one_keep_alive_connection(harness: Harness) -> None:
    served = await harness.serve(stream_path)
    client = await harness.connect(served)
    for path in ("/first", "/second"):
        await client.send(http("GET", path))
        response = await client.response()
        assert (response.status, response.body) == (200, path.encode())
        assert response.header("connection") is None
    assert [r.path for r in served.requests] == ["/first", "/second"]
    assert len(served.server.connections) == 1


async def test_pipelined_requests_are_answered_in_order(harness: Harness) -> None:
    count = 2 * MAX_PIPELINED + 3  # more than the server parses ahead: its reading pauses and resumes

    async def slower_first(request: Request, writer: ResponseWriter) -> None:
        # Earlier requests take longer: answered concurrently, they would come out reversed.
        index = int(request.path[1:]) if request.path[1:].isdigit() else count
        for _ in range(count - index):
            await asyncio.sleep(0)
        await stream_path(request, writer)

    served = await harness.serve(slower_first)
    client = await harness.connect(served)
    await client.send(b"".join(http("GET", f"/{i}") for i in range(count)))
    bodies = [(await client.response()).body for _ in range(count)]
    assert bodies == [f"/{i}".encode() for i in range(count)]

    # Reading resumed after the pause: the connection still takes requests.
    await client.send(http("GET", "/last"))
    assert (await client.response()).body == b"/last"
    assert [r.path for r in served.requests] == [f"/{i}" for i in range(count)] + ["/last"]


async def test_a_chunked_request_body_is_reassembled(harness: Harness, reads: Reads) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    await reads.send_apart(
        client,
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"4\r\nWi",
        b"ki\r\n5\r\npedia\r\n",
        b"E\r\n in\r\n\r\nchunks.\r\n",
        b"0\r\n\r\n",
    )
    response = await client.response()
    assert response.body == b"Wikipedia in\r\n\r\nchunks."
    [request] = served.requests
    assert request.body == b"Wikipedia in\r\n\r\nchunks."
    assert request.header(b"transfer-encoding") == b"chunked"


async def test_an_http_10_request_gets_a_close_delimited_response(harness: Harness) -> None:
    served = await harness.serve(stream_path)
    client = await harness.connect(served)
    await client.send(b"GET /old-client HTTP/1.0\r\n\r\n")
    # No chunked encoding for HTTP/1.0: the body ends where the connection does.
    assert await client.until_closed() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n/old-client"
    )
    [request] = served.requests
    assert (request.http_10, request.keep_alive) == (True, False)


async def test_an_http_10_keep_alive_request_with_a_length_keeps_the_connection(harness: Harness) -> None:
    served = await harness.serve(reply_ok)
    client = await harness.connect(served)
    for _ in range(2):
        await client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = await client.response()
        assert response.raw == (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n"
            b"connection: keep-alive\r\n\r\n" + OK_BODY
        )
    assert len(served.requests) == 2


async def test_each_pipelined_response_is_framed_for_its_own_http_version(harness: Harness) -> None:
    served = await harness.serve(stream_path)
    client = await harness.connect(served)
    await client.send(http("GET", "/new") + b"GET /old HTTP/1.0\r\n\r\n")

    first = await client.response()
    assert first.chunked, first.raw  # an HTTP/1.1 request: chunked, and the connection stays
    assert (first.body, first.header("connection")) == (b"/new", None)
    second = await client.response()  # HTTP/1.0: close-delimited
    assert (second.body, second.header("connection"), second.chunked) == (b"/old", "close", False)
    assert [r.path for r in served.requests] == ["/new", "/old"]


@pytest.mark.parametrize("handler", [reply_ok, stream_path], ids=["with-length", "streamed"])
async def test_connection_close_from_the_client_closes_after_the_response(
    harness: Harness, handler: Handler
) -> None:
    served = await harness.serve(handler)
    client = await harness.connect(served)
    await client.send(http("GET", "/bye", "Connection: close"))
    response = await client.response()
    assert (response.status, response.header("connection")) == (200, "close")
    assert response.body == (OK_BODY if handler is reply_ok else b"/bye")
    assert await client.until_closed() == b""
    assert served.requests[0].keep_alive is False


# -- refusals ----------------------------------------------------------------------------------


async def test_a_content_length_over_max_body_is_refused_before_the_body(harness: Harness) -> None:
    served = await harness.serve(echo_body, max_body=64)
    client = await harness.connect(served)
    # Only the headers: the server answers without waiting for the body.
    await client.send(http("POST", "/v1/messages", "Content-Length: 65"))
    response = await client.response()
    assert (response.status, response.reason, response.header("connection")) == (
        413,
        "Request Entity Too Large",
        "close",
    )
    assert "request body is over" in response.error_message()
    assert await client.until_closed() == b""
    assert served.requests == []
    assert served.server.stats.too_large == 1

    # At the limit exactly, the body is accepted.
    client = await harness.connect(served)
    await client.send(http("POST", "/v1/messages", body=b"x" * 64))
    response = await client.response()
    assert (response.status, response.body) == (200, b"x" * 64)


async def test_a_chunked_body_growing_over_max_body_is_refused(harness: Harness) -> None:
    served = await harness.serve(echo_body, max_body=64)
    client = await harness.connect(served)
    await client.send(
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"28\r\n"
        + b"a" * 40
        + b"\r\n"
        + b"28\r\n"
        + b"b" * 40
        + b"\r\n"
    )
    response = await client.response()
    assert (response.status, response.header("connection")) == (413, "close")
    assert "request body is over" in response.error_message()
    assert await client.until_closed() == b""
    assert served.requests == []
    assert (served.server.stats.too_large, served.server.stats.bodies_bytes_held) == (1, 0)


def padded_headers(count: int) -> list[str]:
    """``count`` headers of 1 KiB each, counted as name + value + 4 = 1032 bytes by the server."""
    return [f"X-Pad-{i:02d}: " + "v" * 1020 for i in range(count)]


async def test_a_header_section_over_64_kib_is_refused(harness: Harness) -> None:
    served = await harness.serve(reply_ok)
    client = await harness.connect(served)
    # 64 * 1032 bytes: only the last header crosses the limit, so the server has read the whole
    # request when it refuses it (unread bytes would make the kernel reset the connection).
    assert 63 * 1032 < MAX_HEADER_BYTES < 64 * 1032
    await client.send(http("GET", "/", *padded_headers(64)))
    response = await client.response()
    assert (response.status, response.reason, response.header("connection")) == (
        431,
        "Request Header Fields Too Large",
        "close",
    )
    assert "over 64 KiB" in response.error_message()
    assert await client.until_closed() == b""
    assert served.requests == []
    assert served.server.stats.too_large == 1

    # Just under the limit is fine.
    client = await harness.connect(served)
    await client.send(http("GET", "/", *padded_headers(60)))
    assert (await client.response()).status == 200


async def test_a_header_line_that_never_ends_is_refused_without_waiting_for_its_end(harness: Harness) -> None:
    served = await harness.serve(reply_ok, header_timeout=0.3)
    client = await harness.connect(served)
    # One header value over the limit, still unterminated: the server must not keep buffering it.
    await client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"v" * (MAX_HEADER_BYTES + 1024))
    response = await client.response()
    assert response.status == 431, f"expected 431 at once, got {response.status} {response.reason}"
    assert await client.until_closed() == b""
    assert (served.server.stats.too_large, served.server.stats.head_timeouts) == (1, 0)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"HELLO\r\n\r\n", id="not-http"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", id="tls-client-hello"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n", id="bad-header-name"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n", id="bad-length"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
            id="length-and-chunked",
        ),
    ],
)
async def test_a_malformed_request_gets_400_and_the_connection_closes(
    harness: Harness, request_bytes: bytes
) -> None:
    served = await harness.serve(reply_ok)
    client = await harness.connect(served)
    await client.send(request_bytes)
    response = await client.response()
    assert (response.status, response.header("connection")) == (400, "close")
    assert response.error_message()
    assert await client.until_closed() == b""
    assert served.requests == []
    assert served.server.stats.malformed == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            http(
                "GET",
                "/ws",
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ),
            id="websocket",
        ),
        pytest.param(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", id="connect"),
    ],
)
async def test_upgrades_and_connect_get_400(harness: Harness, request_bytes: bytes) -> None:
    served = await harness.serve(reply_ok)
    client = await harness.connect(served)
    await client.send(request_bytes)
    response = await client.response()
    assert (response.status, response.header("connection")) == (400, "close")
    assert "upgrades and CONNECT are not supported" in response.error_message()
    assert await client.until_closed() == b""
    assert served.requests == []
    assert served.server.stats.malformed == 1


# -- Expect: 100-continue ----------------------------------------------------------------------


async def test_expect_100_continue_is_answered_before_the_body_is_sent(harness: Harness) -> None:
    served = await harness.serve(echo_body)
    client = await harness.connect(served)
    await client.send(
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    async with asyncio.timeout(TIMEOUT):
        assert await client.reader.readexactly(len(CONTINUE)) == CONTINUE
    await client.send(b"hello")
    response = await client.response()
    assert (response.status, response.body) == (200, b"hello")
    assert served.requests[0].body == b"hello"


async def test_a_pipelined_100_continue_does_not_cut_into_the_response_in_progress(
    harness: Harness, reads: Reads
) -> None:
    handler = HeldStream(b"one", b"two", only="/slow", other=echo_body)
    started, release = handler.started, handler.release

    served = await harness.serve(handler)
    client = await harness.connect(served)
    await client.send(http("GET", "/slow"))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    first = await client.head()
    assert await client.chunk(first) == b"one"
    # The next request's headers, read by the server while /slow is still streaming.
    await reads.send_apart(
        client,
        b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    release.set()

    await client.body(first)
    assert first.chunks == [b"one", b"two"]
    async with asyncio.timeout(TIMEOUT):
        assert await client.reader.readexactly(len(CONTINUE)) == CONTINUE
    await client.send(b"data")
    second = await client.response()
    assert (second.status, second.body) == (200, b"data")


async def test_a_request_refused_on_its_headers_is_answered_before_its_body_is_sent(
    harness: Harness,
) -> None:
    def admit(path: str, headers: Headers, peer: str) -> tuple[int, bytes, Headers] | None:
        return None if (b"x-api-key", b"right") in headers else (401, b'{"error":"who are you?"}', [])

    served = await harness.serve(echo_body, admit=admit, max_body=64 * 1024 * 1024)
    # Admitted: the body is read and handled.
    client = await harness.connect(served)
    await client.send(http("POST", "/v1/messages", "X-Api-Key: right", body=b"hello"))
    assert (await client.response()).body == b"hello"
    # Refused: 32 MiB announced, none sent; the answer comes anyway, and the connection closes.
    intruder = await harness.connect(served)
    await intruder.send(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: wrong\r\nContent-Length: 33554432\r\n\r\n"
    )
    refused = await intruder.response()
    assert (refused.status, refused.body) == (401, b'{"error":"who are you?"}')
    assert await intruder.until_closed() == b""
    assert [r.path for r in served.requests] == ["/v1/messages"]  # the handler never saw it


async def test_a_bad_request_behind_a_streaming_response_waits_its_turn(harness: Harness) -> None:
    handler = HeldStream(b"one", b"two")
    started, release = handler.started, handler.release

    served = await harness.serve(handler)
    client = await harness.connect(served)
    await client.send(http("GET", "/slow"))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    first = await client.head()
    assert await client.chunk(first) == b"one"
    await client.send(b"NOT HTTP AT ALL\r\n\r\n")  # pipelined garbage while /slow streams
    release.set()
    await client.body(first)
    assert first.chunks == [b"one", b"two"]  # the response in progress was not cut
    second = await client.response()
    assert second.status == 400 and second.header("connection") == "close"
    assert await client.until_closed() == b""


# -- the agent going away, and handlers that fail ----------------------------------------------


async def test_a_client_disconnect_mid_response_calls_on_lost(harness: Harness) -> None:
    lost, started = asyncio.Event(), asyncio.Event()
    seen: list[ResponseWriter] = []

    async def stream(request: Request, writer: ResponseWriter) -> None:
        seen.append(writer)
        writer.on_lost = lost.set
        writer.start(200, TEXT)
        writer.write(b"partial")
        started.set()
        await lost.wait()
        writer.write(b"too late")  # harmless once the agent is gone
        writer.end()

    served = await harness.serve(stream)
    client = await harness.connect(served)
    await client.send(http("POST", "/v1/messages", body=b"{}"))
    response = await client.head()
    assert await client.chunk(response) == b"partial"
    await asyncio.wait_for(started.wait(), TIMEOUT)
    client.close()

    await asyncio.wait_for(lost.wait(), TIMEOUT)
    [writer] = seen
    assert writer.lost
    assert served.server.connections == set()  # forgotten before on_lost ran


async def test_a_handler_failing_before_it_starts_gets_a_500_and_the_connection_stays(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: Request, writer: ResponseWriter) -> None:
        if request.path == "/boom":
            raise ValueError("handler bug")
        await reply_ok(request, writer)

    served = await harness.serve(handler)
    client = await harness.connect(served)
    with caplog.at_level(logging.ERROR, logger="moltconsole_backend.gateway.http_server"):
        await client.send(http("GET", "/boom"))
        response = await client.response()
    assert (response.status, response.reason) == (500, "Internal Server Error")
    assert response.error_message() == "the moltconsole gateway failed; see its log"
    assert response.header("connection") is None
    [record] = [r for r in caplog.records if r.name == "moltconsole_backend.gateway.http_server"]
    assert record.getMessage() == "the AI gateway failed on GET /boom"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)

    await client.send(http("GET", "/fine"))
    assert (await client.response()).body == OK_BODY


async def test_a_handler_that_sends_nothing_gets_a_500(harness: Harness) -> None:
    async def silent(request: Request, writer: ResponseWriter) -> None:
        return None

    served = await harness.serve(silent)
    client = await harness.connect(served)
    await client.send(http("GET", "/"))
    response = await client.response()
    assert response.status == 500
    assert response.error_message() == "the moltconsole gateway sent no response"


async def raise_mid_stream(request: Request, writer: ResponseWriter) -> None:
    """Fails once the response has started, as when the provider's connection breaks."""
    writer.start(200, TEXT)
    writer.write(b"hello")
    raise RuntimeError("the provider broke")


async def return_mid_stream(request: Request, writer: ResponseWriter) -> None:
    """Returns without ending the response it started."""
    writer.start(200, TEXT)
    writer.write(b"hello")


async def abort_mid_stream(request: Request, writer: ResponseWriter) -> None:
    """Drops the connection on purpose, as the proxy does when the provider's stream breaks."""
    writer.start(200, TEXT)
    writer.write(b"hello")
    writer.abort()
    writer.end()  # after an abort, nothing more goes out


@pytest.mark.parametrize(
    "handler",
    [raise_mid_stream, return_mid_stream, abort_mid_stream],
    ids=["raises", "returns-without-end", "aborts"],
)
async def test_a_response_broken_off_mid_stream_cuts_the_connection(
    harness: Harness, handler: Handler
) -> None:
    served = await harness.serve(handler)
    client = await harness.connect(served)
    await client.send(http("GET", "/stream"))
    response = await client.head()
    assert (response.status, response.chunked) == (200, True)
    # The chunk that was sent, then the connection ends without the terminating chunk, so the
    # agent sees a cut response, not one that looks complete.
    assert await client.until_closed() == b"5\r\nhello\r\n"
    assert len(served.requests) == 1


# -- timeouts ----------------------------------------------------------------------------------


async def test_an_idle_keep_alive_connection_is_closed(harness: Harness) -> None:
    served = await harness.serve(reply_ok, idle_timeout=0.2)
    loop = asyncio.get_running_loop()
    client = await harness.connect(served)
    sent = loop.time()
    await client.send(http("GET", "/"))
    assert (await client.response()).status == 200

    assert await client.until_closed() == b""
    assert loop.time() - sent >= 0.19  # closed for being idle, not at once after the response
    assert served.server.stats.head_timeouts == 0  # an idle close is no timeout


async def test_a_new_connection_that_sends_nothing_is_closed_at_the_header_timeout(harness: Harness) -> None:
    served = await harness.serve(reply_ok, header_timeout=0.2, idle_timeout=10.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    silent = await harness.connect(served)  # never sends anything
    assert await silent.until_closed() == b""  # nothing to answer: closed without a response
    assert loop.time() - began >= 0.19
    assert served.server.stats.head_timeouts == 1


@pytest.mark.parametrize(
    ("partial", "message", "counter"),
    [
        pytest.param(
            b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-",
            "the request's headers did not arrive within 0.2 s (gateway.header_timeout)",
            "head_timeouts",
            id="in-headers",
        ),
        pytest.param(
            http("POST", "/v1/messages", body=b'{"model":"m"}')[:-4],
            "the request's body did not arrive within 0.3 s of its headers (gateway.body_timeout)",
            "body_timeouts",
            id="in-body",
        ),
    ],
)
async def test_a_stalled_request_gets_408_and_the_connection_closes(
    harness: Harness, partial: bytes, message: str, counter: str
) -> None:
    served = await harness.serve(reply_ok, header_timeout=0.2, body_timeout=0.3)
    client = await harness.connect(served)
    await client.send(partial)
    response = await client.response()
    assert (response.status, response.header("connection")) == (408, "close")
    assert response.error_message() == message
    assert await client.until_closed() == b""
    assert served.requests == []
    assert getattr(served.server.stats, counter) == 1


async def test_a_long_response_is_not_cut_by_the_timeouts(harness: Harness) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request, writer: ResponseWriter) -> None:
        writer.start(200, TEXT)
        writer.write(b"thinking")
        started.set()
        await release.wait()
        writer.write(b"done")
        writer.end()

    served = await harness.serve(slow, header_timeout=0.1, body_timeout=0.1, idle_timeout=0.1)
    client = await harness.connect(served)
    await client.send(http("GET", "/"))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    await asyncio.sleep(0.35)  # time itself is under test: well past both timeouts
    release.set()
    response = await client.response()
    assert response.chunks == [b"thinking", b"done"]


# -- flow control ------------------------------------------------------------------------------


async def test_a_slow_reader_pauses_and_resumes_the_writer(harness: Harness) -> None:
    paused, resumed = asyncio.Event(), asyncio.Event()
    piece = b"x" * 16384
    sent = 0

    async def flood(request: Request, writer: ResponseWriter) -> None:
        nonlocal sent
        writer.on_pause, writer.on_resume = paused.set, resumed.set
        writer.start(200, [(b"content-type", b"application/octet-stream")])
        while not paused.is_set():  # the client reads nothing meanwhile: buffers fill up
            writer.write(piece)
            sent += len(piece)
        await resumed.wait()
        writer.write(b"end")
        writer.end()

    served = await harness.serve(flood)
    client = await harness.connect(served)
    await client.send(http("GET", "/big"))
    await asyncio.wait_for(paused.wait(), TIMEOUT)
    assert not resumed.is_set()

    response = await client.response()  # reading drains the buffers: the writer resumes
    assert resumed.is_set()
    assert len(response.body) == sent + 3
    assert response.body.endswith(b"xend")


# -- shutting down -----------------------------------------------------------------------------


async def test_close_lets_a_streamed_response_finish_and_refuses_new_connections(harness: Harness) -> None:
    handler = HeldStream(b"first", b"second", only="/stream", other=reply_ok)
    started, release = handler.started, handler.release

    served = await harness.serve(handler)
    idle = await harness.connect(served)
    await idle.send(http("GET", "/"))
    assert (await idle.response()).status == 200  # accepted, answered, now idle
    busy = await harness.connect(served)
    await busy.send(http("GET", "/stream"))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    response = await busy.head()
    assert await busy.chunk(response) == b"first"

    loop = asyncio.get_running_loop()
    began = loop.time()
    closing = asyncio.create_task(served.server.close(grace=5.0))
    assert await idle.until_closed() == b""  # idle connections close at once
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", served.port)
    assert not closing.done()

    release.set()
    await busy.body(response)
    assert response.chunks == [b"first", b"second"]
    assert await busy.until_closed() == b""
    await asyncio.wait_for(closing, TIMEOUT)
    assert loop.time() - began < 5.0  # it returned once the response was done, not at the grace
    assert served.server.connections == set()


async def test_close_cuts_a_response_that_outlasts_the_grace(harness: Harness) -> None:
    started, lost = asyncio.Event(), asyncio.Event()

    async def endless(request: Request, writer: ResponseWriter) -> None:
        writer.on_lost = lost.set
        writer.start(200, TEXT)
        writer.write(b"forever")
        started.set()
        await lost.wait()

    served = await harness.serve(endless)
    client = await harness.connect(served)
    await client.send(http("GET", "/"))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    assert (await client.head()).status == 200

    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(served.server.close(grace=0.2), TIMEOUT)
    assert loop.time() - began >= 0.2
    assert await client.until_closed() == b"7\r\nforever\r\n"  # no terminating chunk
    await asyncio.wait_for(lost.wait(), TIMEOUT)
    assert served.server.connections == set()
