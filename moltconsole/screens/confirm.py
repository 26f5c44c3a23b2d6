"""A yes/no question that names what an action keeps and what it removes."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmScreen(ModalScreen[bool]):
    """Answers True on y, False on n or escape."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, action: str) -> None:
        super().__init__()
        self.question = question
        self.action_name = action

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-question")
            yield Static(Text.assemble(("y", "bold"), f" {self.action_name}   ",
                                       ("n", "bold"), " keep everything as it is"),
                         id="confirm-keys")

    def on_mount(self) -> None:
        # Toasts are drawn over every screen: one left over would hide part of the question
        # (who opens it clears them first too, so the screen behind shows none).
        self.app.clear_notifications()

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)
