"""The view of a SQLite database in the Memory screen: where the database browser plugs in.

The Memory screen chooses a file's view by its kind (:mod:`moltconsole.widgets.memory_kinds`);
for a SQLite database (OpenClaw's ``state/openclaw.sqlite`` and each agent's
``openclaw-agent.sqlite``: sessions, transcripts, the memory index) it never fetches the file:
it calls :func:`database_view` with where the database is (:class:`DatabaseRef`) and the
sandbox's memory client, and mounts the widget it returns in place of the file's text: the
database browser (:class:`~moltconsole.widgets.database_view.DatabaseView`: tables with row
counts, and for an agent's database its sessions and transcripts as conversations), reading
through the backend's database routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from textual.widget import Widget

from moltconsole.widgets.database_feeds import DatabaseSource
from moltconsole.widgets.database_view import DatabaseView


@dataclass(frozen=True, slots=True)
class DatabaseRef:
    """A database to browse: its path in the state directory, the view (``snapshot`` None:
    now) and its size in bytes."""

    path: str
    snapshot: str | None
    size: int


def database_view(ref: DatabaseRef, source: object) -> Widget:
    """The widget that shows database ``ref``, reading through ``source`` (the memory client)."""
    return DatabaseView(cast(DatabaseSource, source), ref.path, ref.snapshot, classes="memory-database")
