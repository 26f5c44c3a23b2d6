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
from textual.widget import Widget
from textual.widgets import DataTable, Static

from moltconsole.client import BackendClient
from moltconsole.resources import styles_dir
from moltconsole.screens.cost_detail import CostDetailScreen
from moltconsole.screens.cost_feeds import CostsFailed
from moltconsole.screens.costs import CostsScreen
from moltconsole.widgets.cost_chart import CostChart
from moltconsole.widgets.cost_summary import CostSummary
from moltconsole.widgets.cost_table import CostTable
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


def rendered_lines(widget: Any) -> list[str]:
    """The rows a widget draws at its own width (wrapping included), as plain text."""
    return [strip.text for strip in widget.render_lines(widget.content_region.reset_offset)]


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


@pytest.mark.parametrize("key", ["m", "x", "e", "l"])
def test_costs_panel_snapshot(seeded: Backend, snap_compare: Any, key: str) -> None:
    # Models, top requests, errors, live tail: one at a time in a small terminal.
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)
        await pilot.press(key)

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


@pytest.mark.parametrize(("size", "panes"), [
    ((80, 24), ["models", "top", "errors", "tail"]),
    ((160, 48), [""]),  # every panel at once
])
async def test_tables_show_whole_columns_and_say_what_a_wider_terminal_adds(
    fresh: Backend, size: tuple[int, int], panes: list[str],
) -> None:
    # A long error message wraps in its column instead of running off the edge.
    message = "messages.3.content.0: tool_result does not answer any tool_use block; " * 4
    fresh.ledger.record(request("long-error", T0 - 30, "claude-sonnet-4-5", chat(0, 0),
                                outcome="error", status=400, error_kind="invalid_request",
                                error_message=message))
    async with CostsApp(fresh.socket).run_test(size=size) as pilot:
        screen = await settled(pilot)
        for pane in panes:
            if pane:
                await pilot.press({"models": "m", "top": "x", "errors": "e", "tail": "l"}[pane])
                await pilot.pause()
            for table in screen.query(CostTable):
                if not table.region.width:
                    continue  # a panel not on screen
                # Nothing to scroll sideways to: no column runs past the edge.
                assert table.max_scroll_x == 0, table.id
                assert [str(c.label) for c in table.columns.values()] == [
                    c.label for c in table.specs if c.key in table.shown]
                hidden = len(table.specs) - len(table.shown)
                holder = table.parent
                subtitle = str(holder.border_subtitle) if isinstance(holder, Widget) else ""
                assert (f"{hidden} more column" in subtitle) == bool(hidden), table.id
        screen = await settled(pilot)  # a reload the key presses set off has landed
        errors = screen.query_one("#costs-errors", CostTable)
        for _ in range(200):  # under load a later refresh may still be filling the table
            if "long-error" in {key.value for key in errors.rows}:
                break
            await pilot.pause(0.05)
        assert "message" in errors.shown
        wrapped = str(errors.get_row("long-error")[errors.shown.index("message")])
        assert 1 < len(wrapped.splitlines()) <= 3 and wrapped.endswith("…")


async def test_token_words_are_the_same_in_every_table_and_the_detail(seeded: Backend) -> None:
    async with CostsApp(seeded.socket).run_test(size=(160, 48)) as pilot:
        screen = await settled(pilot)
        labels = {table.id: [c.label for c in table.specs] for table in screen.query(CostTable)}
        for words in labels.values():
            assert not {"in", "out", "input"} & set(words)
        assert {"prompt", "cache read", "cache write", "output", "reasoning"} <= set(
            labels["costs-models"])
        assert {"prompt", "output"} <= set(labels["costs-top"]) & set(labels["costs-tail"])
        # "prompt" is every token sent: uncached, cache reads and cache writes.
        sonnet = next(m for m in seeded.ledger.by_model(T0 - DAY, T0)
                      if m.model == "claude-sonnet-4-5")
        models = screen.query_one("#costs-models", CostTable)
        row = models.get_row("anthropic/claude-sonnet-4-5")
        prompt = (sonnet.input_tokens + sonnet.cache_read_tokens + sonnet.cache_write_5m_tokens
                  + sonnet.cache_write_1h_tokens)
        assert str(row[models.shown.index("prompt")]) == f"{prompt:,}"
        assert sonnet.cache_read_tokens and prompt > sonnet.input_tokens
        detail = await open_detail(pilot, "top", "fallback-1")
        fields = text_of(detail.query_one("#costs-detail-fields"))
        usage = detail.record.usage
        assert f"prompt            {usage.prompt_tokens:,}" in fields
        assert f"  uncached        {usage.input_tokens:,}" in fields
        assert f"  cache read      {usage.cache_read_tokens:,}" in fields
        assert "input" not in fields
        attempts = text_of(detail.query_one("#costs-detail-attempts"))
        assert f"prompt {usage.prompt_tokens:,}   output {usage.output_tokens:,}" in attempts


async def test_the_detail_shows_the_exact_cost_where_the_table_rounds(fresh: Backend) -> None:
    # Haiku: $1 per million tokens in, $5 out: 1,045 in and 1,000 out cost $0.006045.
    fresh.ledger.record(request("odd-1", T0 - 20, "claude-haiku-4-5", chat(1_045, 1_000)))
    app = CostsApp(fresh.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        detail = await open_detail(pilot, "tail", "odd-1")
        tail = costs(pilot).query_one("#costs-tail", CostTable)
        assert str(tail.get_row("odd-1")[tail.shown.index("cost")]) == "$0.0060"
        assert "cost              $0.006045" in text_of(detail.query_one("#costs-detail-fields"))
        assert "cost $0.006045" in text_of(detail.query_one("#costs-detail-attempts"))


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
        assert "moltconsole keys set ANTHROPIC_API_KEY" in help_text and "[gateway.cloudflare]" in help_text
        assert "environment" not in help_text and "[gateway] enabled = true" in help_text
        # A step that wraps keeps its text's indent instead of running back under the number.
        steps = [row for row in rendered_lines(screen.query_one("#costs-empty-text")) if row.strip()]
        first = next(i for i, row in enumerate(steps) if row.lstrip().startswith("2."))
        indent = steps[first].index("give")
        assert steps[first + 1][:indent].strip() == "" and steps[first + 1][indent] != " "
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


@pytest.mark.parametrize("width", range(60, 121))  # the summary is 66 wide and up
def test_the_summary_wraps_whole_parts_and_never_cuts_one(width: int) -> None:
    # The figures: four-decimal amounts made "burn $0.0302/h ≈ $0.7254…" run off.
    from moltconsole_shared.wire.reports import Summary

    summary = Summary(
        now=T0, today_nanos=30_200_000, week_nanos=211_000_000, month_nanos=725_400_000,
        month_to_date_nanos=512_300_000, burn_rate_nanos_per_hour=30_225_000, requests=1_234,
        errors=56, unpriced=12, window_seconds=DAY, duration={"p50_ms": 3150.0, "p95_ms": 12_300.0},
        ttfb={"p50_ms": 514.0, "p95_ms": 1240.0}, background_nanos=89_000_000,
        idle_nanos=83_400_000, daily_budget_nanos=2_000_000_000, monthly_budget_nanos=40_000_000_000,
    )
    widget = CostSummary()
    widget.show(summary, "24h", 80.0)
    lines = [line.plain for line in widget.lines(width)]
    assert all(len(line) <= width for line in lines), lines
    assert not any("…" in line for line in lines)
    for part in ("today $0.0302", "7 days $0.2110", "30 days $0.7254", "$0.0302/h in the last hour",
                 "≈ $0.7254/day at this rate", "full in 2d17h at this rate", "$0.5123 of $40.00",
                 "1,234 requests", "56 errors (4.5%)", "12 with no price (not in the sums)",
                 "first byte p50 514 ms  p95 1.24 s", "heartbeat/background $0.0890"):
        assert any(part in line for line in lines), (part, lines)
    if width >= 76:  # the Costs screen at 80 columns, and each half at 160
        assert lines[:2] == [
            "spent   today $0.0302   7 days $0.2110   30 days $0.7254",
            "burn    $0.0302/h in the last hour ≈ $0.7254/day at this rate",
        ]


def test_columns_fit_by_rank_and_the_elastic_one_takes_what_is_left() -> None:
    from moltconsole.widgets.cost_table import Column, fit_columns

    columns = [Column("when", "when", 0), Column("model", "model", 3),
               Column("error", "error", 1), Column("message", "message", 2, lines=3)]
    natural = {"when": 11, "model": 17, "error": 16, "message": 300}
    # Wide: all four, the message gets the rest.
    assert fit_columns(columns, natural, 120, 1) == {
        "when": 11, "error": 16, "message": 120 - 11 - 16 - 17 - 8, "model": 17}
    # Narrow: the model goes first (highest rank), never a column cut in half.
    assert fit_columns(columns, natural, 60, 1) == {"when": 11, "error": 16, "message": 27}
    # Too narrow for anything but the first rank: it still shows.
    assert fit_columns(columns, natural, 5, 1) == {"when": 11}
    # A prefix of the ranks: a later, smaller column does not jump a gap.
    small = [Column("a", "a", 0), Column("b", "b", 1), Column("c", "c", 2)]
    assert fit_columns(small, {"a": 10, "b": 30, "c": 2}, 20, 1) == {"a": 10}


def test_a_wrapped_cell_stops_at_its_lines_with_an_ellipsis() -> None:
    from rich.console import Console

    from moltconsole.widgets.cost_table import wrap_cell

    text = Text("word " * 40)
    wrapped = wrap_cell(Console(), text, 20, 3).plain.splitlines()
    assert len(wrapped) == 3 and all(len(line) <= 20 for line in wrapped)
    assert wrapped[-1].endswith("…")
    assert wrap_cell(Console(), Text("short"), 20, 3).plain == "short"


def test_budget_bar_marks_the_warn_level_and_colours_by_share() -> None:
    from moltconsole.widgets.cost_summary import budget_bar

    below = budget_bar(10, 100, 80.0, 10)
    assert below.plain == "█░░░░░░░┊░" and below.spans[0].style == "green"
    warned = budget_bar(90, 100, 80.0, 10)
    assert warned.plain == "█████████░" and warned.spans[0].style == "yellow"
    over = budget_bar(150, 100, 80.0, 10)
    assert over.plain == "█" * 10 and over.spans[0].style == "red"
