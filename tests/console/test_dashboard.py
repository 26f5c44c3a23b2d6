"""The console's first screen, against a real backend process (no container needed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole.app import MoltConsole
from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.settings import load_settings

FIXED_ROOT = Path("/tmp/mc-snapshot")  # fixed, so paths on screen are the same every run


@pytest.fixture(scope="module")
def backend_process() -> Iterator[Path]:
    """A real `moltconsole serve` with a fixed sandbox that has no container."""
    shutil.rmtree(FIXED_ROOT, ignore_errors=True)
    FIXED_ROOT.mkdir()
    config = FIXED_ROOT / "config.toml"
    config.write_text(
        '[sandbox]\nname = "snapshot"\ngateway_port = 18799\n'
        f'[paths]\ndata_dir = "{FIXED_ROOT}/data"\nruntime_dir = "{FIXED_ROOT}/run"\n'
        '[gateway]\nport = 18798\nbind_address = "127.0.0.1"\n'
    )
    log_path = FIXED_ROOT / "backend.log"  # a file, not a pipe: nobody drains a pipe while tests run
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
            stdout=log, stderr=log,
        )
    try:
        problem = asyncio.run(_wait_until_serving(process, FIXED_ROOT / "run" / "backend.sock"))
        if problem is not None:
            pytest.fail(f"{problem}; its output:\n{log_path.read_text(errors='replace')}")
        yield config
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(FIXED_ROOT, ignore_errors=True)


async def _wait_until_serving(process: subprocess.Popen[bytes], socket_path: Path) -> str | None:
    """None once the API answers /v1/health (the socket file exists before it serves), else why not."""
    deadline = time.monotonic() + 60
    async with BackendClient(socket_path, timeout=5) as client:
        while True:
            if process.poll() is not None:
                return f"the backend exited at startup (code {process.returncode})"
            try:
                await client.health()
                return None
            except BackendUnreachable:
                if time.monotonic() > deadline:
                    return "the backend did not answer /v1/health within 60s"
                # Another process: there is no event to await across it, so retry briefly.
                await asyncio.sleep(0.05)


def make_app(config: Path, extra_toml: str = "") -> MoltConsole:
    if extra_toml:
        custom = config.with_name("custom.toml")
        custom.write_text(config.read_text() + extra_toml)
        config = custom
    settings = load_settings(config, env={k: v for k, v in os.environ.items()
                                          if not k.startswith("MOLTCONSOLE_")})
    return MoltConsole(settings, clock=lambda: 1_800_000_000.0)


class ActionRecorder(list[str]):
    """Stands in for the client's lifecycle call (the backend is real for the rest)."""

    def __init__(self, app: MoltConsole) -> None:
        super().__init__()
        self.called = asyncio.Event()
        self.app = app
        app.client.action = self.action  # type: ignore[method-assign]

    async def action(self, name: str, **_: Any) -> dict[str, Any]:
        self.append(name)
        self.called.set()
        return self.app.status or {}

    async def next_call(self) -> str:
        await asyncio.wait_for(self.called.wait(), timeout=10)
        self.called.clear()
        return self[-1]


def record_actions(app: MoltConsole) -> ActionRecorder:
    """Record lifecycle actions instead of sending them."""
    return ActionRecorder(app)


async def wait_for_status(pilot: Any) -> None:
    await pilot.app.status_seen.wait()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_dashboard_snapshot(backend_process: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(backend_process), terminal_size=size, run_before=wait_for_status)


async def test_dashboard_shows_absent_sandbox_and_lifecycle_keys(backend_process: Path) -> None:
    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        assert app.status is not None and app.status["state"] == "absent"
        bindings = {active.binding.id for active in app.screen.active_bindings.values()}
        assert {"sandbox.start", "sandbox.stop", "sandbox.restart", "app.quit"} <= bindings


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_help_snapshot(backend_process: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_help(pilot: Any) -> None:
        await wait_for_status(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(backend_process), terminal_size=size, run_before=open_help)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_destroy_confirmation_snapshot(
    backend_process: Path, snap_compare: Any, size: tuple[int, int]
) -> None:
    async def ask(pilot: Any) -> None:
        await wait_for_status(pilot)
        await pilot.press("D")
        await pilot.pause()

    assert snap_compare(make_app(backend_process), terminal_size=size, run_before=ask)


async def test_destroy_needs_a_yes_and_says_what_is_kept(backend_process: Path) -> None:
    app = make_app(backend_process)
    calls = record_actions(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        await pilot.press("D")
        await pilot.pause()
        question = str(app.screen.query_one("#confirm-question").render())
        assert "Kept" in question and str(FIXED_ROOT / "data") in question
        await pilot.press("n")
        await pilot.pause()
        assert calls == []
        await pilot.press("D", "y")
        assert await calls.next_call() == "destroy"
        assert calls == ["destroy"]


async def test_palette_offers_every_action_of_the_screen(backend_process: Path) -> None:
    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {"Start", "Stop", "Restart", "Rebuild", "Destroy", "Shell", "Approve", "Reject",
                "Dashboard", "Logs", "Help"} <= titles


async def test_keys_can_be_remapped_by_binding_id(backend_process: Path) -> None:
    app = make_app(backend_process, '[console]\nkeymap = { "sandbox.start" = "S" }\n')
    calls = record_actions(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert calls == []
        await pilot.press("S")
        assert await calls.next_call() == "start"
        assert calls == ["start"]


async def test_unknown_theme_is_reported_not_fatal(backend_process: Path) -> None:
    app = make_app(backend_process, '[console]\ntheme = "no-such-theme"\n')
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        messages = [n.message for n in app._notifications]
        assert any("unknown theme 'no-such-theme'" in m for m in messages)


async def test_lost_backend_shows_a_banner(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\nruntime_dir = "{tmp_path}/run"\ndata_dir = "{tmp_path}/d"\n'
                      "[gateway]\nenabled = false\n")
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        from moltconsole.widgets.status_bar import StatusBar

        bar = app.screen.query_one(StatusBar)
        await app.connection_lost.wait()
        await pilot.pause()
        assert "disconnected, reconnecting" in str(bar.render())


async def test_number_keys_switch_screens_and_the_header_follows(backend_process: Path) -> None:
    from moltconsole.screens.dashboard import DashboardScreen
    from moltconsole.screens.logs import LogsScreen
    from moltconsole.widgets.status_bar import StatusBar

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen)
        assert "sandbox absent" in str(app.screen.query_one(StatusBar).render())
        await pilot.press("1")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


async def test_resources_say_stopped_and_drop_late_samples_when_the_sandbox_stops(
    backend_process: Path,
) -> None:
    from textual.widgets import DataTable, Static

    from moltconsole.screens.dashboard import DashboardScreen, ProcessesArrived, StatsArrived

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        cpu = screen.query_one("#dash-cpu-label", Static)
        processes = screen.query_one("#dash-processes", DataTable)
        assert "no samples yet" in str(cpu.render())
        running = {**(app.status or {}), "state": "ready"}
        screen.apply_status(running, True)
        screen.post_message(StatsArrived({"cpu_percent": 12.5, "memory_bytes": 1 << 20}))
        screen.post_message(ProcessesArrived({"titles": ["PID", "CMD"], "processes": [["7", "openclaw"]]}))
        await pilot.pause()
        assert str(cpu.render()) == "CPU 12.5%" and processes.row_count == 1
        screen.apply_status({**running, "state": "stopped"}, True)
        # A sample and a table already on their way when the sandbox stopped.
        screen.post_message(StatsArrived({"cpu_percent": 99.0, "memory_bytes": 1 << 20}))
        screen.post_message(ProcessesArrived({"titles": ["PID", "CMD"], "processes": [["7", "openclaw"]]}))
        await pilot.pause()
        assert str(cpu.render()) == "CPU · stopped"
        assert processes.row_count == 0
