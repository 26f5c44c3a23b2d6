"""The sandbox picker: the backend's sandboxes in a small list; enter shows the one chosen.

It asks the backend for the list when it opens (in a worker, which posts what it found), marks
the sandbox shown and puts the cursor on it. Enter closes it with the chosen name (the app
switches every screen to it); escape closes it without a choice. When the list cannot be had it
says why (no backend, or one too old to have several sandboxes, which must be restarted).
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

from moltconsole.sandbox_list import SandboxListing, SandboxSource, list_sandboxes
from moltconsole.widgets.sandbox_table import PICKER_COLUMNS, SandboxTable


class PickerListed(Message):
    """The picker's answer from the backend: the sandboxes, or why there are none to show."""

    def __init__(self, listing: SandboxListing) -> None:
        super().__init__()
        self.listing = listing


class SandboxPickerScreen(ModalScreen[str | None]):
    """Answers the chosen sandbox's name on enter, None on escape."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="sandboxes.picker.close"),
    ]

    def __init__(self, client: SandboxSource, current: str | None) -> None:
        super().__init__()
        self.client = client
        self.current = current
        self.listing: SandboxListing | None = None  # None until the backend answered
        self.listed = asyncio.Event()  # set once the answer is on screen

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static(Text("Sandboxes", style="bold"), id="picker-title")
            yield Static(Text("asking the backend…"), id="picker-note")
            yield SandboxTable(PICKER_COLUMNS, id="picker-table")
            yield Static(Text.assemble(("enter", "bold"), " show it   ", ("esc", "bold"), " close"),
                         id="picker-keys")

    def on_mount(self) -> None:
        self.query_one(SandboxTable).display = False
        self.fetch()

    @work(exclusive=True, group="picker")
    async def fetch(self) -> None:
        """Ask the backend for its sandboxes."""
        self.post_message(PickerListed(await list_sandboxes(self.client)))

    @on(PickerListed)
    def _listed(self, event: PickerListed) -> None:
        listing = event.listing
        self.listing = listing
        app: Any = self.app
        learn = getattr(app, "sandboxes_listed", None)
        if callable(learn):
            learn(listing)  # the app learns the default's name, or that the one shown is gone
        note = self.query_one("#picker-note", Static)
        table = self.query_one(SandboxTable)
        if listing.problem is not None:
            note.update(Text(listing.problem, style="bold"))
            self.query_one("#picker-keys", Static).update(Text.assemble(("esc", "bold"), " close"))
            self.listed.set()
            return
        if len(listing.sandboxes) == 1:
            note.update(Text(
                f"This backend has one sandbox, {listing.sandboxes[0].name}. Add another with "
                "'moltconsole create NAME'."
            ))
        else:
            note.update(Text(f"{len(listing.sandboxes)} sandboxes; * marks the one shown. "
                             "A on the Dashboard shows them all with their figures."))
        table.display = True
        now = float(getattr(app, "clock", time.time)())
        table.show(listing.sandboxes, self.current, now)
        table.focus()
        self.listed.set()

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(event.row_key.value)

    def action_close(self) -> None:
        """Close without choosing."""
        self.dismiss(None)
