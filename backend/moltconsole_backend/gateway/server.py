"""Serving the proxy: its own thread, its own event loop, on the address the sandbox reaches.

The gateway runs apart from the backend's API loop so that a burst of log lines or a slow API
call never adds latency to the agent's model requests, and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import socket
import struct
import threading
from typing import Any

from .http_server import HTTPServer

log = logging.getLogger(__name__)

_SIOCGIFADDR = 0x8915


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


class GatewayServer:
    """The gateway's HTTP server on a pre-bound socket, in a daemon thread with its own loop.

    ``app`` is the request handler (``GatewayProxy``): ``handle(request, writer)``, and
    ``aclose()`` called once serving has stopped.
    """

    def __init__(self, app: Any, sock: socket.socket, *, max_body: int = 32 * 1024 * 1024) -> None:
        self.app = app
        self.sock = sock
        self.max_body = max_body
        self.host, self.port = sock.getsockname()[:2]
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
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
                self.app.handle, max_body=self.max_body, admit=getattr(self.app, "admit", None)
            )
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
