"""The Costs screen: what the agent's LLM calls cost, from the AI gateway's ledger.

Data flow: one loader worker asks the backend for everything the screen shows at once (summary,
series, models, top requests, errors, recent requests) and posts one immutable
:class:`CostSnapshot`; a tail worker follows ``/v1/costs/tail`` and posts batches of new
requests, which go straight into the live tail and schedule one reload (many records within
:data:`REFRESH_DELAY` cause a single reload). Workers never touch widgets.

Layout: at 140x40 and up every panel is on screen in a grid; smaller, the summary stays on top
and one panel (chart, models, top, errors, tail) fills the rest, switched with tab.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist
from textual.worker import Worker, WorkerState

from moltconsole.client import BackendError
from moltconsole.widgets.cost_chart import CostChart
from moltconsole.widgets.cost_format import NO_PRICE, WINDOWS, millis, money, tokens
from moltconsole.widgets.cost_summary import CostSummary
from moltconsole.widgets.cost_table import CostTable
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.records_json import to_json
from moltconsole_shared.wire.reports import ModelUsage, SeriesPoint, Summary

PANES = ("chart", "models", "top", "errors", "tail")
# One chart bar per bucket: an hour over a day, six hours over a week, a day over a month.
BUCKETS = {"24h": (24, 3600.0), "7d": (28, 6 * 3600.0), "30d": (30, 86_400.0)}
TOP_LIMIT = 50
ERROR_LIMIT = 50
TAIL_ROWS = 200  # requests kept in the live tail
REFRESH_DELAY = 0.5  # seconds: tail records arriving within this cause one reload
RELOAD_INTERVAL = 60.0  # "today" and the burn rate move on even without new requests
RETRY_MAX = 5.0

EMPTY_HELP = (
    "No LLM requests in the ledger yet.\n\n"
    "moltconsole records every request the agent makes through its AI gateway, with tokens and "
    "cost. To route the agent through it:\n\n"
    "  1. keep [gateway] enabled = true in the config (the default);\n"
    "  2. give the backend the provider's key: ANTHROPIC_API_KEY or OPENAI_API_KEY in its "
    "environment, or [gateway.providers.NAME] in the config; the sandbox never sees it;\n"
    "  3. (re)start the sandbox (press 1, then r): its OpenClaw config then points at the "
    "gateway.\n\n"
    "Routing through Cloudflare AI Gateway instead? Set [gateway.cloudflare] account_id and "
    "gateway_id to import its logs here.\n\n"
    "Requests appear here live as the agent makes them."
)


class CostSource(Protocol):
    """What the screen needs from :class:`moltconsole.client.BackendClient`."""

    async def costs_summary(
        self, *, window: str = "24h", sandbox: str | None = None, now: float | None = None,
    ) -> Summary: ...

    async def costs_models(
        self, *, since: str | float = "7d", until: str | float | None = None,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[ModelUsage]: ...

    async def costs_series(
        self, *, since: str | float = "7d", until: str | float | None = None, buckets: int = 48,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[SeriesPoint]: ...

    async def costs_requests(
        self, kind: str = "recent", *, since: str | float | None = None, limit: int = 50,
        before: float | None = None, sandbox: str | None = None, now: float | None = None,
    ) -> list[RequestRecord]: ...

    async def costs_request(self, request_id: str) -> RequestRecord: ...

    def costs_tail(self, *, sandbox: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Tail messages: ``ready``, then batches (see ``BackendClient.costs_tail``)."""
        ...


@dataclass(frozen=True, slots=True)
class CostSnapshot:
    """Everything the screen shows for one window, fetched together."""

    window: str
    now: float
    summary: Summary
    series: tuple[SeriesPoint, ...]
    bucket_seconds: float
    models: tuple[ModelUsage, ...]
    top: tuple[RequestRecord, ...]
    errors: tuple[RequestRecord, ...]
    recent: tuple[RequestRecord, ...]


class CostsLoaded(Message):
    """A fresh snapshot from the loader."""

    def __init__(self, snapshot: CostSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class CostsFailed(Message):
    """The loader could not reach the ledger; ``problem`` says why, for the user."""

    def __init__(self, problem: str) -> None:
        super().__init__()
        self.problem = problem


class TailArrived(Message):
    """Requests the ledger recorded since the last batch."""

    def __init__(self, records: tuple[RequestRecord, ...], dropped: int) -> None:
        super().__init__()
        self.records = records
        self.dropped = dropped


class TailState(Message):
    """The tail is listening (``problem`` None) or broke (``problem`` says why)."""

    def __init__(self, problem: str | None) -> None:
        super().__init__()
        self.problem = problem


def series_range(now: float, window: str) -> tuple[float, float, int, float]:
    """(since, until, buckets, bucket seconds) for the chart; buckets start on local hours/days,
    the last one holding ``now``."""
    count, size = BUCKETS[window]
    offset = dt.datetime.fromtimestamp(now).astimezone().utcoffset() or dt.timedelta()
    shift = offset.total_seconds()
    until = (math.floor((now + shift) / size) + 1) * size - shift
    return until - count * size, until, count, size


def when(started_at: float, now: float) -> str:
    """A request's time: clock time today, date and time before."""
    moment = time.localtime(started_at)
    if time.strftime("%Y%m%d", moment) == time.strftime("%Y%m%d", time.localtime(now)):
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%m-%d %H:%M", moment)


def cost_text(record: RequestRecord) -> Text:
    """A request's cost, or "no price" (yellow) when its model has none."""
    total = record.cost.total_nanos
    if total is None:
        return Text(NO_PRICE, style="yellow", justify="right")
    return Text(money(total), justify="right")


def right(value: str, style: str = "") -> Text:
    """A right-aligned cell."""
    return Text(value, style=style, justify="right")


def outcome_text(record: RequestRecord) -> Text:
    """``ok``, or the outcome and status in red/yellow."""
    if record.outcome == "ok":
        return Text("ok", style="green")
    style = "yellow" if record.outcome in ("cancelled", "blocked") else "red"
    return Text(f"{record.outcome} {record.status or ''}".strip(), style=style)


TRIGGER_STYLES = {"user": "", "tool": "dim", "heartbeat": "yellow", "background": "yellow",
                  "unknown": "dim"}


class CostsScreen(Screen[None]):
    """Spend, budgets, latency, the chart, the models, the costliest requests, errors, live tail."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]

    BINDINGS = [
        Binding("t", "cycle_window", "Window", id="costs.window"),
        Binding("tab", "pane(1)", "Next panel", id="costs.next_panel"),
        Binding("shift+tab", "pane(-1)", "Prev panel", id="costs.previous_panel", show=False),
        Binding("enter", "detail", "Details", id="costs.detail"),
        Binding("r", "refresh", "Refresh", id="costs.refresh"),
        Binding("c", "show_pane('chart')", "Chart", id="costs.chart", show=False),
        Binding("m", "show_pane('models')", "Models", id="costs.models", show=False),
        Binding("x", "show_pane('top')", "Top requests", id="costs.top", show=False),
        Binding("e", "show_pane('errors')", "Errors", id="costs.errors", show=False),
        Binding("l", "show_pane('tail')", "Live tail", id="costs.tail", show=False),
    ]

    def __init__(
        self, client: CostSource, *, clock: Callable[[], float] = time.time, name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.client = client
        self.clock = clock
        self.window = "24h"
        self.pane = "chart"
        self.snapshot: CostSnapshot | None = None
        self.problem: str | None = None
        self.tail_problem: str | None = None
        self.dropped = 0
        # Set while the screen shows the latest data asked for: cleared when a reload is due,
        # set when its snapshot is on screen (tests await it).
        self.loaded = asyncio.Event()
        self.tail_ready = asyncio.Event()  # set while the tail listens
        self.tail_applied = asyncio.Event()  # set after each tail batch is on screen
        self._tail: dict[str, RequestRecord] = {}
        self._refresh_pending = False

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Container(id="costs-body"):
            yield CostSummary(id="costs-summary")
            yield Static(id="costs-tabs")
            with Vertical(id="pane-chart", classes="cost-pane"):
                yield CostChart(id="costs-chart")
            with Vertical(id="pane-models", classes="cost-pane"):
                yield CostTable(id="costs-models", cursor_type="row", zebra_stripes=True)
            with Vertical(id="pane-top", classes="cost-pane"):
                yield CostTable(id="costs-top", cursor_type="row", zebra_stripes=True)
            with Vertical(id="pane-errors", classes="cost-pane"):
                yield CostTable(id="costs-errors", cursor_type="row", zebra_stripes=True)
            with Vertical(id="pane-tail", classes="cost-pane"):
                yield CostTable(id="costs-tail", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="costs-empty"):
            yield Static(Text(EMPTY_HELP), id="costs-empty-text")
        yield Static(id="costs-problem")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#costs-summary").border_title = "spend"
        self.query_one("#costs-empty").border_title = "costs"
        self.query_one("#costs-empty").display = False
        self.query_one("#costs-models", DataTable).add_columns(
            "model", right("requests"), right("cost"), right("cache saved"), right("input"),
            right("output"), right("cache read"), right("cache write"), right("reasoning"),
            right("errors"), "provider",
        )
        # Most telling columns first: narrow panels scroll sideways for the rest.
        self.query_one("#costs-top", DataTable).add_columns(
            right("cost"), "model", "when", right("in"), right("out"), "trigger", right("duration"),
            "sandbox",
        )
        self.query_one("#costs-errors", DataTable).add_columns(
            "when", "model", "error", "status", "message",
        )
        self.query_one("#costs-tail", DataTable).add_columns(
            "when", "model", right("cost"), "outcome", "trigger", right("in"), right("out"),
            right("duration"),
        )
        self._show_pane(self.pane, focus=True)
        self._refresh_titles()
        self._refresh_problem()
        self.set_interval(RELOAD_INTERVAL, self._reload)
        self._follow_tail()
        self._reload()

    def _pane_widget(self, pane: str) -> Widget:
        return self.query_one("#costs-chart" if pane == "chart" else f"#costs-{pane}")

    def _show_pane(self, pane: str, *, focus: bool) -> None:
        self.pane = pane
        for name in PANES:
            self.query_one(f"#pane-{name}").set_class(name == pane, "-current")
        if focus:
            self._pane_widget(pane).focus()
        self._refresh_tabs()

    def _refresh_tabs(self) -> None:
        tabs = Text(no_wrap=True, overflow="ellipsis")
        for name in PANES:
            label = f" {name} "
            if name == "errors" and self.snapshot and self.snapshot.summary.errors:
                label = f" errors {self.snapshot.summary.errors:,} "
            tabs.append(label, "bold reverse" if name == self.pane else "")
            tabs.append(" ")
        tabs.append(f"  tab next · t window {self.window}", "dim")
        self.query_one("#costs-tabs", Static).update(tabs)

    def _refresh_titles(self) -> None:
        window = self.window
        unit = {"24h": "hour", "7d": "6 hours", "30d": "day"}[window]
        self.query_one("#pane-chart").border_title = f"cost per {unit} · last {window}"
        saved = sum(m.cache_savings_nanos for m in self.snapshot.models) if self.snapshot else 0
        models = f"by model · last {window}"
        if saved:
            verb = "saved" if saved > 0 else "cost extra"
            models += f" · prompt caching {verb} {money(abs(saved))}"
        self.query_one("#pane-models").border_title = models
        self.query_one("#pane-top").border_title = f"costliest requests · last {window} (enter: details)"
        self.query_one("#pane-errors").border_title = f"errors · last {window}"
        tail = "live tail"
        if self.tail_problem:
            tail += " · reconnecting"
        elif not self.tail_ready.is_set():
            tail += " · connecting"
        if self.dropped:
            tail += f" · {self.dropped:,} dropped"
        self.query_one("#pane-tail").border_title = tail

    def _refresh_problem(self) -> None:
        box = self.query_one("#costs-problem", Static)
        problem = self.problem or self.tail_problem
        box.update(Text(sanitize(problem or ""), style="bold"))
        box.display = problem is not None

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place an unexpected worker failure reaches the user."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.problem = f"cost data failed: {event.worker.error}"
            self._refresh_problem()

    # --- loading -----------------------------------------------------------------------------
    def _reload(self) -> None:
        self.loaded.clear()
        self._load(self.window, self.clock())

    @work(exclusive=True, group="costs-load", exit_on_error=False)
    async def _load(self, window: str, now: float) -> None:
        """Fetch everything for ``window`` at once and post it as one snapshot."""
        client = self.client
        since = now - WINDOWS[window]
        start, end, buckets, size = series_range(now, window)
        try:
            summary, series, models, top, errors, recent = await asyncio.gather(
                client.costs_summary(window=window, now=now),
                client.costs_series(since=start, until=end, buckets=buckets, now=now),
                client.costs_models(since=since, now=now),
                client.costs_requests("top", since=since, limit=TOP_LIMIT, now=now),
                client.costs_requests("errors", since=since, limit=ERROR_LIMIT, now=now),
                client.costs_requests("recent", limit=TAIL_ROWS),
            )
        except BackendError as exc:
            self.post_message(CostsFailed(f"cannot load costs: {exc}"))
            return
        self.post_message(CostsLoaded(CostSnapshot(
            window=window, now=now, summary=summary, series=tuple(series), bucket_seconds=size,
            models=tuple(models), top=tuple(top), errors=tuple(errors), recent=tuple(recent),
        )))

    @on(CostsFailed)
    def _failed(self, event: CostsFailed) -> None:
        self.problem = event.problem
        self._refresh_problem()

    @on(CostsLoaded)
    def _loaded(self, event: CostsLoaded) -> None:
        snap = event.snapshot
        if snap.window != self.window:
            return  # the user switched windows meanwhile; that load is on its way
        self.snapshot = snap
        self.problem = None
        with self.app.batch_update():
            self._merge_tail(snap.recent)
            self._show_snapshot(snap)
        self.loaded.set()

    def _show_snapshot(self, snap: CostSnapshot) -> None:
        empty = not snap.recent and not snap.models and not self._tail
        self.query_one("#costs-body").display = not empty
        self.query_one("#costs-empty").display = empty
        self.query_one(CostSummary).show(snap.summary, snap.window, snap.summary.budget_warn_percent)
        self.query_one(CostChart).show(snap.series, snap.bucket_seconds)
        self._fill_models(snap.models)
        # Free requests (refused, failed before any token) are not "costliest".
        costly = [r for r in snap.top if (r.cost.total_nanos or 0) > 0]
        self._fill_requests("#costs-top", costly, self._top_row)
        self._fill_requests("#costs-errors", snap.errors, self._error_row)
        self._fill_tail()
        self._refresh_titles()
        self._refresh_tabs()
        self._refresh_problem()

    def _fill_models(self, models: Sequence[ModelUsage]) -> None:
        table = self.query_one("#costs-models", DataTable)
        keep = table.cursor_row
        table.clear()
        for m in sorted(models, key=lambda m: m.cost_nanos, reverse=True):
            if m.unpriced >= m.requests and m.unpriced:
                cost = Text(NO_PRICE, style="yellow", justify="right")
            elif m.unpriced:
                cost = right(f"{money(m.cost_nanos)} +{m.unpriced} no price", "yellow")
            else:
                cost = right(money(m.cost_nanos))
            table.add_row(
                Text(sanitize(m.model)), right(f"{m.requests:,}"), cost,
                right(money(m.cache_savings_nanos)), right(tokens(m.input_tokens)),
                right(tokens(m.output_tokens)), right(tokens(m.cache_read_tokens)),
                right(tokens(m.cache_write_5m_tokens + m.cache_write_1h_tokens)),
                right(tokens(m.reasoning_tokens)),
                right(f"{m.errors:,}", "red" if m.errors else ""), Text(sanitize(m.provider)),
            )
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))

    def _fill_requests(
        self, selector: str, records: Sequence[RequestRecord],
        row: Callable[[RequestRecord, float], list[Text]],
    ) -> None:
        table = self.query_one(selector, DataTable)
        selected = self._selected_key(table)
        table.clear()
        now = self.snapshot.now if self.snapshot else self.clock()
        for record in records:
            table.add_row(*row(record, now), key=record.id)
        self._restore_cursor(table, selected)

    def _top_row(self, r: RequestRecord, now: float) -> list[Text]:
        return [
            cost_text(r), Text(sanitize(r.model)), Text(when(r.started_at, now)),
            right(tokens(r.usage.prompt_tokens)), right(tokens(r.usage.output_tokens)),
            Text(r.trigger, style=TRIGGER_STYLES.get(r.trigger, "")), right(millis(r.duration_ms)),
            Text(sanitize(r.sandbox)),
        ]

    def _error_row(self, r: RequestRecord, now: float) -> list[Text]:
        return [
            Text(when(r.started_at, now)), Text(sanitize(r.model)),
            Text(sanitize(r.error_kind or "-"), style="red"), outcome_text(r),
            Text(sanitize(r.error_message or ""), no_wrap=True, overflow="ellipsis"),
        ]

    def _tail_row(self, r: RequestRecord, now: float) -> list[Text]:
        return [
            Text(when(r.started_at, now)), Text(sanitize(r.model)), cost_text(r), outcome_text(r),
            Text(r.trigger, style=TRIGGER_STYLES.get(r.trigger, "")),
            right(tokens(r.usage.prompt_tokens)), right(tokens(r.usage.output_tokens)),
            right(millis(r.duration_ms)),
        ]

    @staticmethod
    def _selected_key(table: DataTable[Any]) -> str | None:
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except CellDoesNotExist:  # the cursor is outside the rows
            return None
        return key.value

    @staticmethod
    def _restore_cursor(table: DataTable[Any], key: str | None) -> None:
        if key is None or not table.row_count:
            return
        try:
            index = table.get_row_index(key)
        except RowDoesNotExist:  # the row is gone: the cursor stays at the top
            return
        table.move_cursor(row=index)

    # --- live tail ---------------------------------------------------------------------------
    @work(exclusive=True, group="costs-tail", exit_on_error=False)
    async def _follow_tail(self) -> None:
        """Follow the ledger's new requests; reconnect when the stream breaks."""
        delay = 0.2
        while True:
            try:
                async for message in self.client.costs_tail():
                    kind = message.get("type")
                    if kind == "ready":
                        self.post_message(TailState(None))
                        delay = 0.2
                    elif kind == "batch":
                        records = tuple(message.get("records") or ())
                        self.post_message(TailArrived(records, int(message.get("dropped") or 0)))
                problem = "the backend closed the cost tail; reconnecting…"
            except BackendError as exc:
                problem = f"cost tail: {exc} (retrying)"
            self.post_message(TailState(problem))
            await asyncio.sleep(delay)  # back off before reconnecting; not waiting on an event
            delay = min(delay * 2, RETRY_MAX)

    @on(TailState)
    def _tail_state(self, event: TailState) -> None:
        self.tail_problem = event.problem
        if event.problem is None:
            self.tail_ready.set()
            self._reload()  # so nothing recorded before the tail listened is missed
        else:
            self.tail_ready.clear()
        self._refresh_titles()
        self._refresh_problem()

    @on(TailArrived)
    def _tail_arrived(self, event: TailArrived) -> None:
        self.dropped += event.dropped
        self._merge_tail(event.records)
        if self.snapshot is not None:
            self.query_one("#costs-body").display = True
            self.query_one("#costs-empty").display = False
        self._fill_tail()
        self._refresh_titles()
        self._schedule_refresh()
        self.tail_applied.set()

    def _merge_tail(self, records: Sequence[RequestRecord]) -> None:
        for record in records:
            self._tail[record.id] = record
        if len(self._tail) > TAIL_ROWS:
            newest = sorted(self._tail.values(), key=lambda r: r.started_at)[-TAIL_ROWS:]
            self._tail = {r.id: r for r in newest}

    def _fill_tail(self) -> None:
        newest_first = sorted(self._tail.values(), key=lambda r: r.started_at, reverse=True)
        self._fill_requests("#costs-tail", newest_first, self._tail_row)

    def _schedule_refresh(self) -> None:
        """Reload soon; tail records arriving meanwhile ride on the same reload."""
        self.loaded.clear()
        if self._refresh_pending:
            return
        self._refresh_pending = True

        def due() -> None:
            self._refresh_pending = False
            self._reload()

        self.set_timer(REFRESH_DELAY, due)

    # --- actions -----------------------------------------------------------------------------
    def action_cycle_window(self) -> None:
        """Show the last 24 hours, 7 days or 30 days."""
        names = list(WINDOWS)
        self.window = names[(names.index(self.window) + 1) % len(names)]
        self._refresh_titles()
        self._refresh_tabs()
        self._reload()

    def action_pane(self, step: int) -> None:
        """Go to the next (or previous) panel."""
        index = PANES.index(self.pane)
        self._show_pane(PANES[(index + step) % len(PANES)], focus=True)

    def action_show_pane(self, pane: str) -> None:
        """Go to one panel: chart, models, top, errors or tail."""
        self._show_pane(pane, focus=True)

    def action_refresh(self) -> None:
        """Load everything again now."""
        self._reload()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """A panel clicked or focused becomes the current panel."""
        for name in PANES:
            if self._pane_widget(name) is event.widget and name != self.pane:
                self._show_pane(name, focus=False)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_detail()

    def action_detail(self) -> None:
        """Open the selected request with every field and each upstream attempt."""
        if self.pane not in ("top", "errors", "tail"):
            self.notify("Details are for single requests: go to top, errors or tail (tab).",
                        markup=False)
            return
        table = self.query_one(f"#costs-{self.pane}", DataTable)
        key = self._selected_key(table)
        record = self._find(key) if key else None
        if record is None:
            self.notify("No request selected.", severity="warning", markup=False)
            return
        self.app.push_screen(CostDetailScreen(self.client, record))

    def _find(self, request_id: str) -> RequestRecord | None:
        if request_id in self._tail:
            return self._tail[request_id]
        snap = self.snapshot
        for record in (*(snap.top if snap else ()), *(snap.errors if snap else ())):
            if record.id == request_id:
                return record
        return None


# --- detail ---------------------------------------------------------------------------------------
class DetailLoaded(Message):
    """The full record (with its attempts) arrived from the backend."""

    def __init__(self, record: RequestRecord | None, problem: str | None) -> None:
        super().__init__()
        self.record = record
        self.problem = problem


def _stamp(epoch: float) -> str:
    """``2027-01-15 07:30:00.250 UTC``: local time, to the millisecond, with its zone."""
    moment = time.localtime(epoch)
    millis_part = round(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%d %H:%M:%S", moment) + f".{millis_part:03d} " + time.strftime(
        "%Z", moment)


def record_fields(r: RequestRecord) -> Table:
    """Every field of a request, as a two-column table (agent-made text is sanitised)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    u, c = r.usage, r.cost

    def row(label: str, value: str | Text) -> None:
        table.add_row(label, value if isinstance(value, Text) else Text(sanitize(value)))

    row("id", r.id)
    row("time", _stamp(r.started_at))
    row("sandbox", r.sandbox)
    row("api", r.api)
    row("provider", r.provider)
    row("model", r.model)
    if r.requested_model != r.model:
        row("asked for", Text(sanitize(r.requested_model) + " (served by a fallback)",
                              style="yellow"))
    else:
        row("asked for", r.requested_model)
    row("stream", "yes" if r.stream else "no")
    row("outcome", outcome_text(r))
    row("status", str(r.status))
    row("error", Text(sanitize(r.error_kind), style="red") if r.error_kind else "-")
    if r.error_message:
        row("message", r.error_message)
    row("trigger", r.trigger)
    row("origin", "imported from Cloudflare AI Gateway" if r.origin == "cloudflare" else "proxy")
    row("first byte", millis(r.ttfb_ms))
    row("duration", millis(r.duration_ms))
    row("gateway overhead", millis(r.overhead_ms))
    row("input", tokens(u.input_tokens) + " (uncached)")
    row("output", tokens(u.output_tokens))
    row("cache read", tokens(u.cache_read_tokens))
    row("cache write 5m", tokens(u.cache_write_5m_tokens))
    row("cache write 1h", tokens(u.cache_write_1h_tokens))
    row("reasoning", tokens(u.reasoning_tokens) + " (part of output)")
    source = {"provider": "reported by the provider", "partial": "partial: the stream ended early",
              "none": "none: no usage was reported", "imported": "imported",
              "estimated": "estimated: the provider's report never came; counted from the "
                           "request and the output relayed"}.get(u.source, u.source)
    row("usage", source)
    if c.total_nanos is None:
        row("cost", Text("no price: this model is not in the price table; add it under "
                         "[gateway.prices]", style="yellow"))
    else:
        row("cost", Text(money(c.total_nanos), style="bold"))
    row("cache saved", money(c.cache_savings_nanos))
    row("long context", "yes (long-context rates)" if c.long_context else "no")
    row("price table", c.pricing_version or "-")
    return table


def attempts_text(r: RequestRecord) -> Text:
    """Each upstream attempt (the first try, retries, fallbacks) in two lines: what was called
    and how it ended, then timing, tokens and cost."""
    if not r.attempts:
        return Text("no upstream attempt (refused before any call)" if r.outcome == "blocked"
                    else "no upstream attempts recorded", style="dim")
    text = Text()
    for n, a in enumerate(r.attempts):
        if n:
            text.append("\n")
        text.append(f"#{a.attempt}", "bold")
        text.append(f"  +{(a.started_at - r.started_at) * 1000:,.0f} ms  ", "dim")
        text.append(sanitize(f"{a.provider}/{a.model}"))
        ok = 200 <= a.status < 300 and not a.error_kind
        text.append(f"  HTTP {a.status}" if a.status else "  no response", "green" if ok else "red")
        if a.error_kind:
            text.append(f"  {sanitize(a.error_kind)}", "red")
        used = a.usage.prompt_tokens or a.usage.output_tokens
        if a.cost_nanos is not None:
            cost = Text(money(a.cost_nanos))
        elif used:
            cost = Text(NO_PRICE, style="yellow")
        else:
            cost = Text("-")
        text.append(f"\n    first byte {millis(a.ttfb_ms)}  duration {millis(a.duration_ms)}  "
                    f"in {tokens(a.usage.prompt_tokens)}  out {tokens(a.usage.output_tokens)}  "
                    "cost ", "dim")
        text.append_text(cost)
    return text


class CostDetailScreen(ModalScreen[None]):
    """One request in full: every field and each upstream attempt."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss", "Close", id="costs.detail.close"),
        Binding("y", "copy", "Copy JSON", id="costs.detail.copy"),
    ]

    def __init__(self, client: CostSource, record: RequestRecord) -> None:
        super().__init__()
        self.client = client
        self.record = record
        self.loaded = asyncio.Event()  # set once the full record is shown (tests await it)

    def compose(self) -> ComposeResult:
        with Vertical(id="costs-detail"):
            with VerticalScroll(id="costs-detail-body"):
                yield Static(record_fields(self.record), id="costs-detail-fields")
                yield Static(Text("upstream attempts", style="bold"),
                             id="costs-detail-attempts-title")
                yield Static(attempts_text(self.record), id="costs-detail-attempts")
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#costs-detail").border_title = f"request {self.record.id}"
        self.query_one("#costs-detail-body").focus()
        self._fetch(self.record.id)

    @work(exclusive=True, group="costs-detail", exit_on_error=False)
    async def _fetch(self, request_id: str) -> None:
        """The record as the ledger has it now, with every attempt."""
        try:
            record = await self.client.costs_request(request_id)
        except BackendError as exc:
            self.post_message(DetailLoaded(None, str(exc)))
            return
        self.post_message(DetailLoaded(record, None))

    @on(DetailLoaded)
    def _detail_loaded(self, event: DetailLoaded) -> None:
        if event.record is not None:
            self.record = event.record
            self.query_one("#costs-detail-fields", Static).update(record_fields(event.record))
            self.query_one("#costs-detail-attempts", Static).update(attempts_text(event.record))
        elif event.problem:
            self.notify(f"showing the row as listed: {event.problem}", severity="warning",
                        markup=False)
        self.loaded.set()

    def action_copy(self) -> None:
        """Copy the request as JSON (every field, attempts included) to the clipboard."""
        text = json.dumps(to_json(self.record), indent=2)
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied request {self.record.id} ({len(text):,} characters).", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        """Close the detail view."""
        self.dismiss(result)
