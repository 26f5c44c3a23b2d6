"""The HTTP/1.1 server the agent's model requests arrive on: an asyncio protocol, nothing more.

Why not uvicorn and ASGI: a streamed response passes through the gateway one SSE event at a time,
and every event must leave as soon as it arrives. Through ASGI each event is a message dict
handed from task to task; here the provider connection's callback writes the event straight to
the agent's socket (see ``ResponseWriter.write``), so an event costs one parser callback and one
``write``, and a request costs one task. Requests are parsed by ``httptools`` (llhttp), not by
hand.

What it does:

- keep-alive and pipelining (pipelined requests are answered in order; reading pauses while
  ``MAX_PIPELINED`` requests or ``max_body`` bytes of bodies wait behind the one answered);
- ``Expect: 100-continue``; HTTP/1.0 clients get close-delimited responses;
- when the agent goes away, the response's ``on_lost`` callback runs at once (the proxy uses it
  to cancel the generation upstream);
- ``admit`` sees each request's path, headers and client address before its body is read, and
  may refuse it with its own status, JSON body and headers (a 401, a 429 with retry-after).

Its limits, with the setting behind each, and what happens past it (every refusal is counted
in ``HTTPServer.stats``):

- connections: ``max_connections`` open at once (gateway.max_connections, 512) and
  ``max_connections_per_client`` from one source address (gateway.max_connections_per_client,
  128). A connection past either is answered 503 at once, with ``retry-after: 1`` and an
  ``overloaded_error`` naming the setting, and closed;
- the head: the request line and headers up to ``MAX_HEADER_BYTES`` (64 KiB, counting an
  unfinished line too), else 431; all of it within ``header_timeout`` of its first byte
  (gateway.header_timeout, 10 s), however it trickles in, else 408. A new connection must begin
  its first request within ``header_timeout`` too, else it is closed;
- the body: up to ``max_body`` bytes (gateway.max_body_mb, 32 MiB), else 413, before any of it
  is read when a content-length says so; all of it within ``body_timeout`` of the end of the
  head (gateway.body_timeout, 60 s), else 408. For a request pipelined behind a response, both
  deadlines count from the end of that response at the earliest;
- what a chunked body carries besides itself: trailers are dropped, never forwarded; trailers,
  chunk extensions and chunk-size lines may add up to ``MAX_HEADER_BYTES`` over the reads that
  bring less body than that (a read that brings more starts the count again), else 431;
- bodies held in memory, all connections together: ``max_bodies_bytes`` (gateway.max_bodies_mb,
  128 MiB). A body is reserved when its content-length is read (a chunked one as it grows) and
  released when its handler returns or its connection is gone; one that would pass the total
  gets 503 with ``retry-after: 1`` and an ``overloaded_error``. A body is assembled in place,
  never held twice, and once no body is held after many were, the heap is trimmed so the
  process does not stay at its peak;
- no upgrades and no CONNECT (400); malformed requests get 400;
- a connection idle for ``idle_timeout`` seconds between requests is closed.

After any refusal the connection closes, without cutting the responses before it: the refusal
is followed by a FIN, and what the client still sends is read and dropped for up to
``linger_timeout`` seconds, so that a reset does not destroy the refusal before it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import io
import json
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import httptools

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # a request head; also the non-body bytes of a body (trailers...)
MAX_PIPELINED = 8  # requests parsed ahead of the one being answered; reading pauses beyond
HIGH_WATER = 256 * 1024  # bytes queued for the agent at which the provider is paused
MiB = 1024 * 1024

Headers = list[tuple[bytes, bytes]]

MAX_LINGERING = 64  # connections refused at the door that may linger at once (see _linger)
TRIM_AFTER = 32 * MiB  # body bytes let go since the last malloc_trim that make another worth it

# What a connection's timer is counting down (``_Connection.timer_for``).
_FRESH, _IDLE, _HEAD, _BODY, _LINGER = 1, 2, 3, 4, 5


@dataclass(slots=True)
class ServerStats:
    """What the server holds and has refused since it started: plain ints, safe to copy."""

    connections_open: int = 0
    connections_refused: int = 0  # over max_connections or max_connections_per_client (503)
    head_timeouts: int = 0  # no complete head within header_timeout (408, or closed if nothing came)
    body_timeouts: int = 0  # no complete body within body_timeout of its head (408)
    too_large: int = 0  # a body over max_body (413) or a head over MAX_HEADER_BYTES (431)
    too_many_bodies: int = 0  # bodies held at once would pass max_bodies_bytes (503)
    trailer_refused: int = 0  # over MAX_HEADER_BYTES of trailers or chunk framing in a body (431)
    malformed: int = 0  # unparsable requests, upgrades, CONNECT (400)
    bodies_bytes_held: int = 0  # request body bytes reserved right now, all connections


class Request:
    """One request from the agent, body complete. Header names are lower-case.

    ``peer`` is the client's IP address ("" if unknown).
    """

    __slots__ = ("body", "headers", "http_10", "keep_alive", "method", "path", "peer", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers,
        body: bytes,
        keep_alive: bool,
        http_10: bool,
        peer: str = "",
    ) -> None:
        self.method, self.path, self.query = method, path, query
        self.headers, self.body = headers, body
        self.keep_alive, self.http_10 = keep_alive, http_10
        self.peer = peer

    def header(self, name: bytes) -> bytes | None:
        """The first value of a (lower-case) header, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handler = Callable[[Request, "ResponseWriter"], Awaitable[None]]
# Looks at a request's path, headers and client address (peer) before its body is read: None to
# go on, or the (status, JSON body, extra response headers) to refuse it with, e.g. a 429 with a
# retry-after. Keeps unauthenticated callers from making us buffer.
Admit = Callable[[str, Headers, str], tuple[int, bytes, Headers] | None]


class ResponseWriter:
    """The response to one request, written straight to the agent's connection.

    ``start`` sends the status and headers; with a ``content-length`` header the body is sent
    as is, otherwise chunked (close-delimited for HTTP/1.0). ``write`` sends a piece of body
    immediately, ``end`` completes the response, ``abort`` drops the connection so the agent
    sees a cut response rather than one that looks complete. ``start(..., hold=True)`` keeps the
    head until the first piece of body (or ``flush``/``end``), so that both leave in one write:
    one send, one packet and one wakeup of the agent fewer per response.

    The owner may set ``on_lost`` (the agent went away) and ``on_pause`` / ``on_resume`` (the
    agent reads slower than we write; stop feeding until resumed).
    """

    __slots__ = (
        "_chunked",
        "_close_after",
        "_conn",
        "_head",
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
        self._head: bytes | None = None  # held by start(hold=True) until the body carries it
        self.started = False
        self.finished = False
        self.lost = False
        self.status = 0
        self.on_lost: Callable[[], None] | None = None
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    def start(self, status: int, headers: Headers, *, hold: bool = False) -> None:
        """Send the status line and headers (hop-by-hop headers are the caller's to leave out).

        With ``hold`` they go with the first piece of body; the caller ``flush``es them if none
        is ready.
        """
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
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if hold:
            self._head = head
        else:
            self._conn.write(head)

    def flush(self) -> None:
        """Send a head held back by ``start(hold=True)`` that no body has taken out yet."""
        head = self._head
        if head is not None:
            self._head = None
            self._conn.write(head)

    def write(self, data: bytes) -> None:
        """Send a piece of the body now."""
        if not data or self.finished or self._no_body:
            return  # an empty chunk would end a chunked body
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self._conn.write(data)

    def end(self) -> None:
        """The body is complete."""
        if self.finished:
            return
        self.finished = True
        head, self._head = self._head or b"", None
        if self._chunked:
            self._conn.write(head + b"0\r\n\r\n")
        elif head:
            self._conn.write(head)
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
        self.start(status, out, hold=True)
        self.write(body)
        self.end()


class _Connection(asyncio.Protocol):
    """One agent connection: parse requests, answer them one at a time, in order."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.counted = False  # in the server's connection counts (not refused as it connected)
        self.closed = False
        self.http_10 = False
        self.queue: deque[Request] = deque()
        self.queued_bytes = 0  # request bodies parsed ahead, not yet answered (reserved)
        self.worker: asyncio.Task[None] | None = None
        self.current: ResponseWriter | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_for = 0  # _FRESH, _IDLE, _HEAD or _BODY while a timer is armed
        self.completed_here = False  # a request ended within the read being parsed
        self.rejected: bytes | None = None  # the refusal to send once earlier responses are out
        self._message_reset()

    def _message_reset(self) -> None:
        self.url = b""
        self.headers: Headers = []
        self.header_bytes = 0
        # The body: its one piece as is, or a buffer grown in place (no list of pieces joined
        # at the end, which would hold it twice).
        self.body: bytes | io.BytesIO | None = None
        self.body_size = 0
        self.reserved = 0  # of this body, bytes counted in the server's bodies_bytes_held
        self.in_message = False
        self.in_head = False  # between the first byte of a request and the end of its headers
        self.head_seen = 0
        self.not_body = 0  # bytes read in the body phase that were not body, since it last grew
        self.continue_pending = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        server = self.server
        peername = transport.get_extra_info("peername")
        self.peer = peer = str(peername[0]) if isinstance(peername, tuple) else ""
        refusal = server._refusal_for(peer)
        if refusal is not None:  # over a connection cap: say so, and go
            self.rejected = refusal
            transport.write(refusal)  # type: ignore[attr-defined]
            if len(server.lingering) < MAX_LINGERING:
                server.lingering.add(self)
                self._linger()
            else:  # a flood: no descriptor is kept for it, the 503 may be lost to a reset
                self.closed = True
                transport.close()
            return
        self.counted = True
        server.connections.add(self)
        server.stats.connections_open += 1
        server.per_client[peer] = server.per_client.get(peer, 0) + 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(AttributeError, NotImplementedError):
            transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        self._arm(server.header_timeout, _FRESH)

    def data_received(self, data: bytes) -> None:
        if self.rejected is not None:
            return  # the stream went bad; what follows is not parsed
        was_in_head = self.in_head
        in_body = self.in_message and not was_in_head
        body_before = self.body_size
        self.completed_here = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.closed:
                return
            refuse = exc.__context__
            if isinstance(refuse, _Refuse):
                self._reject(refuse.status, refuse.message, refuse.body, refuse.headers, refuse.kind)
            else:
                self.server.stats.malformed += 1
                self._reject(400, f"malformed HTTP request ({exc})")
            return
        if self.closed:
            return
        if self.in_head:
            if was_in_head or not self.completed_here:
                # httptools keeps an unfinished header line to itself (on_header comes once it
                # ends), so bound the bytes read inside a header section as well. (A read that
                # also ended the previous request is not counted: its bytes are mostly that one's.)
                self.head_seen += len(data)
                if self.head_seen > MAX_HEADER_BYTES:
                    self.server.stats.too_large += 1
                    self._reject(431, _HEAD_TOO_LARGE)
                    return
        elif in_body and self.in_message and not self.completed_here:
            # The same for what a body carries besides itself: trailers (buffered by httptools
            # until their line ends), chunk extensions, chunk-size lines. A read that brought
            # more body than that is progress; reads that did not add up to a bound.
            grown = self.body_size - body_before
            other = len(data) - grown
            if other > grown:
                self.not_body += other
                if self.not_body > MAX_HEADER_BYTES:
                    self.server.stats.trailer_refused += 1
                    self._reject(431, _NOT_BODY_TOO_LARGE)
                    return
            else:
                self.not_body = 0
        if self.worker is None and self.in_message:
            # Deadlines for the head from its first byte, for the body from the end of the head:
            # armed as a phase begins, never pushed back by the bytes that follow.
            phase = _HEAD if self.in_head else _BODY
            if self.timer_for != phase:
                self._arm_phase(phase)

    def eof_received(self) -> bool | None:
        return None  # the agent closed its side: treat as gone, close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if not self.counted:
            self.server.lingering.discard(self)
            return  # refused as it connected: nothing was counted
        self.counted = False
        server = self.server
        server.connections.discard(self)
        server.stats.connections_open -= 1
        left = server.per_client.get(self.peer, 1) - 1
        if left > 0:
            server.per_client[self.peer] = left
        else:
            server.per_client.pop(self.peer, None)
        # The body being read and the requests queued go with the connection; the one being
        # answered is released when its handler returns (see ``_work``).
        server._release(self.reserved + self.queued_bytes)
        self.reserved = self.queued_bytes = 0
        self.body = None
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
            self.server.stats.too_large += 1
            raise _Refuse(431, _HEAD_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer: never forwarded (its bytes are bounded in data_received)
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > MAX_HEADER_BYTES:
            self.server.stats.too_large += 1
            raise _Refuse(431, _HEAD_TOO_LARGE)
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        server = self.server
        self.http_10 = self.parser.get_http_version() == "1.0"
        if self.parser.should_upgrade():
            server.stats.malformed += 1
            raise _Refuse(400, "upgrades and CONNECT are not supported by the moltconsole gateway")
        admit = server.admit
        if admit is not None:
            refusal = admit(self.url.partition(b"?")[0].decode("latin-1"), self.headers, self.peer)
            if refusal is not None:  # refused on its headers: its body is never read
                status, body, headers = refusal
                raise _Refuse(status, "", body, headers)
        expect = False
        length = 0
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    server.stats.malformed += 1
                    raise _Refuse(400, "the content-length header is not a number") from None
                if length > server.max_body:
                    server.stats.too_large += 1
                    raise _Refuse(413, self._too_large())
            elif name == b"expect" and value.lower() == b"100-continue" and not self.http_10:
                expect = True
        if length > 0:
            self._reserve(length)  # before a 100 Continue invites the body
        if expect:
            if self.worker is None:
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:  # a response is in progress: the interim one must not cut into it
                self.continue_pending = True

    def on_body(self, body: bytes) -> None:
        size = self.body_size + len(body)
        self.body_size = size
        if size > self.reserved:  # only a chunked body outgrows its reservation
            self._grow(size)
        buf = self.body
        if buf is None:
            self.body = body  # often the whole body, in one read
        elif isinstance(buf, bytes):
            grown = self.body = io.BytesIO()
            grown.write(buf)
            grown.write(body)
        else:
            buf.write(body)

    def on_message_complete(self) -> None:
        self.completed_here = True
        path, _, query = self.url.partition(b"?")
        buf = self.body
        if buf is None:
            body = b""
        elif isinstance(buf, bytes):
            body = buf
        else:
            body = buf.getvalue()  # the buffer itself, not a copy
        if self.reserved != len(body):  # never expected; keeps the accounting exact regardless
            self.server._release(self.reserved - len(body))
        request = Request(
            method=self.parser.get_method().decode("ascii", "replace"),
            path=path.decode("latin-1"),
            query=query.decode("latin-1"),
            headers=self.headers,
            body=body,
            keep_alive=self.parser.should_keep_alive(),
            http_10=self.http_10,
            peer=self.peer,
        )
        self._message_reset()
        self.queue.append(request)
        self.queued_bytes += len(body)
        too_much = len(self.queue) >= MAX_PIPELINED or self.queued_bytes > self.server.max_body
        if too_much and self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        if self.worker is None:
            self._disarm()
            self.worker = self.loop.create_task(self._work())

    # -- request bodies held in memory ---------------------------------------------------------

    def _reserve(self, size: int) -> None:
        """Count ``size`` more body bytes against the server's max_bodies_bytes, or refuse (503)."""
        server = self.server
        stats = server.stats
        if stats.bodies_bytes_held + size > server.max_bodies_bytes:
            stats.too_many_bodies += 1
            raise _Refuse(
                503,
                f"the request bodies held by the moltconsole gateway at once would pass "
                f"{_size(server.max_bodies_bytes)}; retry shortly, or raise gateway.max_bodies_mb",
                headers=_RETRY_SOON,
                kind="overloaded_error",
            )
        stats.bodies_bytes_held += size
        self.reserved += size

    def _grow(self, size: int) -> None:
        """A chunked body reached ``size`` bytes: bound it and reserve what it grew by."""
        if size > self.server.max_body:
            self.server.stats.too_large += 1
            raise _Refuse(413, self._too_large())
        self._reserve(size - self.reserved)

    # -- answering -----------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while self.queue and not self.closed:
                request = self.queue.popleft()
                held = len(request.body)
                self.queued_bytes -= held
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
                finally:
                    self.server._release(held)  # answered (or given up): its body is let go
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
                # A request that began meanwhile gets its full time from now; else idle.
                if self.in_message:
                    self._arm_phase(_HEAD if self.in_head else _BODY)
                else:
                    self._arm(self.server.idle_timeout, _IDLE)

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

    def _reject(
        self,
        status: int,
        message: str,
        body: bytes | None = None,
        headers: Headers | None = None,
        kind: str = "api_error",
    ) -> None:
        """Answer a request we will not serve, then close: the byte stream can't be trusted.

        Behind a response in progress, the refusal waits its turn (the earlier responses are
        not cut) and nothing more is read. The body read so far is dropped at once.
        """
        if self.closed or self.transport is None or self.rejected is not None:
            return
        self.server._release(self.reserved)
        self.reserved = 0
        self.body = None
        self.rejected = _refusal(status, _error_json(message, kind) if body is None else body, headers)
        if self.worker is None:
            self._send_rejection()
        elif not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _send_rejection(self) -> None:
        if self.rejected is not None and self.transport is not None and not self.closed:
            self.transport.write(self.rejected)
            self._linger()

    def _linger(self) -> None:
        """Close after a refusal without losing it to a reset.

        Closing a socket with unread input makes the kernel reset the connection, and a client
        still sending its request (or one that sends it just after we refused) then gets an
        error instead of the refusal. So: half-close after the refusal, read and drop what
        still comes, and close once the client does, or after ``linger_timeout``.
        """
        transport = self.transport
        if transport is None:
            return
        self.closed = True  # nothing more is written, nothing more is parsed (rejected is set)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        self._arm(self.server.linger_timeout, _LINGER)

    def _too_large(self) -> str:
        return f"the request body is over {_size(self.server.max_body)}"

    # -- timeouts ------------------------------------------------------------------------------

    def _arm(self, seconds: float, phase: int) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, self._expire)
        self.timer_for = phase

    def _arm_phase(self, phase: int) -> None:
        server = self.server
        self._arm(server.header_timeout if phase == _HEAD else server.body_timeout, phase)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_for = 0

    def _expire(self) -> None:
        phase = self.timer_for
        self.timer, self.timer_for = None, 0
        if phase == _LINGER and self.transport is not None:
            self.transport.close()  # the client had its time to read the refusal
            return
        if self.worker is not None or self.transport is None or self.closed:
            return
        server = self.server
        if phase == _HEAD:
            server.stats.head_timeouts += 1
            self._reject(
                408,
                f"the request's headers did not arrive within {server.header_timeout:g} s "
                "(gateway.header_timeout)",
            )
        elif phase == _BODY:
            server.stats.body_timeouts += 1
            self._reject(
                408,
                f"the request's body did not arrive within {server.body_timeout:g} s of its "
                "headers (gateway.body_timeout)",
            )
        else:  # nothing begun: a keep-alive connection idle, or a new one that sent nothing
            if phase == _FRESH:
                server.stats.head_timeouts += 1
            self.closed = True
            self.transport.close()

    def shutdown(self) -> None:
        """Close when idle; a response in progress finishes first (see ``HTTPServer.close``)."""
        if self.worker is None and self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class _Refuse(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        body: bytes | None = None,
        headers: Headers | None = None,
        kind: str = "api_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.body, self.headers, self.kind = status, message, body, headers, kind


_HEAD_TOO_LARGE = "the request line and headers are over 64 KiB"
_NOT_BODY_TOO_LARGE = (
    "the request body carries over 64 KiB that is not body (trailers, chunk extensions or chunk "
    "framing); send the body itself"
)
_RETRY_SOON: Headers = [(b"retry-after", b"1")]


def _error_json(message: str, kind: str = "api_error") -> bytes:
    """An error body in Anthropic's shape, which both of the agent's SDKs report as is."""
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def _refusal(status: int, body: bytes, headers: Headers | None = None) -> bytes:
    """A whole JSON error response after which the connection closes."""
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b"Unknown"
    lines = [
        b"HTTP/1.1 %d %s" % (status, reason),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
    ]
    lines += [name + b": " + value for name, value in headers or ()]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB and limit % MiB == 0 else f"{limit:,} bytes"


class HTTPServer:
    """Serves ``handler`` on a listening socket, in the running event loop.

    The limits are explained in the module's docstring; ``stats`` counts what they refused.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int,
        admit: Admit | None = None,
        max_bodies_bytes: int = 128 * MiB,
        max_connections: int = 512,
        max_connections_per_client: int = 128,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
        idle_timeout: float = 75.0,
        linger_timeout: float = 2.0,
    ) -> None:
        self.handler = handler
        self.admit = admit
        self.max_body = max_body
        self.max_bodies_bytes = max_bodies_bytes
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.linger_timeout = linger_timeout
        self.stats = ServerStats()
        self.connections: set[_Connection] = set()
        self.per_client: dict[str, int] = {}  # open connections by source address
        self.lingering: set[_Connection] = set()  # refused as they connected, not yet closed
        self._released = 0  # body bytes let go since the heap was last trimmed
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, sock: socket.socket) -> None:
        """Accept connections on ``sock`` (bound and listening)."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Connection(self), sock=sock)

    def _refusal_for(self, peer: str) -> bytes | None:
        """The 503 for a new connection from ``peer`` over a cap, or None to serve it."""
        if len(self.connections) >= self.max_connections:
            message = (
                f"the moltconsole gateway has {self.max_connections} connections open, its limit; "
                "retry shortly, or raise gateway.max_connections"
            )
        elif self.per_client.get(peer, 0) >= self.max_connections_per_client:
            message = (
                f"{peer or 'this client'} has {self.max_connections_per_client} connections open "
                "to the moltconsole gateway, its limit; close idle ones, or raise "
                "gateway.max_connections_per_client"
            )
        else:
            return None
        self.stats.connections_refused += 1
        return _refusal(503, _error_json(message, "overloaded_error"), _RETRY_SOON)

    def _release(self, size: int) -> None:
        """``size`` body bytes are let go. Once none are held after many were, trim the heap.

        Bodies a few MiB large come from glibc's arenas, which keep freed memory: after a burst
        the process would stay at its peak. ``malloc_trim`` gives it back (measured: 47 -> 29
        MiB after 180 bodies of 2 MiB, about 8 ms), in a worker thread, and only once idle,
        so a stream in progress never waits on it.
        """
        stats = self.stats
        stats.bodies_bytes_held -= size
        self._released += size
        if stats.bodies_bytes_held == 0 and self._released >= TRIM_AFTER and _MALLOC_TRIM is not None:
            self._released = 0
            if self._loop is not None and not self._loop.is_closed():
                self._loop.run_in_executor(None, _MALLOC_TRIM, 0)

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
        for conn in [*self.connections, *self.lingering]:
            conn.abort()
