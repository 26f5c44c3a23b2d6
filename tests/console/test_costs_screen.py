"""The Costs screen against the real cost API over a real, seeded ledger.

The API (the backend's own cost routes over a real SQLite ledger) runs in uvicorn on a unix
socket in a thread, the screen talks to it through the real client. Time is fixed: the ledger's
records are dated relative to T0, the screen's clock says T0, and local time is UTC.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from moltconsole.client import BackendClient
from moltconsole.resources import styles_dir
from moltconsole.screens.costs import CostDetailScreen, CostsFailed, CostsScreen
from moltconsole.widgets.cost_chart import CostChart
from moltconsole.widgets.cost_summary import CostSummary
from moltconsole_backend.gateway.ledger import Ledger
from tests.unit.test_cost_routes import (
    DAY,
    T0,
    chat,
    cost_app,
    local_time_utc,
    open_ledger,
    request,
    seeded_records,
    serve_in_thread,
)

GUARD = 10.0  # a hang fails the test after this long


class Backend:
    """A ledger and the cost API serving it on ``socket``."""

    def __init__(self, ledger: Ledger, socket: Path) -> None:
        self.ledger = ledger
        self.socket = socket


def _backend(records: list[Any], warn_percent: float = 80.0) -> Iterator[Backend]:
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    ledger = open_ledger(root / "ledger.sqlite", records)
    try:
        with local_time_utc(), serve_in_thread(cost_app(ledger, warn_percent), root / "api.sock"):
            yield Backend(ledger, root / "api.sock")
    finally:
        ledger.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Backend]:
    """The seeded month, shared by the tests that only read it."""
    yield from _backend(seeded_records())


@pytest.fixture
def fresh() -> Iterator[Backend]:
    """A ledger of this test's own (it adds records)."""
    yield from _backend(seeded_records())


@pytest.fixture
def empty() -> Iterator[Backend]:
    yield from _backend([])


class CostsApp(App[None]):
    """The smallest app that hosts the Costs screen with the base and Costs stylesheets."""

    CSS_PATH = [str(styles_dir() / "app.tcss"), str(styles_dir() / "costs.tcss")]

    def __init__(self, socket: Path) -> None:
        super().__init__()
        self.client = BackendClient(socket)
        self.copied: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(CostsScreen(self.client, clock=lambda: T0))

    async def on_unmount(self) -> None:
        await self.client.aclose()

    def copy_to_clipboard(self, text: str) -> None:
        self.copied.append(text)


def costs(pilot: Pilot[None]) -> CostsScreen:
    for screen in pilot.app.screen_stack:
        if isinstance(screen, CostsScreen):
            return screen
    raise AssertionError("no Costs screen")


async def settled(pilot: Pilot[None]) -> CostsScreen:
    """Until the tail listens and the data asked for since is on screen."""
    await pilot.pause()
    screen = costs(pilot)
    await asyncio.wait_for(screen.tail_ready.wait(), GUARD)
    await asyncio.wait_for(screen.loaded.wait(), GUARD)
    await pilot.pause()
    return screen


async def open_detail(pilot: Pilot[None], pane: str, request_id: str) -> CostDetailScreen:
    """Select ``request_id`` in ``pane`` and press enter; wait for the full record."""
    screen = await settled(pilot)
    await pilot.press({"top": "x", "errors": "e", "tail": "l"}[pane])
    table = screen.query_one(f"#costs-{pane}", DataTable)
    table.move_cursor(row=table.get_row_index(request_id))
    await pilot.press("enter")
    await pilot.pause()
    detail = pilot.app.screen
    assert isinstance(detail, CostDetailScreen)
    await asyncio.wait_for(detail.loaded.wait(), GUARD)
    await pilot.pause()
    return detail


def text_of(widget: Any) -> str:
    """What a widget shows, as plain text (Rich tables included)."""
    if isinstance(widget, Static) and not isinstance(widget.content, str | Text):
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(widget.content)
        return console.export_text()
    return str(widget.render())


def column(table: DataTable[Any], index: int) -> list[str]:
    return [str(table.get_row_at(row)[index]) for row in range(table.row_count)]


# --- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_costs_snapshot(seeded: Backend, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)

    assert snap_compare(CostsApp(seeded.socket), terminal_size=size, run_before=run_before)


def test_costs_models_panel_snapshot(seeded: Backend, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)
        await pilot.press("m")

    assert snap_compare(CostsApp(seeded.socket), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_costs_detail_snapshot(seeded: Backend, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await open_detail(pilot, "top", "fallback-1")

    assert snap_compare(CostsApp(seeded.socket), terminal_size=size, run_before=run_before)


def test_costs_empty_snapshot(empty: Backend, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)

    assert snap_compare(CostsApp(empty.socket), terminal_size=(80, 24), run_before=run_before)


# --- flows ---------------------------------------------------------------------------------------
async def test_summary_shows_the_ledger_figures(seeded: Backend) -> None:
    async with CostsApp(seeded.socket).run_test(size=(160, 48)) as pilot:
        screen = await settled(pilot)
        expected = seeded.ledger.summary(now=T0, window_seconds=DAY)
        assert screen.snapshot is not None
        assert screen.snapshot.summary.requests == expected.requests
        shown = text_of(screen.query_one(CostSummary))
        assert f"{expected.requests:,} requests" in shown
        assert "2 with no price" in shown
        assert "⚠ idle spend $" in shown and "no user message" in shown
        assert "daily   " in shown and "of $2.00" in shown and "of $40.00" in shown


async def test_window_key_cycles_24h_7d_30d(seeded: Backend) -> None:
    async with CostsApp(seeded.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        chart = screen.query_one("#pane-chart")
        assert screen.window == "24h" and "cost per hour · last 24h" in str(chart.border_title)
        for window, unit, days in (("7d", "6 hours", 7), ("30d", "day", 30), ("24h", "hour", 1)):
            await pilot.press("t")
            await asyncio.wait_for(screen.loaded.wait(), GUARD)
            await pilot.pause()
            assert screen.window == window
            assert screen.snapshot is not None and screen.snapshot.window == window
            assert f"cost per {unit} · last {window}" in str(chart.border_title)
            expected = seeded.ledger.summary(now=T0, window_seconds=days * DAY)
            assert screen.snapshot.summary.requests == expected.requests
            assert f"{expected.requests:,} requests" in text_of(screen.query_one(CostSummary))
            models = seeded.ledger.by_model(T0 - days * DAY, T0)
            assert {m.model for m in screen.snapshot.models} == {m.model for m in models}
        chart_widget = screen.query_one(CostChart)
        assert len(chart_widget.points) == 24


async def test_tab_and_letters_switch_panels_in_a_small_terminal(seeded: Backend) -> None:
    async with CostsApp(seeded.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)

        def shown() -> list[str]:
            return [name for name in ("chart", "models", "top", "errors", "tail")
                    if screen.query_one(f"#pane-{name}").display]

        assert shown() == ["chart"]
        await pilot.press("tab")
        assert shown() == ["models"] and screen.focused is screen.query_one("#costs-models")
        await pilot.press("tab", "tab")
        assert shown() == ["errors"]
        await pilot.press("shift+tab")
        assert shown() == ["top"]
        await pilot.press("l")
        assert shown() == ["tail"]
        await pilot.press("c")
        assert shown() == ["chart"]


async def test_every_panel_shows_in_a_large_terminal(seeded: Backend) -> None:
    async with CostsApp(seeded.socket).run_test(size=(160, 48)) as pilot:
        screen = await settled(pilot)
        assert not screen.query_one("#costs-tabs").display
        for name in ("chart", "models", "top", "errors", "tail"):
            assert screen.query_one(f"#pane-{name}").region.height > 3, name


async def test_tables_hold_the_ledger_rows(seeded: Backend) -> None:
    async with CostsApp(seeded.socket).run_test(size=(160, 48)) as pilot:
        screen = await settled(pilot)
        top = screen.query_one("#costs-top", DataTable)
        assert [str(k.value) for k in top.rows][:1] == ["dream-1"]
        errors = screen.query_one("#costs-errors", DataTable)
        assert column(errors, 2) == ["overloaded_error"]
        models = screen.query_one("#costs-models", DataTable)
        by_model = dict(zip(column(models, 0), column(models, 2), strict=True))
        assert by_model["gpt-5-mini"] == "no price"  # flagged, never $0
        assert by_model["claude-sonnet-4-5"].startswith("$")
        assert "prompt caching saved $" in str(screen.query_one("#pane-models").border_title)
        tail = screen.query_one("#costs-tail", DataTable)
        assert [str(k.value) for k in tail.rows][:3] == ["latest", "beat-7", "mini-1"]


async def test_enter_opens_every_field_and_attempt_and_escape_closes(seeded: Backend) -> None:
    app = CostsApp(seeded.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        detail = await open_detail(pilot, "errors", "err-overload")
        assert [a.attempt for a in detail.record.attempts] == [1, 2, 3]
        fields = text_of(detail.query_one("#costs-detail-fields"))
        assert "overloaded_error" in fields and "Overloaded" in fields
        attempts = text_of(detail.query_one("#costs-detail-attempts"))
        assert attempts.count("HTTP 529") == 3 and "+1,000 ms" in attempts
        await pilot.press("y")
        assert '"id": "err-overload"' in app.copied[-1]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CostsScreen)


async def test_enter_on_the_models_panel_explains_itself(seeded: Backend) -> None:
    app = CostsApp(seeded.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        await pilot.press("m", "enter")
        await pilot.pause()
        assert isinstance(app.screen, CostsScreen)
        assert any("go to top, errors or tail" in n.message for n in app._notifications)


async def test_a_request_recorded_in_the_ledger_appears_in_the_tail_and_the_sums(
    fresh: Backend,
) -> None:
    async with CostsApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        before = screen.snapshot.summary.requests if screen.snapshot else 0
        screen.tail_applied.clear()
        # Agent-made text is inert on screen: the model name carries an escape sequence.
        fresh.ledger.record(request("new-1", T0 - 5, "claude-haiku-4-5\x1b[31m", chat(100, 20)))
        await asyncio.wait_for(screen.tail_applied.wait(), GUARD)
        await pilot.pause()
        tail = screen.query_one("#costs-tail", DataTable)
        assert str(next(iter(tail.rows)).value) == "new-1"
        assert str(tail.get_row_at(0)[1]) == "claude-haiku-4-5␛[31m"
        # One reload follows, and the summary counts the new request.
        await asyncio.wait_for(screen.loaded.wait(), GUARD)
        assert screen.snapshot is not None and screen.snapshot.summary.requests == before + 1


async def test_empty_ledger_says_how_to_route_the_agent_and_fills_on_the_first_request(
    empty: Backend,
) -> None:
    async with CostsApp(empty.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        assert screen.query_one("#costs-empty").display
        assert not screen.query_one("#costs-body").display
        help_text = text_of(screen.query_one("#costs-empty-text"))
        assert "ANTHROPIC_API_KEY" in help_text and "[gateway.cloudflare]" in help_text
        screen.tail_applied.clear()
        empty.ledger.record(request("first", T0 - 1, "claude-haiku-4-5", chat(10, 10)))
        await asyncio.wait_for(screen.tail_applied.wait(), GUARD)
        await asyncio.wait_for(screen.loaded.wait(), GUARD)
        await pilot.pause()
        assert screen.query_one("#costs-body").display
        assert not screen.query_one("#costs-empty").display


async def test_keys_have_ids_and_can_be_remapped(seeded: Backend) -> None:
    app = CostsApp(seeded.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        ids = {active.binding.id for active in screen.active_bindings.values()}
        assert {"costs.window", "costs.next_panel", "costs.detail", "costs.refresh"} <= ids
        app.set_keymap({"costs.window": "w"})
        await pilot.press("t")
        await pilot.pause()
        assert screen.window == "24h"
        await pilot.press("w")
        await asyncio.wait_for(screen.loaded.wait(), GUARD)
        assert screen.window == "7d"


async def test_no_backend_is_reported_on_the_screen(tmp_path: Path) -> None:
    failed = asyncio.Event()

    def watch(message: Any) -> None:
        if isinstance(message, CostsFailed):
            failed.set()

    app = CostsApp(tmp_path / "nobody.sock")
    async with app.run_test(size=(80, 24), message_hook=watch) as pilot:
        await asyncio.wait_for(failed.wait(), GUARD)
        await pilot.pause()
        screen = costs(pilot)
        problem = screen.query_one("#costs-problem")
        assert problem.display and "no moltconsole backend answers" in text_of(problem)
        assert not screen.loaded.is_set()


async def test_number_key_3_opens_costs_in_the_console(seeded: Backend) -> None:
    from moltconsole.app import MoltConsole
    from moltconsole.settings import load_settings

    root = seeded.socket.parent
    config = root / "console.toml"
    config.write_text(f'[paths]\nruntime_dir = "{root}/run"\ndata_dir = "{root}/data"\n')
    settings = load_settings(config, env={k: v for k, v in os.environ.items()
                                          if not k.startswith("MOLTCONSOLE_")})
    app = MoltConsole(settings, clock=lambda: T0, client=BackendClient(seeded.socket))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        assert isinstance(app.screen, CostsScreen)
        screen = await settled(pilot)
        assert screen.snapshot is not None and screen.snapshot.summary.requests > 0
        # The palette offers every action of the screen, and the screens by number.
        titles = {command.title for command in app.get_system_commands(screen)}
        assert {"Window", "Next panel", "Details", "Refresh", "Chart", "Models", "Top requests",
                "Errors", "Live tail", "Dashboard", "Logs", "Costs"} <= titles
        # ? lists them with their ids.
        await pilot.press("question_mark")
        await pilot.pause()
        from moltconsole.screens.help import binding_rows

        assert ("t", "Window", "costs.window") in binding_rows(screen)


# --- pieces ----------------------------------------------------------------------------------------
def test_chart_sums_neighbouring_buckets_when_too_narrow() -> None:
    from moltconsole.widgets.cost_chart import merge_points
    from moltconsole_shared.wire.reports import SeriesPoint

    points = [SeriesPoint(start=float(i), cost_nanos=i, requests=1) for i in range(10)]
    merged = merge_points(points, 4)
    assert [(p.start, p.cost_nanos, p.requests) for p in merged] == [
        (0.0, 3, 3), (3.0, 12, 3), (6.0, 21, 3), (9.0, 9, 1),
    ]
    assert merge_points(points, 10) == points


async def test_the_warn_mark_is_where_the_backend_says() -> None:
    # gateway.budget_warn_percent is the backend's setting: the screen takes it from the API.
    for backend in _backend(seeded_records(), warn_percent=50.0):
        app = CostsApp(backend.socket)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await settled(pilot)
            assert screen.query_one(CostSummary).warn_percent == 50.0


def test_budget_bar_marks_the_warn_level_and_colours_by_share() -> None:
    from moltconsole.widgets.cost_summary import budget_bar

    below = budget_bar(10, 100, 80.0, 10)
    assert below.plain == "█░░░░░░░┊░" and below.spans[0].style == "green"
    warned = budget_bar(90, 100, 80.0, 10)
    assert warned.plain == "█████████░" and warned.spans[0].style == "yellow"
    over = budget_bar(150, 100, 80.0, 10)
    assert over.plain == "█" * 10 and over.spans[0].style == "red"
