"""The view of a SQLite database in the Memory screen: where the database browser plugs in.

The Memory screen chooses a file's view by its kind (:mod:`moltconsole.widgets.memory_kinds`);
for a SQLite database (OpenClaw's ``state/openclaw.sqlite`` and each agent's
``openclaw-agent.sqlite``: sessions, transcripts, the memory index) it never fetches the file:
it calls :func:`database_view` with where the database is (:class:`DatabaseRef`) and the
sandbox's memory client, and mounts the widget it returns in place of the file's text. The
database browser (tables with row counts, sessions and transcripts as conversations) replaces
the body of :func:`database_view`, reading through the backend's database routes; until then
it says what is coming and what can be done now.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from moltconsole.widgets.memory_format import size


@dataclass(frozen=True, slots=True)
class DatabaseRef:
    """A database to browse: its path in the state directory, the view (``snapshot`` None:
    now) and its size in bytes."""

    path: str
    snapshot: str | None
    size: int


def database_view(ref: DatabaseRef, source: object) -> Widget:
    """The widget that shows database ``ref``, reading through ``source`` (the memory client)."""
    del source  # the browser will read tables and rows through it
    text = Text.assemble(
        ("SQLite database", "bold"), f" · {size(ref.size)}\n\n",
        "Browsing databases here (tables with their row counts, and OpenClaw's sessions and "
        "transcripts as conversations) is coming in a later version of the console.\n\n",
        "Meanwhile: t shows this file's versions across snapshots, and R restores it.",
    )
    return Static(text, classes="memory-database-placeholder")
