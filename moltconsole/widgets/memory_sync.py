"""The Memory screen's sync status, always in view at its top: the last snapshot, what is
pending, the bucket, the last error, and a progress bar while a long operation runs.

It shows what it is given (:meth:`SyncStatus.show`); the screen polls the backend. When the
status cannot be had, the reason takes the line (``problem``) until it can.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from moltconsole.widgets.memory_format import operation_words, sync_line
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory import MemoryStatus


class SyncStatus(Vertical):
    """One or two lines of sync status, and a progress bar under them while something runs."""

    def compose(self) -> ComposeResult:
        yield Static(Text("memory: asking the backend…", style="dim"), id="memory-sync-line")

    def show(self, status: MemoryStatus | None, now: float, problem: str | None = None) -> None:
        """Show ``status`` (at time ``now``), or ``problem`` in its place."""
        line = self.query_one("#memory-sync-line", Static)
        bars = self.query(ProgressBar)
        if problem is not None:
            line.update(Text(sanitize(problem), style="bold red"))
            bars.set(display=False)
            return
        if status is None:
            return
        line.update(sync_line(status, now))
        operation = status.operation
        bars.set(display=operation is not None)
        if operation is not None:
            if bars:
                bar = bars.first(ProgressBar)
            else:  # the first operation seen: the bar is made now, not with the screen
                bar = ProgressBar(show_eta=False, id="memory-progress")
                self.mount(bar)
            bar.tooltip = operation_words(operation)
            if operation.total > 0:
                bar.update(total=operation.total, progress=min(operation.done, operation.total))
            else:
                bar.update(total=None)  # not known yet: the bar pulses
