"""A file's timeline: its versions across snapshots, and the diff between any two.

Opened from the Memory screen with ``t`` on a file. The versions come from ``GET memory/log``
(a new version each time the file's content changed, appeared or went away), newest first,
under a "now" row for the file as it is. The diff follows the cursor: what the version under
it changed (from the version before it; the oldest, which has none, against now; "now" from
the newest version); with a row marked (space: a version, or now), between the marked one and
the one under the cursor, older to newer. Each diff is fetched by a worker (a newer one cancels
it), so moving through a long history never waits on the backend.

``R`` closes the timeline with the version under the cursor: the Memory screen asks for
confirmation and restores the file to it there, where the sync line shows the progress.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from moltconsole.client import BackendError
from moltconsole.screens.memory_feeds import MemorySource
from moltconsole.widgets.fitting_footer import SCREEN_SWITCHES, FittingFooter
from moltconsole.widgets.memory_format import ago, counted, day_time, diff_lines, size
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory import FileDiff, FileHistory, FileVersion

NOW = "now"
CHANGE_STYLES = {"added": "green", "changed": "yellow", "removed": "red"}


class HistoryLoaded(Message):
    """The versions of the file, or why they could not be had."""

    def __init__(self, history: FileHistory | None, problem: str | None = None) -> None:
        super().__init__()
        self.history = history
        self.problem = problem


class DiffLoaded(Message):
    """The diff from ``old`` to ``new`` (snapshot ids or "now"), or why not."""

    def __init__(self, old: str, new: str, diff: FileDiff | None, problem: str | None = None) -> None:
        super().__init__()
        self.old = old
        self.new = new
        self.diff = diff
        self.problem = problem


class TimelineScreen(Screen[FileVersion | None]):
    """The versions of ``path``; closes with the version to restore (R), or None."""

    BINDINGS = [
        Binding("space", "mark", "Mark to compare", id="memory.timeline.mark"),
        Binding("R", "restore", "Restore this version", id="memory.timeline.restore"),
        Binding("escape", "close", "Back", id="memory.timeline.close"),
    ]

    def __init__(self, source: MemorySource, path: str) -> None:
        super().__init__()
        self.source = source
        self.path = path
        self.versions: list[FileVersion] = []  # newest first
        self.marked: str | None = None  # a snapshot id, or NOW
        self.shown: tuple[str, str] | None = None  # the (old, new) of the diff on screen
        self.loaded = asyncio.Event()  # set once the versions are on screen
        self.diffed = asyncio.Event()  # set each time a diff asked for is on screen

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static(id="timeline-title")
        yield DataTable(id="timeline-versions", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="timeline-diff"):
            yield Static(id="timeline-diff-body")
        yield FittingFooter(compact=True, drop_first=SCREEN_SWITCHES, keep=("app.help",))

    def on_mount(self) -> None:
        self._title("asking the backend for its versions…")
        self.query_one("#timeline-versions").border_title = "versions"
        self.query_one("#timeline-diff").border_title = "diff"
        self.fetch_history()

    def _title(self, words: str) -> None:
        self.query_one("#timeline-title", Static).update(Text.assemble(
            ("history of ", "dim"), (sanitize(self.path), "bold"), (f" · {words}", "dim"),
        ))

    def _now(self) -> float:
        return float(getattr(self.app, "clock", time.time)())

    @work(exclusive=True, group="timeline-history")
    async def fetch_history(self) -> None:
        """Ask the backend for the file's versions."""
        try:
            self.post_message(HistoryLoaded(await self.source.log(self.path)))
        except BackendError as exc:
            self.post_message(HistoryLoaded(None, str(exc)))

    @on(HistoryLoaded)
    def _history(self, event: HistoryLoaded) -> None:
        if event.history is None:
            self._title("its versions could not be had")
            self._show_diff_text(Text(sanitize(event.problem or ""), style="bold red"), "diff")
            self.loaded.set()
            return
        self.versions = list(reversed(event.history.versions))
        if not self.versions:
            self._title("no snapshot has it yet")
        else:
            self._title(f"{counted(len(self.versions), 'version')} · space marks one to compare")
        self._fill()
        self.loaded.set()

    def _fill(self) -> None:
        table: DataTable[Any] = self.query_one(DataTable)
        table.clear(columns=True)
        now = self._now()
        table.add_column("", key="mark", width=1)  # the mark comes later: its room is kept
        for key, label in (("taken", "taken"), ("ago", ""), ("why", "why"), ("change", "change"),
                           ("size", "size")):
            table.add_column(label, key=key)
        table.add_row(self._mark(NOW), "now", "", "as it is", "", "", key=NOW)
        for version in self.versions:
            table.add_row(
                self._mark(version.snapshot), day_time(version.time), ago(version.time, now),
                sanitize(version.reason), Text(version.change, style=CHANGE_STYLES.get(version.change, "")),
                "" if version.change == "removed" else size(version.size), key=version.snapshot,
            )
        if self.versions:
            table.move_cursor(row=1)  # the newest version: what changed since it
        table.focus()

    def _mark(self, key: str) -> str:
        return "●" if key == self.marked else ""

    def _cursor_key(self) -> str | None:
        table: DataTable[Any] = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def _when(self, key: str) -> float:
        if key == NOW:
            return float("inf")
        return next((v.time for v in self.versions if v.snapshot == key), 0.0)

    def _pair(self) -> tuple[str, str] | None:
        """The (older, newer) versions to compare now, or None with nothing to compare."""
        cursor = self._cursor_key()
        if cursor is None or not self.versions:
            return None
        if self.marked is not None and self.marked != cursor:
            other = self.marked
        elif cursor == NOW:
            other = self.versions[0].snapshot  # what changed since the newest version
        else:
            keys = [v.snapshot for v in self.versions]
            at = keys.index(cursor)
            other = keys[at + 1] if at + 1 < len(keys) else NOW  # the one before it; the oldest: now
        first, second = sorted((cursor, other), key=self._when)
        return first, second

    @on(DataTable.RowHighlighted)
    def _moved(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._compare()

    def _compare(self) -> None:
        pair = self._pair()
        if pair is None:
            self.shown = None
            self._show_diff_text(Text("No snapshot has this file yet: b on the Memory screen takes one."),
                                 "diff")
            self.diffed.set()
            return
        if pair == self.shown:
            return
        self.diffed.clear()
        old, new = (self._version_name(key) for key in pair)
        self.query_one("#timeline-diff").border_title = f"diff {old} → {new} · …"
        self.fetch_diff(*pair)

    def _version_name(self, key: str) -> str:
        if key == NOW:
            return "now"
        version = next((v for v in self.versions if v.snapshot == key), None)
        return day_time(version.time) if version is not None else sanitize(key)

    @work(exclusive=True, group="timeline-diff")
    async def fetch_diff(self, old: str, new: str) -> None:
        """Ask the backend for the diff between two versions."""
        try:
            self.post_message(DiffLoaded(old, new, await self.source.diff(self.path, old, new)))
        except BackendError as exc:
            self.post_message(DiffLoaded(old, new, None, str(exc)))

    @on(DiffLoaded)
    def _diff(self, event: DiffLoaded) -> None:
        if self._pair() != (event.old, event.new):
            return  # the cursor moved on; its diff is on its way
        self.shown = (event.old, event.new)
        title = f"diff {self._version_name(event.old)} → {self._version_name(event.new)}"
        diff = event.diff
        if diff is None:
            self._show_diff_text(Text(sanitize(event.problem or ""), style="bold red"), title)
        elif diff.same:
            self._show_diff_text(Text("The same in both: nothing changed between them.", style="dim"), title)
        elif diff.binary:
            self._show_diff_text(Text(sanitize(diff.text)), title)
        else:
            self._show_diff_text(diff_lines(diff.text), title)
        self.diffed.set()

    def _show_diff_text(self, text: Text, title: str) -> None:
        self.query_one("#timeline-diff-body", Static).update(text)
        self.query_one("#timeline-diff").border_title = title
        self.query_one("#timeline-diff", VerticalScroll).scroll_home(animate=False)

    # --- actions -----------------------------------------------------------------------------
    def action_mark(self) -> None:
        """Mark the version under the cursor (again: unmark) to compare others with it."""
        key = self._cursor_key()
        if key is None:
            return
        self.marked = None if self.marked == key else key
        table: DataTable[Any] = self.query_one(DataTable)
        for row_key in table.rows:
            table.update_cell(row_key, "mark", self._mark(str(row_key.value)))
        self.shown = None
        self._compare()

    def action_restore(self) -> None:
        """Close with the version under the cursor, for the Memory screen to restore it."""
        key = self._cursor_key()
        version = next((v for v in self.versions if v.snapshot == key), None)
        if version is None:
            self.notify("Choose a version to restore (the row \"now\" is the file as it is).",
                        markup=False)
            return
        if version.change == "removed":
            self.notify("The file is not in that snapshot (it had been removed): choose a version "
                        "that has it.", severity="warning", markup=False)
            return
        self.dismiss(version)

    def action_close(self) -> None:
        """Back to the Memory screen."""
        self.dismiss(None)
