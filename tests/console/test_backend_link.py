"""The console when its backend goes away: it says so, starts a new one, and every stream comes back.

The backend here is the real API and sandbox manager on a unix socket, with a stand-in engine
(no container): stopping its server is the backend going away, and the console's starter
serves it again on the same socket, as a new ``moltconsole serve`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from moltconsole.app import MoltConsole
from moltconsole.client import BackendUnreachable
from moltconsole.launcher import BackendLaunch
from moltconsole.settings import load_settings
from moltconsole.widgets.status_bar import StatusBar

NEW_PID = 4242


class StubBackend:
    """The real API over a manager with a stand-in engine; stopped and served again at will."""

    def __init__(self, manager: Any, engine: Any, socket_path: Path) -> None:
        self.manager = manager
        self.engine = engine
        self.socket_path = socket_path
        self._serving: contextlib.AsyncExitStack | None = None
        self.starts = 0

    async def serve(self) -> None:
        """Serve the API (again) on the socket."""
        from moltconsole_backend.api.service import create_app
        from tests.unit.test_client import serve_asgi

        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # what the last server left, as a killed backend leaves it
        self._serving = contextlib.AsyncExitStack()
        await self._serving.enter_async_context(serve_asgi(create_app(self.manager), self.socket_path))
        self.starts += 1

    async def stop(self) -> None:
        """Stop serving: the connections close and the socket answers no more."""
        assert self._serving is not None
        serving, self._serving = self._serving, None
        await serving.aclose()

    async def start_as_launcher(self) -> BackendLaunch:
        """What the console's starter does: a new backend, answering on the same socket."""
        await self.serve()
        return BackendLaunch("started", {"pid": NEW_PID, "gateway": None})


@contextlib.asynccontextmanager
async def stub_backend() -> AsyncIterator[tuple[Path, StubBackend]]:
    """A config for the console and a served stub backend for it."""
    from moltconsole_backend.sandbox.manager import SandboxManager
    from moltconsole_backend.settings import load_settings as load_backend_settings
    from tests.unit.test_manager_events import StubEngine

    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    config = root / "config.toml"
    config.write_text(
        '[sandbox]\nname = "link"\ngateway_port = 9\n'
        f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n[gateway]\nenabled = false\n'
    )
    settings = load_backend_settings(config, env={"XDG_CONFIG_HOME": "/nonexistent"})
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    settings.paths.runtime_dir.mkdir(parents=True)
    backend = StubBackend(manager, engine, settings.socket_path)
    await backend.serve()
    try:
        yield config, backend
    finally:
        if backend._serving is not None:
            await backend.stop()
        engine.close()
        await manager.close()
        shutil.rmtree(root, ignore_errors=True)


def console(config: Path, starter: Callable[[], Any] | None) -> MoltConsole:
    settings = load_settings(config, env={k: v for k, v in os.environ.items()
                                          if not k.startswith("MOLTCONSOLE_")})
    return MoltConsole(settings, clock=lambda: 1_800_000_000.0, backend_starter=starter)


async def until(pilot: Pilot[Any], what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the app run until ``check()`` holds; fail after ``timeout`` seconds saying ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def bar_text(app: MoltConsole) -> str:
    return str(app.screen.query_one(StatusBar).render())


def notices(app: MoltConsole) -> list[str]:
    return [n.message for n in app._notifications]


async def test_a_backend_that_goes_away_is_started_again_and_the_console_says_so() -> None:
    async with stub_backend() as (config, backend):
        gate = asyncio.Event()

        async def starter() -> BackendLaunch:
            await gate.wait()  # held, so the test sees what the console says meanwhile
            return await backend.start_as_launcher()

        app = console(config, starter)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.status_seen.wait()
            await until(pilot, "connected", lambda: "backend: connected" in bar_text(app))
            await backend.stop()
            await until(pilot, "the start of a new backend", lambda: app.restart == "starting")
            await pilot.pause()
            # The whole of it in 80 columns, the end (what the console does) included.
            assert bar_text(app).endswith("backend gone; starting a new one… ")
            assert len(bar_text(app)) <= 80
            gate.set()
            await asyncio.wait_for(app.restart_settled.wait(), 15)
            await until(pilot, "connected again", lambda: "backend: connected" in bar_text(app))
            assert app.restart is None and backend.starts == 2
            assert f"the backend had stopped; started a new backend (pid {NEW_PID})." in notices(app)
            bindings = {a.binding.id for a in app.screen.active_bindings.values()}
            assert "app.start_backend" not in bindings  # nothing to retry


async def test_a_failed_start_says_why_and_the_key_tries_again() -> None:
    async with stub_backend() as (config, backend):
        calls: list[int] = []

        async def starter() -> BackendLaunch:
            calls.append(len(calls))
            if len(calls) == 1:
                raise BackendUnreachable(
                    "the backend exited at startup (code 1); see /srv/backend.log for why.")
            return await backend.start_as_launcher()

        app = console(config, starter)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.status_seen.wait()
            await backend.stop()
            await asyncio.wait_for(app.restart_settled.wait(), 15)
            await pilot.pause()
            assert app.restart == "failed"
            assert "gone, and a new one did not start; ctrl+r tries again" in bar_text(app)
            assert ("the backend is gone and a new one did not start: the backend exited at startup "
                    "(code 1); see /srv/backend.log for why. Press ctrl+r to try again.") in notices(app)
            # It is not started again behind the user's back, however often the console retries.
            reconnects = app.link.attempts
            await until(pilot, "more reconnection attempts", lambda: app.link.attempts > reconnects + 1)
            assert calls == [0]
            bindings = {a.binding.id for a in app.screen.active_bindings.values()}
            assert "app.start_backend" in bindings
            app.restart_settled.clear()
            await pilot.press("ctrl+r")
            await asyncio.wait_for(app.restart_settled.wait(), 15)
            await until(pilot, "connected again", lambda: "backend: connected" in bar_text(app))
            assert calls == [0, 1] and app.restart is None


async def test_without_a_starter_the_console_only_reconnects() -> None:
    async with stub_backend() as (config, backend):
        app = console(config, None)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.status_seen.wait()
            await backend.stop()
            await app.connection_lost.wait()
            await pilot.pause()
            assert "backend disconnected, reconnecting since" in bar_text(app)
            assert app.restart is None
            await backend.serve()  # started by hand, e.g. with moltconsole serve
            await until(pilot, "connected again", lambda: "backend: connected" in bar_text(app))


async def test_the_sparklines_follow_again_when_the_backend_comes_back() -> None:
    from moltconsole.screens.dashboard import DashboardScreen
    from tests.unit.test_manager_events import memory_sample

    async with stub_backend() as (config, backend):
        app = console(config, backend.start_as_launcher)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.status_seen.wait()
            dashboard = app.screen
            assert isinstance(dashboard, DashboardScreen)
            assert (app.status or {}).get("state") == "starting"  # the stand-in's container runs
            backend.engine.stats_fed.put(memory_sample(500))
            await until(pilot, "a sample", lambda: dashboard.samples == 1)
            await backend.stop()
            await until(pilot, "the stats stream lost", lambda: "reconnecting" in str(
                dashboard.query_one("#dash-cpu-label").render()))
            await asyncio.wait_for(app.restart_settled.wait(), 15)
            backend.engine.stats_fed.put(memory_sample(600))
            await until(pilot, "a sample from the new backend", lambda: dashboard.samples == 2)
            label = str(dashboard.query_one("#dash-mem-label").render())
            assert label.startswith("memory 600 MiB")
