"""Several sandboxes in the console: the picker, the table of all of them, switching, Costs' scope.

Most tests run the whole app against :class:`FakeFleet`, a stand-in for ``BackendClient`` that
answers as a backend with several sandboxes does (the wire's own ``SandboxList`` and
``SandboxStatus``, 404 for a sandbox it does not know), records which sandbox each call
addressed, and can lose a sandbox (removed) or be an older backend without ``/v1/sandboxes``:
sandboxes in every state cannot all be had from Docker on demand. The Costs scope runs against
the real cost API over a seeded ledger; the last test against a real ``moltconsole serve``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog

from moltconsole.app import MoltConsole
from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole.screens.costs import CostsScreen
from moltconsole.screens.dashboard import DashboardScreen, event_stamp
from moltconsole.screens.logs import LogsScreen
from moltconsole.screens.sandbox_picker import SandboxPickerScreen
from moltconsole.settings import load_settings
from moltconsole.widgets.sandbox_table import FLEET_COLUMNS, SandboxTable, fitted_columns
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.wire.events import SandboxEvent
from moltconsole_shared.wire.sandbox import Desired, SandboxState, SandboxStatus
from moltconsole_shared.wire.sandboxes import SandboxList, SandboxSummary
from tests.console.test_costs_screen import CostsApp, rendered_lines, settled
from tests.console.test_costs_screen import _backend as cost_backend
from tests.unit.test_cost_routes import T0 as COSTS_T0
from tests.unit.test_cost_routes import seeded_records

T0 = 1_800_000_000.0  # the console's frozen clock
GUARD = 10.0  # a hang fails the test after this long
MIB = 2**20


def summary(
    name: str, state: SandboxState, *, default: bool = False, up: float | None = None,
    cpu: float | None = None, mib: int | None = None, spend: int | None = None,
    origin: str = "config", port: int = 18789, reason: str = "",
) -> SandboxSummary:
    """One sandbox as ``GET /v1/sandboxes`` lists it; ``up`` seconds ago it started."""
    status = SandboxStatus(
        state=state, reason=reason, desired=Desired.RUNNING if up else Desired.STOPPED,
        openclaw_version="2026.9.6", started_at=None if up is None else T0 - up,
        container_id="c" * 64 if up else None, gateway_url=f"http://127.0.0.1:{port}",
        state_dir=f"/srv/moltconsole/sandboxes/{name}/state",
    )
    return SandboxSummary(
        name=name, default=default, origin=origin, openclaw_version="2026.9.6",  # type: ignore[arg-type]
        gateway_port=port, memory_limit="3g", status=status, cpu_percent=cpu,
        memory_bytes=None if mib is None else mib * MIB, spend_today_nanos=spend,
    )


FLEET = [
    summary("main", SandboxState.STOPPED, default=True, spend=1_250_000_000),
    summary("research-assistant", SandboxState.READY, up=3 * 3600 + 720, cpu=12.5, mib=812,
            spend=4_310_000_000, port=18790),
    summary("night-shift", SandboxState.CRASH_LOOP, up=None, spend=0, port=18791,
            reason="the gateway exited 5 times in 10 minutes; not restarting"),
    summary("scratch", SandboxState.CONFIG_INVALID, origin="created", port=18792),
    summary("build-bot", SandboxState.STARTING, up=14, cpu=88.0, mib=402, port=18793),
]


class NoMemory:
    """The memory of a fake backend that has no memory routes (the Dashboard leaves its line out)."""

    async def status(self) -> Any:
        raise BackendError("this fake has no memory", "backend", 404)


class FakeFleet:
    """Answers the console's calls as a backend with ``sandboxes`` does (see the module doc).

    ``calls`` holds (what, the sandbox the client addressed, details) for each call;
    ``old_backend`` makes ``/v1/sandboxes`` answer 404 as a backend from before several
    sandboxes does.
    """

    def __init__(self, sandboxes: list[SandboxSummary], *, old_backend: bool = False) -> None:
        self.members = list(sandboxes)
        self.default = next(s.name for s in sandboxes if s.default)
        self.sandbox: str | None = None
        self.old_backend = old_backend
        self.calls: list[tuple[str, str | None, Any]] = []
        self.answered: dict[str, asyncio.Event] = {}  # set when a call of that kind has answered
        self.socket_path = Path("/nonexistent/backend.sock")
        self._removed: dict[str, asyncio.Event] = {}

    def _named(self, name: str | None) -> SandboxSummary:
        name = name or self.default
        for sandbox in self.members:
            if sandbox.name == name:
                return sandbox
        known = ", ".join(s.name for s in self.members)
        raise BackendError(f"no sandbox is called {name!r}; the backend has: {known}", "not_found", 404)

    def addressed(self, what: str) -> list[str | None]:
        """The sandboxes the calls named ``what`` addressed, in order."""
        return [sandbox for kind, sandbox, _ in self.calls if kind == what]

    def remove(self, name: str) -> None:
        """The sandbox is removed: it leaves the list and its open streams end."""
        self.members = [s for s in self.members if s.name != name]
        self._removed.setdefault(name, asyncio.Event()).set()

    async def sandboxes(self) -> SandboxList:
        self.calls.append(("sandboxes", None, None))
        if self.old_backend:
            raise BackendError("the backend answered GET /v1/sandboxes with HTTP 404: Not Found",
                               "backend", 404)
        return SandboxList(list(self.members), self.default)

    async def health(self) -> dict[str, Any]:
        return {"backend": "moltconsole", "pid": 4242, "gateway": None}

    async def _open(self, name: str | None) -> None:
        """Until the sandbox is removed (the stream stays open as a live one does)."""
        await self._removed.setdefault(name or self.default, asyncio.Event()).wait()

    async def events(self, *, history: int | None = None) -> AsyncIterator[dict[str, Any]]:
        addressed = self.sandbox
        self.calls.append(("history" if history is not None else "events", addressed, history))
        found = self._named(addressed)
        if history is None:
            yield {"type": "status", "status": found.status.to_json()}
        else:
            event = SandboxEvent(1, T0 - 60, "state", "info", f"{found.name} is {found.status.state}",
                                 str(found.status.state))
            yield {"type": "history", "events": [event.to_json()]}
        await self._open(addressed)

    async def stats(self) -> AsyncIterator[dict[str, Any]]:
        addressed = self.sandbox
        self.calls.append(("stats", addressed, None))
        self._named(addressed)
        self._answered("stats")
        await self._open(addressed)
        return
        yield {}  # an async generator that sends no sample

    def _answered(self, what: str) -> None:
        self.answered.setdefault(what, asyncio.Event()).set()

    async def processes(self) -> dict[str, Any]:
        self.calls.append(("processes", self.sandbox, None))
        self._named(self.sandbox)
        self._answered("processes")
        return {"titles": ["PID", "%CPU", "RSS", "COMMAND"], "processes": [["1", "0.0", "1024", "tini"]]}

    async def devices(self) -> dict[str, Any]:
        self.calls.append(("devices", self.sandbox, None))
        self._named(self.sandbox)
        self._answered("devices")
        return {"pending": [], "paired": []}

    async def logs(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        addressed = self.sandbox
        self.calls.append(("logs", addressed, kwargs))
        self._named(addressed)
        yield {"type": "caught_up"}
        await self._open(addressed)

    async def _costs(self, what: str, sandbox: str | None) -> Any:
        self.calls.append((what, self.sandbox, sandbox))
        raise BackendError("this fake has no ledger", "backend", 503)

    async def costs_summary(self, *, sandbox: str | None = None, **_: Any) -> Any:
        return await self._costs("costs_summary", sandbox)

    async def costs_series(self, *, sandbox: str | None = None, **_: Any) -> Any:
        return await self._costs("costs_series", sandbox)

    async def costs_models(self, *, sandbox: str | None = None, **_: Any) -> Any:
        return await self._costs("costs_models", sandbox)

    async def costs_requests(self, kind: str = "recent", *, sandbox: str | None = None, **_: Any) -> Any:
        return await self._costs("costs_requests", sandbox)

    async def costs_request(self, request_id: str) -> Any:
        raise BackendError("this fake has no ledger", "backend", 503)

    async def costs_tail(self, *, sandbox: str | None = None) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(("costs_tail", self.sandbox, sandbox))
        yield {"type": "ready"}
        await self._open(self.sandbox)

    async def action(self, name: str, **_: Any) -> dict[str, Any]:
        self.calls.append((name, self.sandbox, None))
        return self._named(self.sandbox).status.to_json()

    @property
    def memory(self) -> NoMemory:
        return NoMemory()

    async def aclose(self) -> None:
        return None


def make_app(fleet: FakeFleet, tmp: Path | None = None) -> MoltConsole:
    """The console on ``fleet``, with its clock frozen at T0."""
    root = tmp or Path("/tmp/mc-sandboxes-unused")
    config = root / "config.toml"
    if tmp is not None:
        config.write_text(f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n')
    settings = load_settings(config if tmp is not None else None,
                             env={k: v for k, v in os.environ.items() if not k.startswith("MOLTCONSOLE_")})
    return MoltConsole(settings, clock=lambda: T0, client=fleet)  # type: ignore[arg-type]


async def shown(pilot: Pilot[Any]) -> DashboardScreen:
    """The sandbox's status and history are on the Dashboard."""
    app: Any = pilot.app
    await asyncio.wait_for(app.status_seen.wait(), GUARD)
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    await asyncio.wait_for(screen.history_seen.wait(), GUARD)
    await pilot.pause()
    return screen


async def picker(pilot: Pilot[Any]) -> SandboxPickerScreen:
    """Press o and wait until the picker shows the backend's answer."""
    await pilot.press("o")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, SandboxPickerScreen)
    await asyncio.wait_for(screen.listed.wait(), GUARD)
    await pilot.pause()
    return screen


async def fleet_table(pilot: Pilot[Any]) -> DashboardScreen:
    """Press A and wait until the table holds the backend's list."""
    screen = await shown(pilot)
    screen.fleet_seen.clear()
    await pilot.press("A")
    await asyncio.wait_for(screen.fleet_seen.wait(), GUARD)
    await pilot.pause()
    return screen


def bar(app: MoltConsole) -> str:
    return str(app.screen.query_one(StatusBar).render())


# --- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_picker_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        await picker(pilot)

    assert snap_compare(make_app(FakeFleet(FLEET)), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_all_sandboxes_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(FakeFleet(FLEET)), terminal_size=size, run_before=fleet_table)


def test_old_backend_picker_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        await picker(pilot)

    app = make_app(FakeFleet(FLEET, old_backend=True))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


# --- behaviour ------------------------------------------------------------------------------------
async def test_the_header_names_the_default_sandbox() -> None:
    app = make_app(FakeFleet(FLEET))
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        assert "sandbox main stopped" in bar(app)


async def test_picking_a_sandbox_switches_every_screen_to_it() -> None:
    fleet = FakeFleet(FLEET)
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        await shown(pilot)
        await pilot.press("2")  # Logs and Costs made for the default first
        await pilot.pause()
        old_logs = app.screen
        await pilot.press("3")
        await pilot.pause()
        assert isinstance(app.screen, CostsScreen) and app.screen.scope == "main"
        screen = await picker(pilot)
        table = screen.query_one(SandboxTable)
        assert table.selected() == "main"  # the cursor starts on the one shown
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.client.sandbox == "research-assistant"
        board = await shown(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert "sandbox research-assistant ready" in bar(app)
        assert fleet.addressed("events")[-1] == "research-assistant"
        assert fleet.addressed("history")[-1] == "research-assistant"
        assert "research-assistant is ready" in "\n".join(
            line.text for line in board.query_one("#dash-events", RichLog).lines)
        await pilot.press("2")
        await pilot.pause()
        logs = app.screen
        assert isinstance(logs, LogsScreen) and logs is not old_logs
        await asyncio.wait_for(logs.caught_up.wait(), GUARD)
        assert fleet.addressed("logs")[-1] == "research-assistant"
        await pilot.press("3")
        await pilot.pause()
        costs = app.screen
        assert isinstance(costs, CostsScreen)
        assert costs.sandbox == "research-assistant" and costs.scope == "research-assistant"
        await asyncio.wait_for(costs.tail_ready.wait(), GUARD)
        tails = [details for kind, _, details in fleet.calls if kind == "costs_tail"]
        assert tails[-1] == "research-assistant"
        assert "spend · sandbox research-assistant" in str(costs.query_one("#costs-summary").border_title)


async def test_a_running_sandbox_shown_has_its_processes_and_stats_asked() -> None:
    fleet = FakeFleet(FLEET)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        app.select_sandbox("build-bot")
        await shown(pilot)
        for what in ("processes", "stats", "devices"):
            await asyncio.wait_for(fleet.answered.setdefault(what, asyncio.Event()).wait(), GUARD)
        assert fleet.addressed("processes") == ["build-bot"]
        assert fleet.addressed("stats") == ["build-bot"]
        assert fleet.addressed("devices") == ["build-bot"]
        await pilot.pause()
        processes = app.screen.query_one("#dash-processes", DataTable)
        assert processes.row_count == 1
        app.select_sandbox("main")  # stopped: no processes of its own, none of build-bot's left
        await shown(pilot)
        assert processes.row_count == 0 and not processes.columns


async def test_enter_in_the_table_of_all_sandboxes_opens_that_one() -> None:
    fleet = FakeFleet(FLEET)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        devices = (await shown(pilot)).query_one("#dash-devices", DataTable)
        pairing = [str(c.label) for c in devices.columns.values()]
        board = await fleet_table(pilot)
        assert board.has_class("-fleet")
        table = board.query_one(SandboxTable)
        assert table.has_focus and table.selected() == "main"
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert app.client.sandbox == "night-shift"
        await shown(pilot)
        assert not board.has_class("-fleet")  # its own dashboard again
        assert "sandbox night-shift crash-loop" in bar(app)
        # The panels were hidden under the table: fitted again at their size, not at none.
        assert [str(c.label) for c in devices.columns.values()] == pairing == ["request", "device", "from"]


async def test_the_panels_are_fitted_again_when_the_table_goes() -> None:
    from moltconsole.screens.dashboard import DevicesArrived, HistoryArrived

    app = make_app(FakeFleet(FLEET))
    async with app.run_test(size=(80, 24)) as pilot:
        board = await fleet_table(pilot)
        # What arrives while the panels are hidden is laid out for no width.
        board.post_message(DevicesArrived({"pending": [], "paired": []}))
        waiting = SandboxEvent(2, T0 - 30, "state", "info", "waiting for the gateway's answer", "starting")
        board.post_message(HistoryArrived([waiting]))
        await pilot.pause()
        await pilot.press("A")
        await pilot.pause()
        devices = board.query_one("#dash-devices", DataTable)
        assert [str(c.label) for c in devices.columns.values()] == ["request", "device", "from"]
        log = board.query_one("#dash-events", RichLog)
        width = log.scrollable_content_region.width
        lines = [line.text.rstrip() for line in log.lines]
        # Wrapped at the panel's width (27 cells here), not at RichLog's least (20).
        assert width == 27
        assert lines[-2:] == [f"{event_stamp(T0 - 30, T0)} starting: waiting", "for the gateway's answer"]


async def test_the_table_refreshes_while_shown_and_marks_the_one_shown() -> None:
    fleet = FakeFleet(FLEET)
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        board = await fleet_table(pilot)
        table = board.query_one(SandboxTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert [str(r[1]) for r in rows] == [s.name for s in FLEET]
        assert [str(r[0]) for r in rows] == ["*", " ", " ", " ", " "]
        fleet.members = [*FLEET, summary("late", SandboxState.ABSENT, port=18794)]
        board.fleet_seen.clear()
        board._poll_fleet()  # what the 2 s timer calls
        await asyncio.wait_for(board.fleet_seen.wait(), GUARD)
        await pilot.pause()
        assert table.row_count == len(FLEET) + 1


async def test_choosing_the_default_again_goes_back_to_its_first_paths() -> None:
    fleet = FakeFleet(FLEET)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        app.select_sandbox("night-shift")
        await shown(pilot)
        await picker(pilot)
        await pilot.press("enter")  # the cursor is on night-shift, the one shown: nothing changes
        await pilot.pause()
        assert app.client.sandbox == "night-shift"
        assert any("already showing sandbox 'night-shift'" in n.message for n in app._notifications)
        await picker(pilot)
        await pilot.press("up", "up", "enter")
        await pilot.pause()
        assert app.client.sandbox is None  # the default, at the paths every backend has
        await shown(pilot)
        assert "sandbox main stopped" in bar(app)


async def test_the_picker_opens_without_toasts_over_it() -> None:
    app = make_app(FakeFleet(FLEET))
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        app.notify("a toast that would stay drawn behind the list")
        await pilot.pause()
        await picker(pilot)
        assert not app._notifications


async def test_one_sandbox_only_the_picker_says_so() -> None:
    fleet = FakeFleet(FLEET[:1])
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        screen = await picker(pilot)
        note = str(screen.query_one("#picker-note").render())
        assert "one sandbox, main" in note and "moltconsole create NAME" in note
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and app.client.sandbox is None


async def test_a_removed_sandbox_is_said_and_the_default_shown() -> None:
    fleet = FakeFleet(FLEET)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        app.select_sandbox("scratch")
        await shown(pilot)
        app.status_seen.clear()
        fleet.remove("scratch")  # its stream ends; reopening it is refused with 404
        await asyncio.wait_for(app.status_seen.wait(), GUARD)
        await shown(pilot)
        assert app.client.sandbox is None
        assert "sandbox main stopped" in bar(app)
        messages = [n.message for n in app._notifications]
        assert any("sandbox 'scratch' is not on the backend any more" in m and "'main'" in m
                   for m in messages)


async def test_an_older_backend_is_told_to_restart() -> None:
    fleet = FakeFleet(FLEET, old_backend=True)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        assert "sandbox stopped" in bar(app)  # no name: this backend does not say it
        screen = await picker(pilot)
        note = str(screen.query_one("#picker-note").render())
        assert "older than the console" in note and "kill 4242" in note and "Restart it" in note
        assert not screen.query_one(SandboxTable).display
        await pilot.press("escape")
        board = await fleet_table(pilot)
        problem = str(board.query_one("#dash-fleet-problem").render())
        assert "older than the console" in problem


async def test_an_unreachable_backend_is_said_in_the_picker() -> None:
    class Gone(FakeFleet):
        async def sandboxes(self) -> SandboxList:
            raise BackendUnreachable("no moltconsole backend answers on /run/backend.sock (refused). "
                                     "Start one with 'moltconsole serve' (or just run 'moltconsole').")

    app = make_app(Gone(FLEET))
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        screen = await picker(pilot)
        note = str(screen.query_one("#picker-note").render())
        assert note.startswith("cannot list the sandboxes: no moltconsole backend answers")


def test_the_table_keeps_whole_cells_and_drops_optional_columns_first() -> None:
    at_80 = fitted_columns(FLEET_COLUMNS, FLEET, T0, 76)
    at_160 = fitted_columns(FLEET_COLUMNS, FLEET, T0, 156)
    assert [c.title for c, _ in at_80[1]] == ["state", "uptime", "CPU", "memory", "spend today"]
    assert at_80[0] >= 8
    assert [c.title for c, _ in at_160[1]] == [c.title for c in FLEET_COLUMNS]
    assert at_160[0] == len("research-assistant")
    for _, columns in (at_80, at_160):
        for column, width in columns:
            assert all(column.text(s, T0).cell_len <= width for s in FLEET)


# --- Costs: this sandbox or all of them -----------------------------------------------------------
class RecordingCosts(BackendClient):
    """The real client, noting the ``sandbox`` each cost call and tail asked for."""

    def __init__(self, socket: Path) -> None:
        super().__init__(socket)
        self.scopes: list[tuple[str, str | None]] = []

    async def _costs(self, path: str, params: dict[str, Any]) -> Any:
        self.scopes.append((path, params.get("sandbox")))
        return await super()._costs(path, params)

    async def costs_tail(self, *, sandbox: str | None = None) -> AsyncGenerator[dict[str, Any]]:
        self.scopes.append(("tail", sandbox))
        async for message in super().costs_tail(sandbox=sandbox):
            yield message


class ScopedCostsApp(App[None]):
    """The Costs screen of the sandbox ``main``, over the recording client."""

    CSS_PATH = CostsApp.CSS_PATH

    def __init__(self, socket: Path) -> None:
        super().__init__()
        self.client = RecordingCosts(socket)

    def on_mount(self) -> None:
        self.push_screen(CostsScreen(self.client, clock=lambda: COSTS_T0, sandbox="main"))

    async def on_unmount(self) -> None:
        await self.client.aclose()


@pytest.fixture
def two_sandboxes_ledger() -> Iterator[Any]:
    """The seeded month (tagged ``main``) plus requests of a sandbox ``other``."""
    from tests.unit.test_cost_routes import chat, request

    other = [request(f"other-{i}", COSTS_T0 - 600 - i, "claude-sonnet-4-6", chat(1000, 200), sandbox="other")
             for i in range(3)]
    yield from cost_backend([*seeded_records(), *other])


async def test_costs_show_this_sandbox_and_a_toggles_all(two_sandboxes_ledger: Any) -> None:
    app = ScopedCostsApp(two_sandboxes_ledger.socket)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await settled(pilot)
        client = app.client
        assert isinstance(client, RecordingCosts)
        assert {scope for _, scope in client.scopes} == {"main"}
        this = screen.snapshot
        assert this is not None and this.sandbox == "main"
        assert str(screen.query_one("#costs-summary").border_title) == "spend · sandbox main"
        client.scopes.clear()
        screen.loaded.clear()
        await pilot.press("a")
        screen = await settled(pilot)
        assert {scope for _, scope in client.scopes} == {None}
        assert ("tail", None) in client.scopes
        every = screen.snapshot
        assert every is not None and every.sandbox is None
        assert str(screen.query_one("#costs-summary").border_title) == "spend · all sandboxes"
        assert every.summary.requests > this.summary.requests  # the other sandbox's count too
        client.scopes.clear()
        await pilot.press("a")
        await settled(pilot)
        assert {scope for _, scope in client.scopes} == {"main"}


async def test_costs_without_a_sandbox_name_show_all_and_say_why_a_does_nothing(
    two_sandboxes_ledger: Any,
) -> None:
    app = CostsApp(two_sandboxes_ledger.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert screen.scope is None
        assert any("did not say which sandbox this is" in n.message for n in app._notifications)


@pytest.fixture
def empty_ledger() -> Iterator[Any]:
    yield from cost_backend([])


async def test_an_empty_ledger_for_this_sandbox_says_whose_and_how_to_see_all(empty_ledger: Any) -> None:
    def said(screen: CostsScreen) -> str:
        return " ".join(" ".join(rendered_lines(screen.query_one("#costs-empty-text"))).split())

    app = ScopedCostsApp(empty_ledger.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        assert "No LLM requests from sandbox main in the ledger yet (a shows all sandboxes)." in said(screen)
        await pilot.press("a")
        screen = await settled(pilot)
        assert "No LLM requests in the ledger yet." in said(screen)


# --- against the real backend ---------------------------------------------------------------------
REAL_ROOT = Path("/tmp/mc-sandboxes-real")


@pytest.fixture(scope="module")
def fleet_backend() -> Iterator[Path]:
    """A real `moltconsole serve` with two sandboxes from the config, neither with a container."""
    from tests.console.test_dashboard import _backend_environ, _serve_fixed

    shutil.rmtree(REAL_ROOT, ignore_errors=True)
    REAL_ROOT.mkdir()
    yield from _serve_fixed(
        REAL_ROOT,
        '[sandbox]\nname = "alpha"\ngateway_port = 18779\n'
        '[sandboxes.beta]\ngateway_port = 18778\n'
        f'[paths]\ndata_dir = "{REAL_ROOT}/data"\nruntime_dir = "{REAL_ROOT}/run"\n'
        '[gateway]\nport = 18777\nbind_address = "127.0.0.1"\n',
        _backend_environ(ANTHROPIC_API_KEY="sk-ant-sandboxes-key-not-real-0000"),
    )


async def test_switching_and_a_removed_sandbox_against_the_real_backend(fleet_backend: Path) -> None:
    settings = load_settings(fleet_backend, env={k: v for k, v in os.environ.items()
                                                 if not k.startswith("MOLTCONSOLE_")})
    app = MoltConsole(settings, clock=lambda: T0)
    async with app.run_test(size=(80, 24)) as pilot:
        await shown(pilot)
        assert "sandbox alpha absent" in bar(app)
        await picker(pilot)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.client.sandbox == "beta"
        await shown(pilot)
        assert "sandbox beta absent" in bar(app)
        async with BackendClient(settings.socket_path) as other:
            await other.create_sandbox("gamma", start=False)
            app.select_sandbox("gamma")
            await shown(pilot)
            assert "sandbox gamma" in bar(app)
            app.status_seen.clear()
            await other.remove_sandbox("gamma")
            await asyncio.wait_for(app.status_seen.wait(), 30)
        await shown(pilot)
        assert app.client.sandbox is None and "sandbox alpha absent" in bar(app)
        assert any("sandbox 'gamma' is not on the backend any more" in n.message for n in app._notifications)

