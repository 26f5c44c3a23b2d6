"""The console's first screen, against a real backend process (no container needed)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole.app import MoltConsole
from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.settings import load_settings

FIXED_ROOT = Path("/tmp/mc-snapshot")  # fixed, so paths on screen are the same every run
T0 = 1_800_000_000.0  # the console's frozen clock
MEMORY_REACHED = "memory: the sandbox reached 1,850 of 2,048 MiB (90%, cache not counted)"
MEMORY_WARNING = (
    f"{MEMORY_REACHED} and is killed at the limit. Raise sandbox.memory_limit, then destroy and start it."
)
# What the sandbox lived through before this console opened, ending where the backend finds it
# (no container), so the backend records nothing of its own and the snapshots stay the same.
SEEDED_HISTORY = [
    (T0 - 26 * 3600, "state", "info", "", "ready"),  # yesterday: shown with its date
    (T0 - 1800, "memory", "warning", MEMORY_REACHED, None),
    (T0 - 1750, "state", "error", "the gateway exited with code 137; restarting in 1.0s.", "crashed"),
    (T0 - 1748, "state", "info", "waiting for the gateway's /readyz", "starting"),
    (T0 - 1740, "state", "info", "", "ready"),
    (T0 - 120, "state", "info", "", "stopped"),
    (T0 - 60, "state", "info", "", "absent"),
]


def seed_history(data_dir: Path, sandbox: str, events: list[tuple[float, str, str, str, str | None]]) -> None:
    """Write a sandbox's event history as the backend keeps it."""
    from moltconsole_shared.wire.events import SandboxEvent

    path = data_dir / "sandboxes" / sandbox / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(
        json.dumps(SandboxEvent(seq, when, kind, level, message, state).to_json()) + "\n"  # type: ignore[arg-type]
        for seq, (when, kind, level, message, state) in enumerate(events, start=1)
    ))


ALERTS_ROOT = Path("/tmp/mc-snapshot-alerts")
SPENT_NANOS = 5_100_000_000  # $5.10 against a $5.00 daily budget


def _backend_environ(**keys: str) -> dict[str, str]:
    """The test's environment minus provider keys and moltconsole settings, plus ``keys``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MOLTCONSOLE_") and k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    return {**env, **keys}


def _serve_fixed(root: Path, toml: str, env: dict[str, str]) -> Iterator[Path]:
    """Run `moltconsole serve` on a fixed directory until the module's tests are done."""
    config = root / "config.toml"
    config.write_text(toml)
    log_path = root / "backend.log"  # a file, not a pipe: nobody drains a pipe while tests run
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
            stdout=log, stderr=log, env=env,
        )
    try:
        problem = asyncio.run(_wait_until_serving(process, root / "run" / "backend.sock"))
        if problem is not None:
            pytest.fail(f"{problem}; its output:\n{log_path.read_text(errors='replace')}")
        yield config
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def backend_process() -> Iterator[Path]:
    """A real `moltconsole serve` with a fixed sandbox that has no container, and a key."""
    shutil.rmtree(FIXED_ROOT, ignore_errors=True)
    FIXED_ROOT.mkdir()
    seed_history(FIXED_ROOT / "data", "snapshot", SEEDED_HISTORY)
    yield from _serve_fixed(
        FIXED_ROOT,
        '[sandbox]\nname = "snapshot"\ngateway_port = 18799\n'
        f'[paths]\ndata_dir = "{FIXED_ROOT}/data"\nruntime_dir = "{FIXED_ROOT}/run"\n'
        '[gateway]\nport = 18798\nbind_address = "127.0.0.1"\n',
        _backend_environ(ANTHROPIC_API_KEY="sk-ant-snapshot-key-not-real-0000"),
    )


@pytest.fixture(scope="module")
def alerts_backend() -> Iterator[Path]:
    """A backend started without any provider key whose $5.00 daily budget is spent."""
    from moltconsole_backend.gateway.ledger import Ledger
    from moltconsole_shared.wire.records import Cost, RequestRecord, Usage

    shutil.rmtree(ALERTS_ROOT, ignore_errors=True)
    (ALERTS_ROOT / "data").mkdir(parents=True)
    with Ledger(ALERTS_ROOT / "data" / "ledger.sqlite") as ledger:
        ledger.record(RequestRecord(
            id="spent", started_at=time.time(), sandbox="alerts", api="anthropic-messages",
            provider="anthropic", model="claude-sonnet-4-6", requested_model="claude-sonnet-4-6",
            stream=True, status=200, outcome="ok", usage=Usage(input_tokens=1, source="provider"),
            cost=Cost(total_nanos=SPENT_NANOS, pricing_version="test"),
        ))
        ledger.flush()
    seed_history(ALERTS_ROOT / "data", "alerts", [(T0 - 60, "state", "info", "", "absent")])
    yield from _serve_fixed(
        ALERTS_ROOT,
        '[sandbox]\nname = "alerts"\ngateway_port = 18797\n'
        f'[paths]\ndata_dir = "{ALERTS_ROOT}/data"\nruntime_dir = "{ALERTS_ROOT}/run"\n'
        '[gateway]\nport = 18796\nbind_address = "127.0.0.1"\nbudget = { daily_usd = 5.0 }\n',
        _backend_environ(),
    )


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
    """The first status and the sandbox's history are on screen."""
    from moltconsole.screens.dashboard import DashboardScreen

    await pilot.app.status_seen.wait()
    dashboard = pilot.app.screen
    if isinstance(dashboard, DashboardScreen):
        await asyncio.wait_for(dashboard.history_seen.wait(), 10)
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


async def test_rotate_token_asks_first_and_says_what_restarts(backend_process: Path) -> None:
    app = make_app(backend_process)
    calls = record_actions(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        await pilot.press("T")
        await pilot.pause()
        question = str(app.screen.query_one("#confirm-question").render())
        assert "refused at once" in question and "re-created" in question
        await pilot.press("n")
        await pilot.pause()
        assert calls == []
        await pilot.press("T", "y")
        assert await calls.next_call() == "rotate-token"


async def test_palette_offers_every_action_of_the_screen(backend_process: Path) -> None:
    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {"Start", "Stop", "Restart", "Rebuild", "Destroy", "Rotate token", "Shell", "Approve",
                "Reject", "Dashboard", "Logs", "Help"} <= titles


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


async def test_unknown_keymap_id_is_reported_not_fatal(backend_process: Path) -> None:
    app = make_app(backend_process, '[console]\nkeymap = { "sandbox.strat" = "S", "logs.pause" = "space" }\n')
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        messages = [n.message for n in app._notifications]
        assert any("unknown binding id 'sandbox.strat' in console.keymap; did you mean 'sandbox.start'"
                   in m for m in messages)
        assert not any("logs.pause" in m for m in messages)  # a real id is applied quietly


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
        assert "sandbox snapshot absent" in str(app.screen.query_one(StatusBar).render())
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


# --- the AI gateway's alerts: missing keys, budget ---------------------------------------------
async def wait_for_gateway(pilot: Any) -> None:
    from moltconsole.screens.dashboard import DashboardScreen

    await wait_for_status(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DashboardScreen)
    await asyncio.wait_for(screen.gateway_seen.wait(), 10)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_dashboard_alerts_snapshot(alerts_backend: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(alerts_backend), terminal_size=size, run_before=wait_for_gateway)


async def test_missing_key_and_spent_budget_are_shown_and_a_key_set_clears_its_line(
    alerts_backend: Path,
) -> None:
    from textual.widgets import Static

    from moltconsole.screens.dashboard import DashboardScreen
    from moltconsole_backend.gateway.keys import remove_key, set_key

    app = make_app(alerts_backend)
    keys_file = ALERTS_ROOT / "data" / "keys.env"
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_gateway(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        keys = screen.query_one("#dash-keys", Static)
        budget = screen.query_one("#dash-budget", Static)
        assert keys.display and str(keys.render()) == (
            "anthropic has no key: moltconsole keys set ANTHROPIC_API_KEY"
        )
        assert budget.display and budget.has_class("-error")
        assert str(budget.render()) == (
            "daily budget spent ($5.10 of $5.00): blocked; raise gateway.budget.daily_usd"
        )
        try:
            set_key(keys_file, "ANTHROPIC_API_KEY", "sk-ant-set-while-the-console-is-open-1")
            screen.gateway_seen.clear()
            screen.fetch_gateway()  # what the 5-second timer does
            await asyncio.wait_for(screen.gateway_seen.wait(), 10)
            await pilot.pause()
            assert not keys.display  # the same backend has it now: no restart
            assert budget.display
        finally:
            remove_key(keys_file, "ANTHROPIC_API_KEY")


async def test_a_budget_past_its_warning_is_yellow_and_a_new_backend_pid_is_announced(
    backend_process: Path,
) -> None:
    from textual.widgets import Static

    from moltconsole.screens.dashboard import DashboardScreen, GatewayArrived

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_gateway(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        budget = screen.query_one("#dash-budget", Static)
        keys = screen.query_one("#dash-keys", Static)
        assert not budget.display and not keys.display  # a key and no budget: nothing to say
        health = await app.client.health()
        warned = {
            **health,
            "pid": health["pid"] + 1,  # as another backend would answer
            "gateway": {
                **health["gateway"],
                "missing_keys": [{"provider": "anthropic", "variable": "ANTHROPIC_API_KEY",
                                  "command": "moltconsole keys set ANTHROPIC_API_KEY",
                                  "message": "provider anthropic has no key"}],
                "budget": {"level": "warning", "action": "allow",
                           "message": "daily overall budget 85% spent ($4.25 of $5.00)"},
            },
        }
        screen.post_message(GatewayArrived(warned))
        await pilot.pause()
        assert budget.display and budget.has_class("-warning") and not budget.has_class("-error")
        assert str(budget.render()) == "budget warning: daily overall budget 85% spent ($4.25 of $5.00)"
        assert keys.display
        messages = [n.message for n in app._notifications]
        assert any(f"now pid {health['pid'] + 1}" in m and "moltconsole keys set ANTHROPIC_API_KEY" in m
                   for m in messages)


# --- memory: the working set, the page cache apart, the warning ----------------------------------
MIB = 2**20


async def show_memory_near_the_limit(pilot: Any) -> None:
    """A running sandbox near its memory limit, as the backend's status and samples say it."""
    from moltconsole.app import StatusChanged
    from moltconsole.screens.dashboard import DashboardScreen, StatsArrived

    await wait_for_status(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DashboardScreen)
    running = {**(pilot.app.status or {}), "state": "ready", "started_at": T0 - 3600,
               "container_id": "c" * 64, "memory_warning": MEMORY_WARNING, "desired": "running"}
    pilot.app.post_message(StatusChanged(running, True))  # as the event stream delivers it
    await pilot.pause()
    for used in (1500, 1620, 1700, 1790, 1850):
        screen.post_message(StatsArrived({"cpu_percent": 3.5, "memory_bytes": used * MIB,
                                          "memory_limit": 2048 * MIB, "cache_bytes": 118 * MIB}))
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_dashboard_memory_snapshot(backend_process: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(backend_process), terminal_size=size, run_before=show_memory_near_the_limit)


async def test_memory_shows_the_working_set_with_the_cache_apart_and_the_warning(
    backend_process: Path,
) -> None:
    from textual.widgets import Static

    from moltconsole.screens.dashboard import DashboardScreen

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await show_memory_near_the_limit(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert str(screen.query_one("#dash-mem-label", Static).render()) == "memory 1,850 MiB / 2,048 MiB"
        cache = screen.query_one("#dash-cache-label", Static)
        assert cache.display and str(cache.render()) == "cache 118 MiB (reclaimable)"
        alert = screen.query_one("#dash-memory-alert", Static)
        assert alert.display and str(alert.render()) == MEMORY_WARNING
        assert screen.has_class("-alerts")
        # Back under the threshold: the backend clears the warning, the alert goes.
        screen.apply_status({**(app.status or {}), "state": "ready", "memory_warning": None}, True)
        await pilot.pause()
        assert not alert.display and not screen.has_class("-alerts")
        screen.apply_status({**(app.status or {}), "state": "stopped"}, True)
        await pilot.pause()
        assert not cache.display  # no samples of a stopped sandbox


# --- the history, followed while another screen is shown --------------------------------------
@contextlib.asynccontextmanager
async def stub_backend() -> AsyncIterator[tuple[Path, Any, Any]]:
    """The real API app and manager on a unix socket, with a stand-in engine (no container)."""
    from moltconsole_backend.api.service import create_app
    from moltconsole_backend.sandbox.manager import SandboxManager
    from moltconsole_backend.settings import load_settings as load_backend_settings
    from tests.unit.test_client import serve_asgi
    from tests.unit.test_manager_events import StubEngine

    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    config = root / "config.toml"
    config.write_text(
        '[sandbox]\nname = "unit"\ngateway_port = 9\nrestart_backoff_initial = 0.05\n'
        f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n[gateway]\nenabled = false\n'
    )
    settings = load_backend_settings(config, env={"XDG_CONFIG_HOME": "/nonexistent"})
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    settings.paths.runtime_dir.mkdir(parents=True)
    try:
        async with serve_asgi(create_app(manager), settings.socket_path):
            yield config, manager, engine
    finally:
        await manager.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_the_events_panel_keeps_up_while_another_screen_is_shown() -> None:
    from textual.widgets import RichLog

    from moltconsole.screens.dashboard import DashboardScreen
    from tests.unit.test_manager_events import kill_container

    async with stub_backend() as (config, manager, engine):
        manager.notice("recorded before the console opened", "info")
        app = make_app(config)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for_status(pilot)
            dashboard = app.screen
            assert isinstance(dashboard, DashboardScreen)
            panel = dashboard.query_one("#dash-events", RichLog)
            await pilot.press("2")
            await pilot.pause()
            assert not isinstance(app.screen, DashboardScreen)
            kill_container(engine, 137)  # the gateway dies while the Logs screen is shown

            def shown() -> str:  # the panel's text, lines wrapped at its width joined again
                return "".join(line.text for line in panel.lines)

            # The crash, then the restart (the status the app got before that event).
            while "starting: waiting for the gateway's /readyz" not in shown():
                dashboard.event_seen.clear()
                await asyncio.wait_for(dashboard.event_seen.wait(), 10)
            await pilot.pause()
            await pilot.press("1")
            await pilot.pause()
            assert app.screen is dashboard
            text = shown()
            assert text.index("recorded before the console opened") < text.index("crashed: the gateway")
            assert text.count("crashed: the gateway exited with code 137") == 1
            # The facts caught up too, not only the events.
            status = dashboard._status or {}
            assert (status.get("state"), status.get("restarts"), status.get("last_exit_code")) == (
                "starting", 1, 137,
            )


async def test_live_events_are_kept_as_far_back_as_the_panel_shows(backend_process: Path) -> None:
    from moltconsole.screens.dashboard import EVENTS_SHOWN, DashboardScreen, EventArrived
    from moltconsole_shared.wire.events import SandboxEvent

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        for seq in range(1000, 1000 + EVENTS_SHOWN + 5):
            screen.post_message(EventArrived(SandboxEvent(seq, T0, "notice", "info", f"notice {seq}")))
        await pilot.pause()
        assert sorted(screen._recorded) == list(range(1005, 1000 + EVENTS_SHOWN + 5))


async def test_events_wrap_again_when_the_terminal_is_resized(backend_process: Path) -> None:
    from textual.widgets import RichLog

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        panel = app.screen.query_one("#dash-events", RichLog)
        line = "07:30:52 starting: waiting for the gateway's /readyz"
        assert line not in [strip.text.rstrip() for strip in panel.lines]  # wrapped at 80 columns
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        await pilot.pause()  # the redraw runs after the refresh that gives the panel its width
        assert line in [strip.text.rstrip() for strip in panel.lines]


def test_a_status_or_a_lost_link_without_a_screen_is_kept_not_fatal(tmp_path: Path) -> None:
    """While the app shuts down (or before its first screen) the screen stack is empty."""
    from moltconsole.app import BackendNotice, LinkChanged, StatusChanged
    from moltconsole.streams import StreamState

    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\nruntime_dir = "{tmp_path}/run"\ndata_dir = "{tmp_path}/d"\n'
                      "[gateway]\nenabled = false\n")
    app = make_app(config)
    assert app.screen_stack == []
    app._status_changed(StatusChanged({"state": "ready"}, True))
    app._backend_notice(BackendNotice({"type": "progress", "step": "1/2", "message": "building"}))
    app._link_changed(LinkChanged(StreamState("the event stream", "reconnecting")))
    assert app.status == {"state": "ready"} and app.connected is False


# --- issue 10: every panel reads cleanly at 80x24 and 160x48 -----------------------------------
LONG_STATE_DIR = "/home/someone-with-a-long-name/.local/share/moltconsole/sandboxes/personal-agent/state"
PS_TITLES = ["PID", "PPID", "UID", "%CPU", "RSS", "ELAPSED", "COMMAND"]
PS_ROWS = [
    ["1", "0", "1000", "0.0", "1024", "01:00:00", "/usr/bin/tini -- /opt/openclaw/entrypoint.sh gateway"],
    ["7", "1", "1000", "2.5", "812340", "59:58",
     "node /opt/openclaw/node_modules/openclaw/dist/cli.js gateway --port 18789 --bind lan --verbose"],
    ["212", "7", "1000", "41.0", "402112", "00:12",
     "/usr/lib/chromium/chromium --headless=new --no-sandbox --user-data-dir=/data/state/browser"],
]
EMOJI_EVENT = "⚠️ the agent wrote: 🦞 done ✅ (3 files)"


async def show_a_busy_sandbox(pilot: Any) -> None:
    """A running sandbox with long commands, a long state directory, a pairing request and an
    event with emoji, as the backend's messages deliver them."""
    from moltconsole.app import StatusChanged
    from moltconsole.screens.dashboard import (
        DashboardScreen,
        DevicesArrived,
        EventArrived,
        ProcessesArrived,
    )
    from moltconsole_shared.wire.events import SandboxEvent

    await wait_for_status(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DashboardScreen)
    running = {**(pilot.app.status or {}), "state": "ready", "started_at": T0 - 3600, "restarts": 2,
               "last_exit_code": 137, "container_id": "c" * 64, "desired": "running",
               "state_dir": LONG_STATE_DIR}
    pilot.app.post_message(StatusChanged(running, True))
    await pilot.pause()
    screen.post_message(ProcessesArrived({"titles": PS_TITLES, "processes": PS_ROWS}))
    screen.post_message(DevicesArrived({"pending": [{
        "requestId": "0f3c9a7e-1111-2222", "displayName": "Someone's phone 📱 with a long name",
        "role": "operator", "remoteIp": "192.168.100.200",
    }]}))
    screen.post_message(EventArrived(SandboxEvent(900, T0 - 5, "notice", "warning", EMOJI_EVENT)))
    await pilot.pause()
    pilot.app.clear_notifications()  # the pairing toast: the panels under it are the subject
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_dashboard_busy_snapshot(backend_process: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(backend_process), terminal_size=size, run_before=show_a_busy_sandbox)


def test_emoji_take_the_cells_rich_counts_in_a_terminal_that_adds_up_code_points() -> None:
    from rich.cells import cell_len

    from moltconsole.widgets.cells import terminal_safe

    for text in (EMOJI_EVENT, "❤️ family 👨‍👩‍👧 thumbs 👍🏽 keycap 1️⃣"):
        shown = terminal_safe(text)
        # What a terminal such as tmux draws: the sum of each code point's width.
        assert cell_len(shown) == sum(cell_len(ch) for ch in shown)
    assert terminal_safe(EMOJI_EVENT) == "⚠ the agent wrote: 🦞 done ✅ (3 files)"


def test_paths_are_shortened_from_the_left_and_commands_get_what_the_other_columns_leave() -> None:
    from moltconsole.screens.dashboard import process_columns
    from moltconsole.widgets.cells import shorten_path

    assert shorten_path(LONG_STATE_DIR, 32) == "…/sandboxes/personal-agent/state"
    assert shorten_path(LONG_STATE_DIR, 200) == LONG_STATE_DIR
    assert shorten_path("/a/" + "x" * 40, 10) == "…" + "x" * 9
    narrow = process_columns(PS_TITLES, PS_ROWS, 46)
    assert [c.label for c in narrow] == ["PID", "%CPU", "RSS MiB", "COMMAND"]
    assert narrow[-1].width == 46 - sum(c.width + 2 for c in narrow[:-1]) - 2
    assert [c.cell(PS_ROWS[1]).plain for c in narrow[:3]] == ["7", "2.5", "793"]
    wide = process_columns(PS_TITLES, PS_ROWS, 94)
    assert [c.label for c in wide] == ["PID", "PPID", "UID", "%CPU", "RSS MiB", "ELAPSED", "COMMAND"]


# --- a new user's review at 80x24: toasts, a long reason, idle sparklines, plurals, events -----
LONG_REASON = (
    "the container was removed outside moltconsole; the state directory "
    "/tmp/mc-snapshot/data/sandboxes/snapshot/state is kept. Start the sandbox to create it again."
)
MISSING_ANTHROPIC = [{"provider": "anthropic", "variable": "ANTHROPIC_API_KEY",
                      "command": "moltconsole keys set ANTHROPIC_API_KEY",
                      "message": "provider anthropic has no key"}]


def shown_lines(widget: Any) -> list[str]:
    """What ``widget`` draws, border included, line by line."""
    from textual.geometry import Region

    return [strip.text for strip in widget.render_lines(Region(0, 0, *widget.outer_size))]


async def test_a_long_reason_leaves_every_fact_and_the_border_in_view(backend_process: Path) -> None:
    from moltconsole.app import StatusChanged
    from moltconsole.screens.dashboard import SandboxPanel

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        app.post_message(StatusChanged({**(app.status or {}), "reason": LONG_REASON, "restarts": 1}, True))
        await pilot.pause()
        panel = app.screen.query_one(SandboxPanel)
        top = app.screen.query_one("#dash-top")
        assert panel.outer_size.height <= top.size.height  # not cut by the room the top has
        lines = shown_lines(panel)
        assert lines[-1].startswith("╰") and any("state dir" in line for line in lines)
        reason = [line for line in lines if line.rstrip(" │").endswith("…") and "state dir" not in line]
        assert len(reason) == 1  # two lines of it, the second ending in "…"
        assert any("1 restart " in line or line.rstrip(" │").endswith("1 restart") for line in lines)


def test_counts_take_a_plural_only_when_not_one() -> None:
    from moltconsole.screens.dashboard import clip_lines, counted

    assert (counted(0, "restart"), counted(1, "restart"), counted(2, "pairing request")) == (
        "0 restarts", "1 restart", "2 pairing requests")
    assert clip_lines("a b c", 10, 2).plain == "a b c"
    assert clip_lines("aaaa bbbb cccc dddd eeee", 9, 2).plain == "aaaa bbbb\ncccc ddd…"


def test_event_lines_break_after_a_slash_of_a_path_not_inside_a_name() -> None:
    from moltconsole.screens.dashboard import wrap_at_slashes

    wrapped = wrap_at_slashes("kept: /tmp/mc-snapshot/data/sandboxes/snapshot/state", 24)
    assert wrapped.split("\n") == ["kept: /tmp/mc-snapshot/", "data/sandboxes/snapshot/", "state"]
    assert wrap_at_slashes("x" * 25, 10).split("\n") == ["x" * 10, "x" * 10, "x" * 5]


async def test_the_events_panel_has_a_cell_of_padding_on_its_left(backend_process: Path) -> None:
    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        panel = app.screen.query_one("#dash-events")
        stamped = [line for line in shown_lines(panel) if ":" in line[:12] and line.startswith("│")]
        assert stamped and all(line.startswith("│ ") and line[2].isdigit() for line in stamped)


async def test_one_sample_or_an_idle_series_draws_low_not_pegged(backend_process: Path) -> None:
    from rich.console import Console

    from moltconsole.app import StatusChanged
    from moltconsole.screens.dashboard import DashboardScreen, StatsArrived

    def drawn(widget: Any) -> list[str]:
        console = Console(width=widget.size.width, record=True, file=io.StringIO())
        console.print(widget.render())
        return console.export_text().splitlines()

    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        app.post_message(StatusChanged({**(app.status or {}), "state": "ready", "started_at": T0,
                                        "container_id": "c" * 64}, True))
        await pilot.pause()
        screen.post_message(StatsArrived({"cpu_percent": 0.0, "memory_bytes": 100 * MIB,
                                          "memory_limit": 2048 * MIB}))
        await pilot.pause()
        cpu, memory = screen.query_one("#dash-cpu"), screen.query_one("#dash-mem")
        for widget in (cpu, memory):
            top, bottom = drawn(widget)
            assert top.strip() == "" and set(bottom.strip()) == {"▁"}  # idle, and 5% of the limit
        for _ in range(3):  # flat at half a core: half the height, on every column
            screen.post_message(StatsArrived({"cpu_percent": 50.0, "memory_bytes": 100 * MIB,
                                              "memory_limit": 2048 * MIB}))
        await pilot.pause()
        top, bottom = drawn(cpu)
        assert top.strip() == "" and "█" in bottom


async def test_a_missing_key_is_told_once_and_briefly_and_a_question_is_never_under_toasts(
    backend_process: Path,
) -> None:
    from moltconsole.app import KEYS_TOAST
    from moltconsole.screens.confirm import ConfirmScreen
    from moltconsole.screens.dashboard import DashboardScreen, GatewayArrived

    launcher_said = "started a new backend (pid 4242) from this shell's environment; it has no key"
    settings = load_settings(backend_process, env={k: v for k, v in os.environ.items()
                                                   if not k.startswith("MOLTCONSOLE_")})
    app = MoltConsole(settings, clock=lambda: T0, notices=[launcher_said])
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for_gateway(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        health = await app.client.health()
        replaced = {**health, "pid": health["pid"] + 1,
                    "gateway": {**health["gateway"], "missing_keys": MISSING_ANTHROPIC}}
        screen.post_message(GatewayArrived(replaced))
        await pilot.pause()
        assert screen.query_one("#dash-keys").display  # the banner says it
        toasts = list(app._notifications)
        # Once, and short: the banner has the rest.
        assert [n.message for n in toasts if "key" in n.message] == [KEYS_TOAST]
        assert all(n.timeout <= 12 for n in toasts)
        assert screen.query("Toast")  # shown, until the question comes
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert list(app._notifications) == []
        assert not screen.query("Toast")  # the dashboard behind the dialog shows none either
