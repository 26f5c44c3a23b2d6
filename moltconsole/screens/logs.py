"""The Logs screen: live tail with follow/pause, filter, search, time windows, detail and copy.

Data flow: one worker follows the backend's log stream through
:func:`~moltconsole.screens.log_feeds.log_batches`, which groups whatever arrived within
:data:`~moltconsole.screens.log_feeds.BATCH_INTERVAL` into one :class:`LogBatch` message (the
stream reconnects by itself and never shows a line twice), so the screen repaints at most ~15
times a second however fast lines come. The worker posts the next batch only after the screen
has applied the previous one: when the UI is slow the batches grow instead of the message queue.
Everything in memory is bounded by ``max_lines`` (the raw buffer, the filtered view, the lines
waiting while paused); history stays in the backend.

Filters look further back than memory. When the text, subsystem or level filter changes, the
view shows the matches in memory at once, and a second worker (exclusive: a newer filter
cancels it, and it waits :data:`~moltconsole.screens.log_feeds.HISTORY_DELAY` before asking, so
typing never floods the backend) asks the backend's on-disk history for the last ``max_lines``
matches (:func:`~moltconsole.screens.log_feeds.search_history`), posts them in one
:class:`HistoryFound` message, and the screen puts the older ones in front of the matches in
memory. Live lines that match keep arriving at the end as before. When memory holds every line
the backend has (fewer than ``max_lines`` so far, none dropped), nothing is asked. Where that
search stands is a :class:`~moltconsole.screens.log_history.HistorySearch`; the line detail is
:mod:`moltconsole.screens.log_detail`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from moltconsole.logfilter import (
    LEVEL_FLOORS,
    TIME_WINDOWS,
    LogFilter,
    LogRecord,
    PatternError,
    TextPattern,
    count_matches,
    find_match,
    next_in_cycle,
    window_start,
)
from moltconsole.screens.log_detail import LogDetailScreen
from moltconsole.screens.log_feeds import (
    HISTORY_DELAY,
    HistoryFound,
    LogBatch,
    LogSource,
    LogStreamState,
    log_batches,
    search_history,
)
from moltconsole.screens.log_history import HistoryPhase, HistorySearch
from moltconsole.streams import StreamState, shared_wakeup
from moltconsole.widgets.fitting_footer import SCREEN_SWITCHES, FittingFooter
from moltconsole.widgets.log_view import LogView
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.untrusted import sanitize

__all__ = ["LogDetailScreen", "LogSource", "LogsScreen"]

HISTORY_GROUP = "logs-history"


class LogsScreen(Screen[None]):
    """Live logs from the backend, keyboard first."""

    BINDINGS = [
        Binding("p,space", "toggle_pause", "Pause", id="logs.pause"),
        Binding("f", "open_filter", "Filter", id="logs.filter"),
        Binding("slash", "open_search", "Search", id="logs.search"),
        Binding("n", "search_next", "Next", id="logs.search_next", show=False),
        Binding("N", "search_previous", "Prev", id="logs.search_previous", show=False),
        Binding("l", "cycle_level", "Level", id="logs.level"),
        Binding("r", "cycle_window", "Range", id="logs.window"),
        # Display toggles stay out of the footer (it has room for one at 80 columns: the source,
        # which the filter's source: words go with); ? and the palette list them all.
        Binding("w", "toggle_wrap", "Wrap", id="logs.wrap", show=False),
        Binding("t", "toggle_timestamps", "Time", id="logs.timestamps", show=False),
        Binding("s", "toggle_source", "Source", id="logs.source"),
        Binding("enter", "detail", "Detail", id="logs.detail"),
        Binding("y", "copy_line", "Copy", id="logs.copy_line"),
        Binding("Y", "copy_last", "Copy last N", id="logs.copy_last", show=False),
        Binding("escape", "clear", "Clear", id="logs.clear", show=False),
        Binding("up,k", "cursor(-1)", "Up", id="logs.cursor_up", show=False),
        Binding("down,j", "cursor(1)", "Down", id="logs.cursor_down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", id="logs.page_up", show=False),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", id="logs.page_down", show=False),
        Binding("home,g", "first", "First", id="logs.first", show=False),
        Binding("end,G", "last", "Last (follow)", id="logs.last", show=False),
    ]

    def __init__(
        self, client: LogSource, *, max_lines: int = 10_000, copy_lines: int = 100,
        clock: Callable[[], float] = time.time, history_delay: float = HISTORY_DELAY,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.client = client
        self.max_lines = max_lines
        self.copy_lines = copy_lines
        self.clock = clock
        self.paused = False
        self.waiting = 0  # lines that arrived while paused (counted even past max_lines)
        self.dropped = 0
        self.window = "all"
        self.level_floor: str | None = None
        self.query_text = ""
        self.search_text = ""
        self.problem: str | None = None
        self.pattern_error: str | None = None
        # The filter in force when the filter input opened, and its text: what a bad regex typed
        # since falls back to, so the view keeps the lines it showed rather than going empty.
        self._filter_at_open: tuple[LogFilter, str] | None = None
        self.caught_up = asyncio.Event()  # set when the backend has sent its history
        self.applied = asyncio.Event()  # set after each batch is on screen (tests await it)
        self.history_delay = history_delay
        self.history = HistorySearch()  # the history search for the current filter
        self._history_worker: Worker[None] | None = None
        self._frozen = False  # whether this screen froze the GC's long-lived objects
        self._gone = False
        self._received = 0  # records received since the stream (re)started
        self._lost = False  # whether the backend reported dropped records since then
        self._filter = LogFilter()
        self._buffer: deque[LogRecord] = deque(maxlen=max_lines)
        self._pending: deque[LogRecord] = deque(maxlen=max_lines)
        self._matches = 0
        self._input_mode: str | None = None  # "filter" or "search" while the input is open
        self._ready = asyncio.Event()  # the screen applied the last batch; the worker may post
        self._ready.set()

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")  # sandbox state and connection, as on every screen
        yield Static(id="logs-status")
        yield Static(id="logs-query")
        yield LogView(max_lines=self.max_lines, id="logs-view")
        yield Static(id="logs-error")
        yield Input(id="logs-input")
        yield FittingFooter(compact=True, drop_first=SCREEN_SWITCHES, keep=("app.help",))

    @property
    def view(self) -> LogView:
        """The log view widget."""
        return self.query_one(LogView)

    @property
    def history_state(self) -> HistoryPhase | None:
        """Where the history search for the filter stands; None when no filter narrows."""
        phase = self.history.phase
        return None if phase is HistoryPhase.OFF else phase

    @property
    def history_settled(self) -> asyncio.Event:
        """Set when a history search ends (tests await it)."""
        return self.history.settled

    def on_mount(self) -> None:
        self.view.focus()
        self._refresh_bars()
        self._subscribe()
        self.call_after_refresh(self._freeze_long_lived)

    def on_unmount(self) -> None:
        self._gone = True
        if self._frozen:
            gc.unfreeze()
            self._frozen = False

    def _freeze_long_lived(self) -> None:
        """Keep Python's full collections off the objects that already exist.

        A log line that stays on screen for a second outlives the young GC generations, so at
        thousands of lines a second a full collection runs every second or two, and it walks
        every tracked object: Textual's classes, widgets, styles and cached lines, over 100,000
        of them, for 50-100 ms during which no key is handled (measured with
        bench/bench_console.py: this was most of the key latency's tail). Those objects live as
        long as the app; frozen, they are skipped. Garbage is collected first, so none of it is
        kept for good; the screen unfreezes everything when it goes.
        """
        if self._gone or self._frozen:
            return
        gc.collect()
        gc.freeze()
        self._frozen = True

    # --- the stream --------------------------------------------------------------------------
    def _subscribe(self) -> None:
        """(Re)start the stream for the current time window, from an empty view."""
        since = window_start(self.window, self.clock())
        self._filter = dataclasses.replace(self._filter, level_floor=self.level_floor, since=since)
        self._buffer.clear()
        self._pending.clear()
        self.waiting = 0
        self._matches = 0
        self._received = 0
        self._lost = False
        self.paused = False
        self.view.follow = True
        self.view.clear()
        self.caught_up.clear()
        self._ready.set()
        # tail bounds what comes back either way: the last max_lines records (of the window).
        self._follow({"tail": self.max_lines, "since_time": since})
        self._search_history_for_filter()
        self._refresh_bars()

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def _follow(self, request: dict[str, Any]) -> None:
        """Follow the backend's log stream; after a break it resumes after the last line seen."""
        batches = log_batches(
            self.client, request, max_lines=self.max_lines, on_state=self._stream_changed,
            wakeup=shared_wakeup(self.app),
        )
        async for batch in batches:
            # Backpressure: one batch in flight; meanwhile the reader keeps collecting.
            await self._ready.wait()
            self._ready.clear()
            self.post_message(batch)

    def _stream_changed(self, state: StreamState) -> None:
        """The follower's news, for the status line: lost (and why), or back."""
        if state.phase == "reconnecting":
            self.post_message(LogStreamState(state.describe()))
        elif state.connected and self.problem is not None:
            self.post_message(LogStreamState(None))

    @on(LogBatch)
    def _apply_batch(self, batch: LogBatch) -> None:
        try:
            self.dropped += batch.dropped
            self._received += batch.received
            self._lost = self._lost or batch.dropped > 0
            if self.paused:
                self._pending.extend(batch.records)
                self.waiting += batch.received
            else:
                self._show(batch.records)
            if batch.caught_up:
                self.caught_up.set()
                if self.history.phase is HistoryPhase.WAITING:
                    self._start_history_search()
            self._refresh_bars()
        finally:
            self._ready.set()
            self.applied.set()

    def _show(self, records: tuple[LogRecord, ...] | list[LogRecord]) -> None:
        """Add records to the buffer and, if they pass the filter, to the view."""
        self._buffer.extend(records)
        shown = self._filter.apply(records)
        fell_off = self.view.append(shown)
        pattern = self.view.search
        if pattern is not None:
            self._matches += count_matches(shown, pattern) - count_matches(fell_off, pattern)

    # --- the history behind a filter ---------------------------------------------------------
    def _search_history_for_filter(self) -> None:
        """The filter or the window changed: forget the last history search, start a new one."""
        self.history.restart()
        self.workers.cancel_group(self, HISTORY_GROUP)
        if not self._filter.narrows:
            self.history.settle(HistoryPhase.OFF)
        elif not self.caught_up.is_set():
            # Search once the stream's own history is in memory: only then is it known which
            # lines memory lacks.
            self.history.wait()
        else:
            self._start_history_search()

    def _memory_holds_everything(self) -> bool:
        """Whether every line the backend has (in the window) is in memory: nothing to ask."""
        return self.caught_up.is_set() and self._received < self.max_lines and not self._lost

    def _start_history_search(self) -> None:
        if self._memory_holds_everything():
            self.history.settle(HistoryPhase.MEMORY)
            return
        self.history.begin()
        self._history_worker = self._search_history(
            self.history.generation, self._filter.history_request())

    @work(exclusive=True, group=HISTORY_GROUP, exit_on_error=False)
    async def _search_history(self, generation: int, request: dict[str, Any]) -> None:
        """Ask the backend's history for the last ``max_lines`` lines that pass the filter."""
        self.post_message(await search_history(
            self.client, generation, request, max_lines=self.max_lines, delay=self.history_delay))

    @on(HistoryFound)
    def _history_found(self, event: HistoryFound) -> None:
        if not self.history.is_current(event.generation):
            return  # the answer to a filter that is no longer in force
        if event.problem is not None:
            self.history.fail(self.query_text or "this filter", event.problem, refused=event.refused)
            self._refresh_bars()
            return
        self.history.settle(HistoryPhase.DONE)
        # Only what memory lacks: lines older than the oldest one held (waiting lines, while
        # paused, are newer than the buffer and appear on resume).
        held = self._buffer[0].seq if self._buffer else (
            self._pending[0].seq if self._pending else None)
        older = [r for r in event.records
                 if (held is None or r.seq < held) and self._filter.matches(r)]
        if older:
            in_memory = self._filter.apply(self._buffer)
            self.view.set_records([*older, *in_memory], keep=self.view.selected)
            # The view keeps the newest max_lines: count the history lines that stayed.
            self.history.shown = max(0, len(older) - max(0, len(older) + len(in_memory)
                                                         - self.max_lines))
            pattern = self.view.search
            self._matches = count_matches(self.view.records, pattern) if pattern else 0
        self._refresh_bars()

    @on(LogStreamState)
    def _stream_state(self, event: LogStreamState) -> None:
        self.problem = event.problem
        self._refresh_bars()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place an unexpected worker failure reaches the user."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            if event.worker.group == HISTORY_GROUP:
                if event.worker is self._history_worker:
                    self.post_message(HistoryFound(
                        self.history.generation, (), f"unexpected error {event.worker.error!r}"))
            else:
                self.problem = f"log stream failed: {event.worker.error}"
                self._refresh_bars()

    # --- bars --------------------------------------------------------------------------------
    def _refresh_bars(self) -> None:
        status = Text(no_wrap=True, overflow="ellipsis")
        if self.paused:
            status.append(" ⏸ paused ", "bold black on yellow")
            status.append(f"  {self.waiting:,} waiting", "bold yellow")
        else:
            status.append(" ● following ", "bold black on green")
        status.append(f"  range {self.window}")
        status.append(f"  level {self.level_floor + '+' if self.level_floor else 'all'}")
        shown = len(self.view.records)
        status.append(f"  {shown:,} {'line' if shown == 1 else 'lines'}")
        if not self.caught_up.is_set() and self.problem is None:
            status.append("  ⟳ loading history…", "yellow")
        if self.dropped:
            status.append(f"  dropped {self.dropped:,}", "bold red")
        flags = [name for name, on_ in (
            ("wrap", self.view.wrap), ("time", self.view.timestamps), ("source", self.view.sources)) if on_]
        if flags:
            status.append("  " + " ".join(flags), "dim")
        if self.problem:
            status.append(f"  {sanitize(self.problem)}", "bold red")
        self.query_one("#logs-status", Static).update(status)

        query = Text(no_wrap=True, overflow="ellipsis")
        if self.query_text:
            query.append(" filter ", "bold reverse")
            query.append(f" {self.query_text}  ")
        history = self.history.describe()
        if history is not None:
            query.append_text(history)
            query.append("  ")
        if self.search_text:
            query.append(" search ", "bold reverse")
            query.append(f" {self.search_text}  {self._matches:,} matching")
        if self.pattern_error:
            # Here, next to what was typed: an empty view with the reason far below read as
            # "no line matches".
            query.append(" invalid ", "bold white on red")
            query.append(f" {sanitize(self.pattern_error)}: fix it or press esc", "bold red")
        bar = self.query_one("#logs-query", Static)
        bar.update(query)
        bar.display = bool(self.query_text or self.search_text or history is not None or self.pattern_error)

        # The whole reason again below, wrapped: the bar cuts it at the terminal's edge.
        problems = [p for p in (self.pattern_error, self.history.error) if p is not None]
        error = self.query_one("#logs-error", Static)
        error.update(Text("\n".join(sanitize(p) for p in problems), style="bold"))
        error.display = bool(problems)

    # --- follow and pause --------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        """Pause (new lines wait, counted) or resume (they appear and the view jumps to the end)."""
        if self.paused:
            self._resume()
        else:
            self._pause()

    def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.view.follow = False
            self._refresh_bars()

    def _resume(self) -> None:
        self.paused = False
        self.view.follow = True
        pending = list(self._pending)
        self._pending.clear()
        self.waiting = 0
        self._show(pending)
        self.view.select(len(self.view.records) - 1)
        self.view.scroll_end(animate=False, immediate=True, x_axis=False)
        self._refresh_bars()

    # --- cursor ------------------------------------------------------------------------------
    def action_cursor(self, delta: int) -> None:
        """Move the selection; leaving the last line pauses so lines stop moving under you."""
        self._pause()
        self.view.move_cursor(delta)

    def action_page(self, direction: int) -> None:
        """Move the selection by a screenful."""
        self.action_cursor(direction * self.view.page_size())

    def action_first(self) -> None:
        """Go to the oldest line in view (pauses)."""
        self._pause()
        self.view.select(0)

    def action_last(self) -> None:
        """Go to the newest line and follow again."""
        self._resume()

    # --- filter and search -------------------------------------------------------------------
    def _open_input(self, mode: str) -> None:
        box = self.query_one("#logs-input", Input)
        self._input_mode = mode
        box.placeholder = (
            "filter: text, /regex/, sub:NAME, source:file|console — enter to close" if mode == "filter"
            else "search: text or /regex/ — enter jumps, n/N next/previous"
        )
        box.value = self.query_text if mode == "filter" else self.search_text
        self._filter_at_open = (self._filter, self.query_text) if mode == "filter" else None
        box.add_class("logs-open")
        box.focus()

    def _close_input(self) -> None:
        box = self.query_one("#logs-input", Input)
        box.remove_class("logs-open")
        self._input_mode = None
        self.view.focus()

    def action_open_filter(self) -> None:
        """Type a filter: only matching lines stay in view."""
        self._open_input("filter")

    def action_open_search(self) -> None:
        """Type a search: matches are highlighted, n/N jump between them."""
        self._open_input("search")

    @on(Input.Changed, "#logs-input")
    def _input_changed(self, event: Input.Changed) -> None:
        if self._input_mode == "filter":
            self.set_filter(event.value)
        elif self._input_mode == "search":
            self.set_search(event.value)

    @on(Input.Submitted, "#logs-input")
    def _input_submitted(self, event: Input.Submitted) -> None:
        mode = self._input_mode
        self._close_input()
        if mode == "search" and self.view.search is not None:
            self.action_search_next()

    def set_filter(self, query: str) -> None:
        """Apply a filter query; a bad regex shows the filter from before it was typed, and why."""
        try:
            new = LogFilter.parse(query, level_floor=self.level_floor, since=self._filter.since)
        except PatternError as exc:
            self.pattern_error = str(exc)
            if self._filter_at_open is not None:
                # The text typed on the way to this regex ("/[bad(") filtered as plain text and
                # matched nothing: go back to what was shown before the input opened.
                before, self.query_text = self._filter_at_open
                self._apply_filter(dataclasses.replace(
                    before, level_floor=self.level_floor, since=self._filter.since))
            self._refresh_bars()
            return
        self.pattern_error = None
        self.query_text = query.strip()
        self._apply_filter(new)

    def _apply_filter(self, new: LogFilter) -> None:
        if new == self._filter:
            # E.g. the input reopened with the same query: the history stays in view.
            self._refresh_bars()
            return
        self._filter = new
        keep = self.view.selected
        self.view.set_records(new.apply(self._buffer), keep=keep)
        pattern = self.view.search
        self._matches = count_matches(self.view.records, pattern) if pattern else 0
        self._search_history_for_filter()
        self._refresh_bars()

    def set_search(self, text: str) -> None:
        """Highlight ``text`` (or ``/regex/``); a bad regex shows why and highlights nothing new."""
        try:
            pattern = TextPattern.parse(text)
        except PatternError as exc:
            self.pattern_error = str(exc)
            self._refresh_bars()
            return
        self.pattern_error = None
        self.search_text = text if pattern else ""
        self.view.search = pattern
        self._matches = count_matches(self.view.records, pattern) if pattern else 0
        self._refresh_bars()

    def _jump(self, forward: bool) -> None:
        pattern = self.view.search
        if pattern is None:
            self.notify("No search: press / to search.", severity="warning", markup=False)
            return
        index = find_match(self.view.records, pattern, self.view.cursor, forward=forward)
        if index is None:
            self.notify(f"No line matches {self.search_text}.", severity="warning", markup=False)
            return
        self._pause()
        self.view.select(index)

    def action_search_next(self) -> None:
        """Select the next line that matches the search (wraps around)."""
        self._jump(True)

    def action_search_previous(self) -> None:
        """Select the previous line that matches the search (wraps around)."""
        self._jump(False)

    def action_cycle_level(self) -> None:
        """Show all levels, or only debug+, info+, warn+, error+."""
        self.level_floor = next_in_cycle(LEVEL_FLOORS, self.level_floor)
        self._apply_filter(dataclasses.replace(self._filter, level_floor=self.level_floor))

    def action_cycle_window(self) -> None:
        """Show all history in memory, or the last 1m, 5m, 15m, 1h (re-reads from the backend)."""
        labels = [label for label, _ in TIME_WINDOWS]
        self.window = next_in_cycle(labels, self.window)
        self._subscribe()

    def action_clear(self) -> None:
        """Close the input, or else clear the filter and the search."""
        if self._input_mode is not None:
            self._close_input()
            return
        self.pattern_error = None
        self.query_text = ""
        self.set_search("")
        self._apply_filter(LogFilter(None, (), self.level_floor, self._filter.since))

    # --- display toggles ---------------------------------------------------------------------
    def action_toggle_wrap(self) -> None:
        """Wrap long lines, or scroll sideways."""
        self.view.wrap = not self.view.wrap
        self._refresh_bars()

    def action_toggle_timestamps(self) -> None:
        """Show or hide each line's time (UTC)."""
        self.view.timestamps = not self.view.timestamps
        self._refresh_bars()

    def action_toggle_source(self) -> None:
        """Show or hide where each line came from: OpenClaw's log file, or the container's
        stdout or stderr (filter with source:file or source:console)."""
        self.view.sources = not self.view.sources
        self._refresh_bars()

    # --- detail and copy ---------------------------------------------------------------------
    def action_detail(self) -> None:
        """Open the selected line in full, JSON pretty-printed."""
        record = self.view.selected
        if record is not None:
            self.app.push_screen(LogDetailScreen(record))

    def action_copy_line(self) -> None:
        """Copy the selected line (as the program wrote it) to the clipboard (OSC 52)."""
        record = self.view.selected
        if record is None:
            self.notify("Nothing to copy.", severity="warning", markup=False)
            return
        self.app.copy_to_clipboard(record.raw)
        self.notify(f"Copied line {record.seq} ({len(record.raw):,} characters).", markup=False)

    def action_copy_last(self) -> None:
        """Copy the last N lines in view (time, level, subsystem, message) to the clipboard."""
        records = self.view.records[-self.copy_lines:]
        if not records:
            self.notify("Nothing to copy.", severity="warning", markup=False)
            return
        text = "\n".join(record.plain() for record in records)
        self.app.copy_to_clipboard(text)
        self.notify(
            f"Copied the last {len(records):,} lines ({len(text):,} characters).", markup=False
        )

