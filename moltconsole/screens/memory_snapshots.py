"""The snapshot picker of the Memory screen: the sandbox's snapshots, newest first.

It asks the backend for them when it opens (a worker posts the answer or why not), puts the
cursor on the snapshot shown (or on "now") and closes with the one chosen on enter: a
:class:`~moltconsole_shared.wire.memory.SnapshotSummary`, or :data:`NOW` for the state
directory as it is (offered only where it makes sense: choosing what to show, not what to
restore from). Escape closes it without a choice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from moltconsole.client import BackendError
from moltconsole.screens.memory_feeds import MemorySource
from moltconsole.widgets.memory_format import ago, counted, day_time, size
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory import SnapshotList, SnapshotSummary

NOW = "now"
Choice = SnapshotSummary | str | None


class SnapshotsListed(Message):
    """The snapshots, or why they could not be had."""

    def __init__(self, snapshots: SnapshotList | None, problem: str | None = None) -> None:
        super().__init__()
        self.snapshots = snapshots
        self.problem = problem


class SnapshotPickerScreen(ModalScreen[Choice]):
    """Answers the chosen snapshot (or :data:`NOW`) on enter, None on escape."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="memory.snapshots.close"),
    ]

    def __init__(self, source: MemorySource, title: str, *, current: str | None = None,
                 offer_now: bool = True) -> None:
        super().__init__()
        self.source = source
        self.title_text = title
        self.current = current
        self.offer_now = offer_now
        self.snapshots: list[SnapshotSummary] = []
        self.listed = asyncio.Event()  # set once the answer is on screen

    def compose(self) -> ComposeResult:
        with Vertical(id="snapshots-box"):
            yield Static(Text(self.title_text, style="bold"), id="snapshots-title")
            yield Static(Text("asking the backend…"), id="snapshots-note")
            yield DataTable(id="snapshots-table", cursor_type="row", zebra_stripes=True)
            yield Static(Text.assemble(("enter", "bold"), " choose   ", ("esc", "bold"), " close"),
                         id="snapshots-keys")

    def on_mount(self) -> None:
        self.query_one(DataTable).display = False
        self.fetch()

    @work(exclusive=True, group="snapshots")
    async def fetch(self) -> None:
        """Ask the backend for the snapshots."""
        try:
            self.post_message(SnapshotsListed(await self.source.snapshots()))
        except BackendError as exc:
            self.post_message(SnapshotsListed(None, str(exc)))

    @on(SnapshotsListed)
    def _listed(self, event: SnapshotsListed) -> None:
        note = self.query_one("#snapshots-note", Static)
        if event.snapshots is None:
            note.update(Text(sanitize(event.problem or ""), style="bold"))
            self.listed.set()
            return
        self.snapshots = list(event.snapshots.snapshots)
        if not self.snapshots:
            note.update(Text("No snapshots yet: b on the Memory screen takes one now."))
            if not self.offer_now:
                self.listed.set()
                return
        else:
            shown = "; * marks the one shown" if self.offer_now else ""
            note.update(Text(f"{counted(len(self.snapshots), 'snapshot')}, newest first{shown}."))
        self._fill()
        self.listed.set()

    def _fill(self) -> None:
        table: DataTable[Any] = self.query_one(DataTable)
        table.clear(columns=True)
        now = float(getattr(self.app, "clock", time.time)())
        wide = self.app.size.width >= 120
        table.add_column("", key="mark", width=1)
        table.add_column("taken", key="taken")
        table.add_column("", key="ago")
        table.add_column("why", key="why")
        table.add_column("files", key="files")
        table.add_column("size", key="size")
        if wide:
            table.add_column("id", key="id")
        cursor = 0
        if self.offer_now:
            row = ["*" if self.current is None else "", "now", "", "as it is", "", ""]
            table.add_row(*row, *([""] if wide else []), key=NOW)
        for snap in self.snapshots:
            if snap.id == self.current:
                cursor = table.row_count
            row = [
                "*" if snap.id == self.current else "", day_time(snap.time), ago(snap.time, now),
                sanitize(snap.reason), f"{snap.files:,}", size(snap.size),
            ]
            table.add_row(*row, *([sanitize(snap.id)] if wide else []), key=snap.id)
        table.display = True
        table.move_cursor(row=cursor)
        table.focus()

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key == NOW:
            self.dismiss(NOW)
            return
        self.dismiss(next((s for s in self.snapshots if s.id == key), None))

    def action_close(self) -> None:
        """Close without choosing."""
        self.dismiss(None)
