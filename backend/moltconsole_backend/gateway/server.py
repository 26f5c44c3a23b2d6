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

import uvicorn

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


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # the backend owns the process's signals
        yield


class GatewayServer:
    """uvicorn serving one ASGI app on a pre-bound socket, in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.app = app
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=_http_impl(),
            loop="none",
            timeout_keep_alive=75,
            timeout_graceful_shutdown=5,
            server_header=False,
            date_header=False,
        )
        self._server = _Server(config)
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
        server = self._server
        assert server is not None

        async def main() -> None:
            task = asyncio.ensure_future(server.serve(sockets=[self.sock]))
            # uvicorn offers no startup event to wait on.
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            self._started.set()
            await task

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to start() or logged
            self._error = exc
            self._started.set()
            log.exception("the AI gateway stopped")
        finally:
            with contextlib.suppress(Exception):
                closer = getattr(self.app, "aclose", None)
                if closer is not None:
                    loop.run_until_complete(closer())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let running responses finish briefly, and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
