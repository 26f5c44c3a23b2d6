"""The Costs screen: what the agent's LLM calls cost, from the AI gateway's ledger.

Data flow: the feeds (:mod:`moltconsole.screens.cost_feeds`) run in this screen's workers and
never touch widgets. The loader posts one immutable snapshot of everything the screen shows;
the tail posts batches of new requests, which go straight into the live tail and schedule one
reload (many records within :data:`REFRESH_DELAY` cause a single reload). What each table
shows is in :mod:`moltconsole.widgets.cost_rows`; one request in full is
:mod:`moltconsole.screens.cost_detail`.

Layout: at 140x40 and up every panel is on screen in a grid; smaller, the summary stays on top
and one panel (chart, models, top, errors, tail) fills the rest, switched with tab. Tables show
the columns that fit whole; the panel's subtitle says how many more a wider terminal shows.

Scope: the costs of the sandbox the console shows (by its name, as the ledger tags requests),
or of all sandboxes; ``a`` switches, and the spend panel's title says which. Switching reloads
and follows the tail again for the other scope; what still comes for the one before is dropped.
A screen not told which sandbox it shows (an older backend, which has one) shows all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from moltconsole.screens.cost_detail import CostDetailScreen
from moltconsole.screens.cost_feeds import (
    CostsFailed,
    CostsLoaded,
    CostSnapshot,
    CostSource,
    TailArrived,
    TailBuffer,
    TailState,
    follow_tail,
    load,
)
from moltconsole.streams import shared_wakeup
from moltconsole.widgets.cost_chart import CostChart
from moltconsole.widgets.cost_format import WINDOWS, money
from moltconsole.widgets.cost_rows import (
    ERROR_COLUMNS,
    MODEL_COLUMNS,
    TAIL_COLUMNS,
    TOP_COLUMNS,
    model_row,
    request_row,
)
from moltconsole.widgets.cost_summary import CostSummary
from moltconsole.widgets.cost_table import CostTable
from moltconsole.widgets.fitting_footer import SCREEN_SWITCHES, FittingFooter
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.records import RequestRecord

PANES = ("chart", "models", "top", "errors", "tail")
ALL_SANDBOXES = "all sandboxes"
REFRESH_DELAY = 0.5  # seconds: tail records arriving within this cause one reload
RELOAD_INTERVAL = 60.0  # "today" and the burn rate move on even without new requests

EMPTY_INTRO = (
    "No LLM requests in the ledger yet.\n\n"
    "moltconsole records every request the agent makes through its AI gateway, with tokens and "
    "cost. To route the agent through it:\n"
)
EMPTY_STEPS = (
    "keep [gateway] enabled = true in the config (the default);",
    "give the backend the provider's key: moltconsole keys set ANTHROPIC_API_KEY (or "
    "OPENAI_API_KEY); the backend reads it at once, and the sandbox never sees it;",
    "a sandbox started with the gateway enabled already sends its requests through it; one "
    "started before needs a restart (press 1, then r).",
)
EMPTY_OUTRO = (
    "\nRouting through Cloudflare AI Gateway instead? Set [gateway.cloudflare] account_id and "
    "gateway_id to import its logs here.\n\n"
    "Requests appear here live as the agent makes them."
)


def empty_help(sandbox: str | None = None) -> Group:
    """What to do while the ledger is empty (for ``sandbox``, if the screen shows one); the
    steps wrap under their own text, not the number."""
    steps = Table.grid(padding=(0, 1))
    steps.add_column(no_wrap=True)
    steps.add_column(ratio=1)
    for number, step in enumerate(EMPTY_STEPS, 1):
        steps.add_row(Text(f"  {number}."), Text(step))  # Text: "[gateway]" is no markup
    intro = EMPTY_INTRO
    if sandbox is not None:  # the others may have some: say whose, and where to see them all
        intro = intro.replace(
            "No LLM requests in the ledger yet.",
            f"No LLM requests from sandbox {sandbox} in the ledger yet (a shows all sandboxes).",
        )
    return Group(Text(intro), steps, Text(EMPTY_OUTRO))


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
        Binding("a", "toggle_scope", "This/all", id="costs.scope"),
        Binding("c", "show_pane('chart')", "Chart", id="costs.chart", show=False),
        Binding("m", "show_pane('models')", "Models", id="costs.models", show=False),
        Binding("x", "show_pane('top')", "Top requests", id="costs.top", show=False),
        Binding("e", "show_pane('errors')", "Errors", id="costs.errors", show=False),
        Binding("l", "show_pane('tail')", "Live tail", id="costs.tail", show=False),
    ]

    def __init__(
        self, client: CostSource, *, clock: Callable[[], float] = time.time, name: str | None = None,
        sandbox: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.client = client
        self.clock = clock
        self.sandbox = sandbox  # the sandbox the console shows; None: not known, all are shown
        self.all_sandboxes = sandbox is None  # the scope: all sandboxes, or this one
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
        self._tail = TailBuffer()
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
                yield CostTable(MODEL_COLUMNS, id="costs-models")
            with Vertical(id="pane-top", classes="cost-pane"):
                yield CostTable(TOP_COLUMNS, id="costs-top")
            with Vertical(id="pane-tail", classes="cost-pane"):
                yield CostTable(TAIL_COLUMNS, id="costs-tail")
            with Vertical(id="pane-errors", classes="cost-pane"):
                yield CostTable(ERROR_COLUMNS, id="costs-errors")
        with VerticalScroll(id="costs-empty"):
            yield Static(empty_help(), id="costs-empty-text")
        yield Static(id="costs-problem")
        yield FittingFooter(compact=True, drop_first=SCREEN_SWITCHES, keep=("app.help",))

    @property
    def scope(self) -> str | None:
        """The sandbox whose costs are shown, or None for all of them (as the costs calls take it)."""
        return None if self.all_sandboxes else self.sandbox

    def _scope_text(self) -> str:
        return ALL_SANDBOXES if self.scope is None else f"sandbox {sanitize(self.scope)}"

    def on_mount(self) -> None:
        self._refresh_scope()
        self.query_one("#costs-empty").display = False
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

    def _refresh_scope(self) -> None:
        scope = self._scope_text()
        self.query_one("#costs-summary").border_title = f"spend · {scope}"
        self.query_one("#costs-empty").border_title = f"costs · {scope}"
        self.query_one("#costs-empty-text", Static).update(
            empty_help(None if self.scope is None else sanitize(self.scope)))

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
        self.query_one("#pane-top").border_title = f"costliest requests · last {window}"
        self.query_one("#pane-errors").border_title = f"errors · last {window}"
        tail = "live tail"
        if self.tail_problem:
            tail += " · reconnecting"
        elif not self.tail_ready.is_set():
            tail += " · connecting"
        if self.dropped:
            tail += f" · {self.dropped:,} dropped"
        self.query_one("#pane-tail").border_title = tail

    @on(CostTable.Fitted)
    def _table_fitted(self, event: CostTable.Fitted) -> None:
        """Say under a table what a wider terminal would add, and where to see it all now."""
        event.stop()
        pane = event.table.parent
        if not isinstance(pane, Widget):
            return
        details = "" if event.table.id == "costs-models" else "enter: details"
        more = ""
        if event.hidden:
            count = len(event.hidden)
            more = f"{count} more column{'s' if count > 1 else ''} when wider"
        pane.border_subtitle = " · ".join(part for part in (more, details) if part)

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
        self._load(self.window, self.clock(), self.scope)

    @work(exclusive=True, group="costs-load", exit_on_error=False)
    async def _load(self, window: str, now: float, sandbox: str | None) -> None:
        """Fetch everything for ``window`` and ``sandbox`` at once and post it as one snapshot."""
        self.post_message(await load(self.client, window, now, sandbox=sandbox))

    @on(CostsFailed)
    def _failed(self, event: CostsFailed) -> None:
        self.problem = event.problem
        self._refresh_problem()

    @on(CostsLoaded)
    def _loaded(self, event: CostsLoaded) -> None:
        snap = event.snapshot
        if snap.window != self.window or snap.sandbox != self.scope:
            return  # the user switched windows or scope meanwhile; that load is on its way
        self.snapshot = snap
        self.problem = None
        with self.app.batch_update():
            self._tail.merge(snap.recent)
            self._show_snapshot(snap)
        self.loaded.set()

    def _show_snapshot(self, snap: CostSnapshot) -> None:
        empty = not snap.recent and not snap.models and not len(self._tail)
        self.query_one("#costs-body").display = not empty
        self.query_one("#costs-empty").display = empty
        self.query_one(CostSummary).show(snap.summary, snap.window, snap.summary.budget_warn_percent)
        self.query_one(CostChart).show(snap.series, snap.bucket_seconds)
        models = sorted(snap.models, key=lambda m: m.cost_nanos, reverse=True)
        self.query_one("#costs-models", CostTable).show_rows([model_row(m) for m in models])
        # Free requests (refused, failed before any token) are not "costliest".
        costly = [r for r in snap.top if (r.cost.total_nanos or 0) > 0]
        self.query_one("#costs-top", CostTable).show_rows([request_row(r, snap.now) for r in costly])
        self.query_one("#costs-errors", CostTable).show_rows(
            [request_row(r, snap.now) for r in snap.errors])
        self._fill_tail()
        self._refresh_titles()
        self._refresh_tabs()
        self._refresh_problem()

    def _fill_tail(self) -> None:
        now = self.snapshot.now if self.snapshot else self.clock()
        self.query_one("#costs-tail", CostTable).show_rows(
            [request_row(r, now) for r in self._tail.newest_first()])

    # --- live tail ---------------------------------------------------------------------------
    @work(exclusive=True, group="costs-tail", exit_on_error=False)
    async def _follow_tail(self) -> None:
        """Follow the ledger's new requests; reconnect when the stream breaks."""
        await follow_tail(self.client, self.post_message, wakeup=shared_wakeup(self.app), sandbox=self.scope)

    @on(TailState)
    def _tail_state(self, event: TailState) -> None:
        if event.sandbox != self.scope:
            return  # the tail of the scope shown before
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
        if event.sandbox != self.scope:
            return
        self.dropped += event.dropped
        self._tail.merge(event.records)
        if self.snapshot is not None:
            self.query_one("#costs-body").display = True
            self.query_one("#costs-empty").display = False
        self._fill_tail()
        self._refresh_titles()
        self._schedule_refresh()
        self.tail_applied.set()

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

    def action_toggle_scope(self) -> None:
        """Show the costs of all sandboxes, or of the one the console shows."""
        if self.sandbox is None:
            self.notify("the backend did not say which sandbox this is (an older backend has only "
                        "one), so the costs of all sandboxes are shown.", markup=False)
            return
        self.all_sandboxes = not self.all_sandboxes
        self.snapshot = None
        self.dropped = 0
        self.tail_problem = None
        self._tail = TailBuffer()
        self.tail_ready.clear()
        self._refresh_scope()
        self._refresh_titles()
        self._fill_tail()
        self._follow_tail()  # exclusive: the other scope's tail stops
        self._reload()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """A panel clicked or focused becomes the current panel."""
        for name in PANES:
            if self._pane_widget(name) is event.widget and name != self.pane:
                self._show_pane(name, focus=False)

    @on(CostTable.RowSelected)
    def _row_selected(self, event: CostTable.RowSelected) -> None:
        event.stop()
        self.action_detail()

    def action_detail(self) -> None:
        """Open the selected request with every field and each upstream attempt."""
        if self.pane not in ("top", "errors", "tail"):
            self.notify("Details are for single requests: go to top, errors or tail (tab).",
                        markup=False)
            return
        key = self.query_one(f"#costs-{self.pane}", CostTable).selected_key()
        record = self._find(key) if key else None
        if record is None:
            self.notify("No request selected.", severity="warning", markup=False)
            return
        self.app.push_screen(CostDetailScreen(self.client, record))

    def _find(self, request_id: str) -> RequestRecord | None:
        found = self._tail.get(request_id)
        if found is not None:
            return found
        snap = self.snapshot
        for record in (*(snap.top if snap else ()), *(snap.errors if snap else ())):
            if record.id == request_id:
                return record
        return None
