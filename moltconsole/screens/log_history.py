"""Where the Logs screen's search of the backend's history stands, for the current filter.

A filter that narrows the view looks further back than memory: the screen asks the backend's
on-disk history for the matches (see :mod:`moltconsole.screens.log_feeds`). :class:`HistorySearch`
holds that search's state and nothing of Textual's widgets: its :class:`HistoryPhase`, how many
lines of the view it added, why it failed, which filter change it answers (its generation:
older answers are ignored) and an event set whenever a search ends (tests await it).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from rich.text import Text


class HistoryPhase(StrEnum):
    """One step of a history search."""

    OFF = "off"  # no filter narrows the view: nothing to search
    WAITING = "waiting"  # for the stream's own history first: only then is it known what memory lacks
    SEARCHING = "searching"
    DONE = "done"
    MEMORY = "memory"  # memory holds every line the backend has: nothing was asked
    FAILED = "failed"  # error says why


class HistorySearch:
    """The history search for the filter in force; each filter change starts a new one."""

    def __init__(self) -> None:
        self.phase = HistoryPhase.OFF
        self.shown = 0  # lines in view that came from the history search
        self.error: str | None = None
        self.generation = 0
        self.settled = asyncio.Event()  # set when a search ends

    def restart(self) -> int:
        """Forget the last search (its answer will be ignored); the new generation."""
        self.generation += 1
        self.shown = 0
        self.error = None
        return self.generation

    def is_current(self, generation: int) -> bool:
        """Whether an answer is for the filter in force."""
        return generation == self.generation

    def settle(self, phase: HistoryPhase) -> None:
        """End the search in ``phase`` (off, memory or done)."""
        self.phase = phase
        self.settled.set()

    def wait(self) -> None:
        """Search once the stream has sent its own history."""
        self.phase = HistoryPhase.WAITING
        self.settled.clear()

    def begin(self) -> None:
        """The backend is being asked."""
        self.phase = HistoryPhase.SEARCHING
        self.settled.clear()

    def fail(self, what: str, problem: str, *, refused: bool) -> None:
        """The search failed: say why and what the view shows instead."""
        self.phase = HistoryPhase.FAILED
        self.settled.set()
        if refused:
            self.error = (
                f"The backend cannot search its history for {what}: {problem}. "
                "Showing the matching lines in memory only."
            )
        else:
            self.error = (
                f"Searching the history for {what} failed: {problem}. Showing the "
                "matching lines in memory only; change the filter to try again."
            )

    def describe(self) -> Text | None:
        """Where the search stands, for the query bar; None when there is none."""
        phase = self.phase
        if phase is HistoryPhase.OFF:
            return None
        if phase in (HistoryPhase.WAITING, HistoryPhase.SEARCHING):
            return Text("⟳ searching the history…", style="bold yellow")
        if phase is HistoryPhase.MEMORY:
            return Text("history: all in memory", style="dim")
        if phase is HistoryPhase.FAILED:
            return Text("history: not searched", style="bold red")
        if self.shown:
            return Text(f"+{self.shown:,} from history", style="bold green")
        return Text("history: no older matches", style="dim")
