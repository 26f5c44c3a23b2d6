"""One log line in full: its fields, and its raw text, JSON pretty-printed and highlighted.

The Logs screen opens it on the selected line. Everything shown came from the agent, so it is
inert ``Text``: JSON is parsed, dumped again and sanitised line by line, since parsing turns
escaped control characters back into real ones.
"""

from __future__ import annotations

import json

from rich.highlighter import JSONHighlighter
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from moltconsole.logfilter import LogRecord, format_time
from moltconsole_shared.untrusted import sanitize


def pretty_body(record: LogRecord) -> Text:
    """The raw line, pretty-printed and highlighted when it is JSON; always inert ``Text``."""
    try:
        parsed = json.loads(record.raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict | list):
        # Parsing decoded escapes like \u001b / \u009b back into controls: sanitise the output
        # again, line by line (sanitize would turn the newlines of the layout into symbols).
        dumped = json.dumps(parsed, indent=2, ensure_ascii=False)
        text = Text("\n".join(sanitize(line) for line in dumped.split("\n")))
        return JSONHighlighter()(text)
    return Text(record.raw)


class LogDetailScreen(ModalScreen[None]):
    """One log line in full: its fields, and its raw text (JSON pretty-printed)."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss", "Close", id="logs.detail.close"),
        Binding("y", "copy", "Copy", id="logs.detail.copy"),
    ]

    def __init__(self, record: LogRecord) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        record = self.record
        fields = Table.grid(padding=(0, 2))
        fields.add_column(style="bold", no_wrap=True)
        fields.add_column()
        fields.add_row("time", format_time(record.time, full=True))
        fields.add_row("level", record.level or "-")
        fields.add_row("subsystem", Text(record.subsystem or "-"))
        fields.add_row("source", Text(record.source or "-"))
        fields.add_row("seq", str(record.seq))
        if record.cut:
            fields.add_row("cut", "yes: the backend kept only the start of this line")
        with Vertical(id="logs-detail"):
            yield Static(fields, id="logs-detail-fields")
            with VerticalScroll(id="logs-detail-body"):
                yield Static(pretty_body(record))
            yield Footer()

    def on_mount(self) -> None:
        self.query_one("#logs-detail-body").focus()

    def action_copy(self) -> None:
        """Copy the line as shown here (pretty JSON) to the clipboard."""
        text = pretty_body(self.record).plain
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied line {self.record.seq} ({len(text):,} characters).", markup=False)
