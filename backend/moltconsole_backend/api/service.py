"""The backend service: the API served on a unix socket only its owner can open.

One process per user (a lock file enforces it). ``moltconsole serve`` runs it in the
foreground; tests use ``BackendService`` in-process, on the same socket and the same API.

The API (Starlette, version 1, JSON in and out) is assembled here from one module of routes
per domain. Each sandbox has an app of its own: sandbox_routes (status, operations),
event_routes (events, stats), log_routes, device_routes, exec_routes and memory_routes, reached as
``/v1/sandboxes/NAME/...`` through by_sandbox.py (and at the first, unprefixed paths for the
default sandbox). The backend's own routes are fleet_routes (health, the list of sandboxes),
key_routes and cost_routes. Every message is a schema of ``moltconsole_shared.wire``; every
refusal is its error body (answers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from moltconsole_backend.api.by_sandbox import SandboxRouter
from moltconsole_backend.api.cost_routes import cost_routes
from moltconsole_backend.api.device_routes import device_routes
from moltconsole_backend.api.event_routes import event_routes
from moltconsole_backend.api.exec_routes import exec_routes
from moltconsole_backend.api.fleet_routes import fleet_routes
from moltconsole_backend.api.key_routes import key_routes
from moltconsole_backend.api.log_routes import log_routes
from moltconsole_backend.api.memory_routes import memory_routes, memory_status
from moltconsole_backend.api.sandbox_routes import sandbox_routes
from moltconsole_backend.fleet import Sandbox, SandboxFleet
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.logs.collector import LogCollector
from moltconsole_backend.memory.service import MemoryService
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import Settings

log = logging.getLogger(__name__)
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, NUL included


def sandbox_app(
    sandbox: Sandbox, gateway: GatewayService | None, memory: MemoryService | None = None,
) -> Starlette:
    """One sandbox's own routes, at the paths by_sandbox.py hands requests to."""
    manager = sandbox.manager
    return Starlette(routes=[
        *sandbox_routes(manager, sandbox.logs, gateway, sandbox.name,
                        memory=lambda: memory_status(sandbox.memory, memory)),
        *memory_routes(sandbox, memory),
        *event_routes(manager),
        *log_routes(sandbox.logs),
        *device_routes(manager),
        *exec_routes(manager),
    ])


def fleet_app(fleet: SandboxFleet, gateway: GatewayService | None = None) -> ASGIApp:
    """The whole API over ``fleet``'s sandboxes and the gateway (if any)."""
    routes: list[BaseRoute] = [*fleet_routes(fleet, gateway), *key_routes(gateway)]
    if gateway is not None:
        routes += cost_routes(
            gateway.ledger, gateway.budgets, warn_percent=gateway.settings.gateway.budget_warn_percent
        )
    return SandboxRouter(
        fleet, Starlette(routes=routes), lambda sandbox: sandbox_app(sandbox, gateway, fleet.memory)
    )


def create_app(
    manager: SandboxManager, logs: LogCollector | None = None, gateway: GatewayService | None = None
) -> ASGIApp:
    """The API over one sandbox manager (its log collector and gateway, if any), as the default
    sandbox of a fleet of one (for tests that bring their own manager)."""
    fleet = SandboxFleet.of_one(manager, logs)
    return fleet_app(fleet, gateway)


class BackendAlreadyRunning(Exception):
    """Another backend holds the lock for this runtime directory (``pid``: its process, if known)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class BackendStartError(Exception):
    """The service could not start; the message says why and what to do."""


def prepare_runtime_dir(path: Path) -> None:
    """Create the runtime directory owner-only, and refuse one that others could tamper with.

    A symlink is refused even when it points to a directory of ours: whoever can replace the
    link decides where the socket and the lock end up.
    """
    hint = "Remove it or set paths.runtime_dir (MOLTCONSOLE_PATHS__RUNTIME_DIR) to a directory of your own."
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        pass  # a dangling symlink or a file: lstat below says which
    except OSError as exc:
        raise BackendStartError(
            f"cannot create the runtime directory {path}: {exc.strerror}. {hint}"
        ) from None
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise BackendStartError(
            f"the runtime directory {path} is a symbolic link, which moltconsole refuses for "
            f"its socket and lock. {hint}"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise BackendStartError(f"the runtime directory {path} exists but is not a directory. {hint}")
    if info.st_uid != os.getuid():
        raise BackendStartError(f"{path} belongs to uid {info.st_uid}, not to you. {hint}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def bind_owner_only(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` with mode 0600 from the moment it exists."""
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise BackendStartError(
            f"socket path {path} is longer than {SOCKET_PATH_MAX} bytes; set paths.runtime_dir "
            "to a shorter directory."
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: it re-raises SIGTERM after serving, which
    would kill the process before the socket is removed. ``serve_forever`` handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class BackendService:
    """The running backend: the sandboxes (each a manager and a log collector), the AI gateway
    and the API server. ``manager`` replaces the default sandbox's manager (tests)."""

    def __init__(self, settings: Settings, manager: SandboxManager | None = None) -> None:
        self.settings = settings
        self.gateway = GatewayService(settings)
        # The gateway hands out each agent's token, so a new container's token works at once.
        self.memory = MemoryService(settings, self.gateway.env)
        self.fleet = SandboxFleet(settings, self.gateway, default_manager=manager, memory=self.memory)
        self._gateway_started = False
        self._fleet_opened = False
        self.socket_path = settings.socket_path
        self._lock_file: IO[str] | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def _acquire_lock(self) -> None:
        lock_path = self.settings.paths.runtime_dir / "backend.lock"
        fh = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise BackendAlreadyRunning(
                f"a moltconsole backend is already running (pid {pid}) on {self.socket_path}",
                int(pid) if pid.isdigit() else None,
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_file = fh

    async def start(self) -> None:
        """Take the lock, bind the socket, open the manager and start serving."""
        prepare_runtime_dir(self.settings.paths.runtime_dir)
        self._acquire_lock()
        try:
            sock = bind_owner_only(self.socket_path)
            # The gateway first: a sandbox the manager brings back must find its model route.
            await self.gateway.start()
            self._gateway_started = True
            self._fleet_opened = True
            await self.memory.open()
            await self.fleet.open()
            config = uvicorn.Config(
                fleet_app(self.fleet, self.gateway),
                log_level="warning",
                access_log=False,
                lifespan="off",
                ws="websockets-sansio",
                ws_ping_interval=None,
                timeout_graceful_shutdown=2,
            )
            self._server = _Server(config)
            self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise BackendStartError("the API server stopped during startup")
                await asyncio.sleep(0.01)
        except BaseException:
            await self._release()
            raise

    @property
    def manager(self) -> SandboxManager:
        """The default sandbox's manager."""
        return self.fleet.default.manager

    @property
    def logs(self) -> LogCollector:
        """The default sandbox's log collector."""
        logs = self.fleet.default.logs
        assert logs is not None
        return logs

    async def wait(self) -> None:
        """Serve until the server is told to exit (SIGINT/SIGTERM in the foreground)."""
        if self._task is not None:
            await self._task

    def request_stop(self) -> None:
        """Ask the server to finish (from a signal handler)."""
        if self._server is not None:
            self._server.should_exit = True

    async def stop(self) -> None:
        """Stop serving; the sandbox container keeps running."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self._release()

    async def _release(self) -> None:
        if self._fleet_opened:
            self._fleet_opened = False
            await self.fleet.close()
        if self._gateway_started:
            self._gateway_started = False
            await self.gateway.stop()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def __aenter__(self) -> BackendService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_forever(settings: Settings) -> None:
    """The foreground backend, as run by ``moltconsole serve``."""
    service = BackendService(settings)
    await service.start()
    log.info("moltconsole backend listening on %s", settings.socket_path)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, service.request_stop)
    try:
        await service.wait()
    finally:
        await service.stop()
    log.info("moltconsole backend stopped; the sandbox container keeps running")
