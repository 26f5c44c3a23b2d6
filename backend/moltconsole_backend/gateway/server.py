"""Serving the proxy: its own thread, its own event loop, on the address the sandbox reaches.

The gateway runs apart from the backend's API loop so that a burst of log lines or a slow API
call never adds latency to the agent's model requests, and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import logging
import resource
import socket
import struct
import threading
from typing import Any

from .http_server import HTTPServer, MiB, ServerStats

log = logging.getLogger(__name__)

_SIOCGIFADDR = 0x8915
# Descriptors the backend needs besides the agents' connections: the provider connection each
# of those may have open is counted apart (see ``raise_open_files_limit``).
FILES_HEADROOM = 256


def interface_address(name: str) -> str | None:
    """The IPv4 address of a network interface (e.g. docker0), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def bridge_address() -> str | None:
    """The Docker bridge's address on the host: what host.docker.internal means in the sandbox."""
    return interface_address("docker0")


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening socket, or an OSError whose message says what to change."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY (uvloop does not set it on a socket it is given):
    # without it each small SSE event waits for the agent's delayed ACK, about 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno,
                f"the AI gateway cannot listen on {host}:{port}: the port is in use "
                "(another moltconsole backend?). Set gateway.port in the config.",
            ) from None
        raise OSError(
            exc.errno,
            f"the AI gateway cannot listen on {host}:{port}: {exc.strerror}. "
            "Set gateway.bind_address in the config.",
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def raise_open_files_limit(max_connections: int) -> int:
    """Raise this process's open-files soft limit to its hard limit; returns the soft limit.

    Each agent connection takes a descriptor, and usually one more to its provider. If the
    limit stays below that (plus ``FILES_HEADROOM``), accept() would fail under load instead
    of the connection cap refusing cleanly, so it is logged with what to change.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max_connections + FILES_HEADROOM
    target = max(soft, wanted) if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("could not raise the open-files limit to %d: %s", target, exc)
    if soft < wanted:
        log.warning(
            "the open-files limit is %d, below the %d that gateway.max_connections = %d needs "
            "(a descriptor per agent connection and per provider connection, plus %d): raise the "
            "hard limit (ulimit -Hn, or LimitNOFILE= in a systemd unit) or lower "
            "gateway.max_connections",
            soft,
            wanted,
            max_connections,
            FILES_HEADROOM,
        )
    return soft


class GatewayServer:
    """The gateway's HTTP server on a pre-bound socket, in a daemon thread with its own loop.

    ``app`` is the request handler (``GatewayProxy``): ``handle(request, writer)``, optionally
    ``admit(path, headers, peer)`` (see ``http_server.Admit``), and ``aclose()`` called once
    serving has stopped. The keyword arguments are the HTTP server's limits, their defaults
    those of ``GatewaySettings``.
    """

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        max_body: int = 32 * MiB,
        max_bodies_bytes: int = 128 * MiB,
        max_connections: int = 512,
        max_connections_per_client: int = 128,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
    ) -> None:
        self.app = app
        self.sock = sock
        self.max_body = max_body
        self.max_bodies_bytes = max_bodies_bytes
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.host, self.port = sock.getsockname()[:2]
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._server: HTTPServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def stats(self) -> ServerStats:
        """A snapshot of the HTTP server's counters (zeros before it starts); any thread may ask."""
        server = self._server
        return ServerStats() if server is None else dataclasses.replace(server.stats)

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
        raise_open_files_limit(self.max_connections)
        self._thread = threading.Thread(target=self._run, name="ai-gateway", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the AI gateway did not start within {timeout:.0f} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = _new_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            server = HTTPServer(
                self.app.handle,
                admit=getattr(self.app, "admit", None),
                max_body=self.max_body,
                max_bodies_bytes=self.max_bodies_bytes,
                max_connections=self.max_connections,
                max_connections_per_client=self.max_connections_per_client,
                header_timeout=self.header_timeout,
                body_timeout=self.body_timeout,
            )
            self._server = server
            await server.start(self.sock)
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await server.close(grace=5.0)
                closer = getattr(self.app, "aclose", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await closer()

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to start() or logged
            self._error = exc
            self._started.set()
            log.exception("the AI gateway stopped")
        finally:
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let running responses finish briefly, and join the thread."""
        loop, event = self.loop, self._stop
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
