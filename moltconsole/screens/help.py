"""The help overlay: every key that works here, generated from the live bindings."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def binding_rows(screen: Screen[Any]) -> list[tuple[str, str, str]]:
    """(keys, description, binding id) for the bindings active on ``screen``, app ones last."""
    rows: list[tuple[str, str, str, int]] = []
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description:
            continue
        name = binding.id or binding.action
        if name in seen:
            continue
        seen.add(name)
        keys = screen.app.get_key_display(binding) if binding.key == key else key
        # This screen's keys first, then the app's, then the focused widget's (cursor keys).
        rank = 0 if active.node is screen else 1 if active.node is screen.app else 2
        rows.append((keys, binding.description, binding.id or "", rank))
    rows.sort(key=lambda row: row[3])
    return [row[:3] for row in rows]


class HelpScreen(ModalScreen[None]):
    """Keys for the screen underneath; remap any of them by id in config.toml [console.keymap]."""

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close"),
    ]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), expand=False, show_header=True,
                      header_style="bold")
        table.add_column(Text("key"), style="bold", no_wrap=True)
        table.add_column(Text("does"))
        table.add_column(Text("binding id (remap in [console.keymap])"), style="dim")
        for keys, description, binding_id in binding_rows(self.under):
            table.add_row(Text(keys), Text(description), Text(binding_id))
        with VerticalScroll(id="help-box"):
            yield Static(Text("Keys", style="bold"), id="help-title")
            yield Static(table)
            yield Static(Text("ctrl+p opens the command palette with the same actions.",
                              style="dim"))

    async def action_dismiss(self, result: None = None) -> None:
        """Close the overlay."""
        self.dismiss(result)
