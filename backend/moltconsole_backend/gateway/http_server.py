"""The HTTP/1.1 server the agent's model requests arrive on: an asyncio protocol, nothing more.

Why not uvicorn and ASGI: a streamed response passes through the gateway one SSE event at a time,
and every event must leave as soon as it arrives. Through ASGI each event is a message dict
handed from task to task; here the provider connection's callback writes the event straight to
the agent's socket (see ``ResponseWriter.write``), so an event costs one parser callback and one
``write``, and a request costs one task. Requests are parsed by ``httptools`` (llhttp), not by
hand.

What it does, and refuses:

- keep-alive and pipelining (pipelined requests are answered in order);
- bodies up to ``max_body`` bytes (413 beyond), header sections up to ``MAX_HEADER_BYTES`` (431);
- ``Expect: 100-continue``; HTTP/1.0 clients get close-delimited responses;
- no upgrades and no CONNECT (400); malformed requests get 400 and the connection closes;
- a request that stalls for ``read_timeout`` seconds, or a connection idle for
  ``idle_timeout`` seconds between requests, is closed;
- when the agent goes away, the response's ``on_lost`` callback runs at once (the proxy uses it
  to cancel the generation upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_PIPELINED = 8  # requests parsed ahead of the one being answered; reading pauses beyond
HIGH_WATER = 256 * 1024  # bytes queued for the agent at which the provider is paused

Headers = list[tuple[bytes, bytes]]


class Request:
    """One request from the agent, body complete. Header names are lower-case."""

    __slots__ = ("body", "headers", "http_10", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers,
        body: bytes,
        keep_alive: bool,
        http_10: bool,
    ) -> None:
        self.method, self.path, self.query = method, path, query
        self.headers, self.body = headers, body
        self.keep_alive, self.http_10 = keep_alive, http_10

    def header(self, name: bytes) -> bytes | None:
        """The first value of a (lower-case) header, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handler = Callable[[Request, "ResponseWriter"], Awaitable[None]]
# Looks at a request's path and headers before its body is read: None to go on, or the
# (status, JSON body) to refuse it with. Keeps unauthenticated callers from making us buffer.
Admit = Callable[[str, Headers], tuple[int, bytes] | None]


class ResponseWriter:
    """The response to one request, written straight to the agent's connection.

    ``start`` sends the status and headers; with a ``content-length`` header the body is sent
    as is, otherwise chunked (close-delimited for HTTP/1.0). ``write`` sends a piece of body
    immediately, ``end`` completes the response, ``abort`` drops the connection so the agent
    sees a cut response rather than one that looks complete.

    The owner may set ``on_lost`` (the agent went away) and ``on_pause`` / ``on_resume`` (the
    agent reads slower than we write; stop feeding until resumed).
    """

    __slots__ = (
        "_chunked",
        "_close_after",
        "_conn",
        "_http_10",
        "_no_body",
        "finished",
        "lost",
        "on_lost",
        "on_pause",
        "on_resume",
        "started",
        "status",
    )

    def __init__(self, conn: _Connection, close_after: bool, http_10: bool = False) -> None:
        self._conn = conn
        self._http_10 = http_10
        self._chunked = False
        self._no_body = False
        self._close_after = close_after
        self.started = False
        self.finished = False
        self.lost = False
        self.status = 0
        self.on_lost: Callable[[], None] | None = None
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    def start(self, status: int, headers: Headers) -> None:
        """Send the status line and headers (hop-by-hop headers are the caller's to leave out)."""
        if self.started:
            raise RuntimeError("the response has already started")
        self.started = True
        self.status = status
        has_length = any(name.lower() == b"content-length" for name, _ in headers)
        http_10 = self._http_10
        if status < 200 or status in (204, 304):
            self._no_body = True  # these never carry a body, so no framing either
        elif not has_length:
            if http_10:
                self._close_after = True
            else:
                self._chunked = True
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b"Unknown"
        lines = [b"HTTP/1.1 %d %s" % (status, reason)]
        lines += [name + b": " + value for name, value in headers]
        if self._chunked:
            lines.append(b"transfer-encoding: chunked")
        if self._close_after:
            lines.append(b"connection: close")
        elif http_10:
            lines.append(b"connection: keep-alive")
        self._conn.write(b"\r\n".join(lines) + b"\r\n\r\n")

    def write(self, data: bytes) -> None:
        """Send a piece of the body now."""
        if not data or self.finished or self._no_body:
            return  # an empty chunk would end a chunked body
        if self._chunked:
            self._conn.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._conn.write(data)

    def end(self) -> None:
        """The body is complete."""
        if self.finished:
            return
        self.finished = True
        if self._chunked:
            self._conn.write(b"0\r\n\r\n")
        self._conn.response_done(self, keep=not self._close_after)

    def abort(self) -> None:
        """Drop the agent's connection: it sees the response cut short."""
        if not self.finished:
            self.finished = True
            self._conn.abort()

    def respond(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        """A whole response in one go."""
        out = [(b"content-type", b"application/json")] if headers is None else list(headers)
        out.append((b"content-length", str(len(body)).encode()))
        self.start(status, out)
        self.write(body)
        self.end()


class _Connection(asyncio.Protocol):
    """One agent connection: parse requests, answer them one at a time, in order."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.http_10 = False
        self.queue: deque[Request] = deque()
        self.queued_bytes = 0  # request bodies parsed ahead, not yet answered
        self.worker: asyncio.Task[None] | None = None
        self.current: ResponseWriter | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.completed_here = False  # a request ended within the read being parsed
        self.rejected: bytes | None = None  # the refusal to send once earlier responses are out
        self._message_reset()

    def _message_reset(self) -> None:
        self.url = b""
        self.headers: Headers = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.in_message = False
        self.in_head = False  # between the first byte of a request and the end of its headers
        self.head_seen = 0
        self.continue_pending = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(AttributeError, NotImplementedError):
            transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        self.server.connections.add(self)
        self._arm(self.server.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self.rejected is not None:
            return  # the stream went bad; what follows is not parsed
        if self.worker is None:
            self._arm(self.server.read_timeout)
        was_in_head = self.in_head
        self.completed_here = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.closed:
                return
            refuse = exc.__context__
            if isinstance(refuse, _Refuse):
                self._reject(refuse.status, refuse.message, refuse.body)
            else:
                self._reject(400, f"malformed HTTP request ({exc})")
            return
        if self.in_head and (was_in_head or not self.completed_here) and not self.closed:
            # httptools keeps an unfinished header line to itself (on_header comes once it
            # ends), so bound the bytes read inside a header section as well. (A read that
            # also ended the previous request is not counted: its bytes are mostly that one's.)
            self.head_seen += len(data)
            if self.head_seen > MAX_HEADER_BYTES:
                self._reject(431, "the request line and headers are over 64 KiB")

    def eof_received(self) -> bool | None:
        return None  # the agent closed its side: treat as gone, close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self.server.connections.discard(self)
        writer = self.current
        if writer is not None and not writer.finished:
            writer.lost = True
            if writer.on_lost is not None:
                writer.on_lost()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.writing_paused = True
        writer = self.current
        if writer is not None and writer.on_pause is not None:
            writer.on_pause()

    def resume_writing(self) -> None:
        self.writing_paused = False
        writer = self.current
        if writer is not None and writer.on_resume is not None:
            writer.on_resume()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._message_reset()
        self.in_message = True
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Refuse(431, "the request line and headers are over 64 KiB")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Refuse(431, "the request line and headers are over 64 KiB")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.http_10 = self.parser.get_http_version() == "1.0"
        if self.parser.should_upgrade():
            raise _Refuse(400, "upgrades and CONNECT are not supported by the moltconsole gateway")
        admit = self.server.admit
        if admit is not None:
            refusal = admit(self.url.partition(b"?")[0].decode("latin-1"), self.headers)
            if refusal is not None:  # refused on its headers: its body is never read
                raise _Refuse(refusal[0], "", refusal[1])
        expect = False
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _Refuse(400, "the content-length header is not a number") from None
                if length > self.server.max_body:
                    raise _Refuse(413, self._too_large())
            elif name == b"expect" and value.lower() == b"100-continue" and not self.http_10:
                expect = True
        if expect:
            if self.worker is None:
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:  # a response is in progress: the interim one must not cut into it
                self.continue_pending = True

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            raise _Refuse(413, self._too_large())
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.completed_here = True
        path, _, query = self.url.partition(b"?")
        request = Request(
            method=self.parser.get_method().decode("ascii", "replace"),
            path=path.decode("latin-1"),
            query=query.decode("latin-1"),
            headers=self.headers,
            body=b"".join(self.body),
            keep_alive=self.parser.should_keep_alive(),
            http_10=self.http_10,
        )
        self._message_reset()
        self.queue.append(request)
        self.queued_bytes += len(request.body)
        too_much = len(self.queue) >= MAX_PIPELINED or self.queued_bytes > self.server.max_body
        if too_much and self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        if self.worker is None:
            self._disarm()
            self.worker = self.loop.create_task(self._work())

    # -- answering -----------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while self.queue and not self.closed:
                request = self.queue.popleft()
                self.queued_bytes -= len(request.body)
                if (
                    self.reading_paused
                    and self.rejected is None
                    and len(self.queue) < MAX_PIPELINED // 2
                    and self.queued_bytes <= self.server.max_body // 2
                    and self.transport
                ):
                    self.reading_paused = False
                    self.transport.resume_reading()
                writer = ResponseWriter(self, close_after=not request.keep_alive, http_10=request.http_10)
                self.current = writer
                try:
                    await self.server.handler(request, writer)
                except Exception:
                    log.exception("the AI gateway failed on %s %s", request.method, request.path)
                    if not writer.started and not writer.lost:
                        writer.respond(500, _error_json("the moltconsole gateway failed; see its log"))
                    else:
                        writer.abort()
                if not writer.finished:
                    if writer.started:
                        writer.abort()  # a handler that returns mid-response leaves it cut
                    elif not writer.lost:
                        writer.respond(500, _error_json("the moltconsole gateway sent no response"))
                if self.continue_pending and not self.queue and not self.closed:
                    self.continue_pending = False
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if self.closed:
                    return
        finally:
            self.worker = None
            self.current = None
            self._send_rejection()
            if not self.closed:
                self._arm(self.server.read_timeout if self.in_message else self.server.idle_timeout)

    def response_done(self, writer: ResponseWriter, keep: bool) -> None:
        if not keep and self.transport is not None:
            self.closed = True
            self.transport.close()  # after what is buffered has been sent

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _reject(self, status: int, message: str, body: bytes | None = None) -> None:
        """Answer a request we will not serve, then close: the byte stream can't be trusted.

        Behind a response in progress, the refusal waits its turn (the earlier responses are
        not cut) and nothing more is read.
        """
        if self.closed or self.transport is None or self.rejected is not None:
            return
        body = _error_json(message) if body is None else body
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
            status,
            HTTPStatus(status).phrase.encode(),
            len(body),
        )
        self.rejected = head + b"connection: close\r\n\r\n" + body
        if self.worker is None:
            self._send_rejection()
        elif not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _send_rejection(self) -> None:
        if self.rejected is not None and self.transport is not None and not self.closed:
            self.transport.write(self.rejected)
            self.closed = True
            self.transport.close()

    def _too_large(self) -> str:
        limit = self.server.max_body
        size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
        return f"the request body is over {size}"

    # -- timeouts ------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if self.worker is None and self.transport is not None and not self.closed:
            if self.in_message:
                self._reject(408, "the request stalled; send it whole")
            else:
                self.closed = True
                self.transport.close()

    def shutdown(self) -> None:
        """Close when idle; a response in progress finishes first (see ``HTTPServer.close``)."""
        if self.worker is None and self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class _Refuse(Exception):
    def __init__(self, status: int, message: str, body: bytes | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.body = status, message, body


def _error_json(message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": "api_error", "message": message}}).encode()


class HTTPServer:
    """Serves ``handler`` on a listening socket, in the running event loop."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int,
        admit: Admit | None = None,
        read_timeout: float = 60.0,
        idle_timeout: float = 75.0,
    ) -> None:
        self.handler = handler
        self.admit = admit
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, sock: socket.socket) -> None:
        """Accept connections on ``sock`` (bound and listening)."""
        self._server = await asyncio.get_running_loop().create_server(lambda: _Connection(self), sock=sock)

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; let responses in progress finish for up to ``grace`` seconds."""
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            for conn in list(self.connections):
                conn.shutdown()
            busy = [conn for conn in self.connections if conn.worker is not None]
            if not busy or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
