"""Where the database and conversation views get their data, and the messages their workers post.

No widgets here. Each function asks the backend for one thing through the sandbox's memory
client (:class:`moltconsole.memory_client.MemoryClient`: ``tables``, ``rows``, ``sessions``,
``conversation``) and answers with one message that holds either the answer or why not, in
the backend's words. The views' workers post these; their handlers (which own the widgets)
apply them. Each message carries the number of the request that asked, so an answer that
arrives after the user moved on (another table, another session) is dropped.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from textual.message import Message

from moltconsole.client import BackendError
from moltconsole_shared.wire.memory_db import Conversation, RowsPage, SessionList, TableList

PAGE_ROWS = 100  # rows of a table asked for at once (PageDown and PageUp move by this many)

T = TypeVar("T")


class DatabaseSource(Protocol):
    """What the database and conversation views need of the memory client."""

    async def tables(self, path: str, snapshot: str | None = None) -> TableList: ...

    async def rows(
        self, path: str, table: str, offset: int = 0, limit: int = 100, snapshot: str | None = None,
    ) -> RowsPage: ...

    async def sessions(self, snapshot: str | None = None) -> SessionList: ...

    async def conversation(
        self, session: str, snapshot: str | None = None, internal: bool = False,
    ) -> Conversation: ...


class Fetched(Message, Generic[T], bubble=False):
    """An answer (``answer``) to request number ``request``, or why there is none (``problem``).

    Posted by a view to itself; it does not bubble up to the screen."""

    def __init__(self, request: int, answer: T | None, problem: str | None = None) -> None:
        super().__init__()
        self.request = request
        self.answer = answer
        self.problem = problem


class TablesListed(Fetched[TableList]):
    """A database's tables, or why they could not be listed."""


class RowsFetched(Fetched[RowsPage]):
    """A page of one table's rows, or why it could not be read."""


class SessionsListed(Fetched[SessionList]):
    """OpenClaw's sessions, or why they could not be listed."""


class ConversationFetched(Fetched[Conversation]):
    """One session's turns, or why they could not be read."""


async def list_tables(source: DatabaseSource, request: int, path: str, snapshot: str | None) -> TablesListed:
    """The tables of the database at ``path``, as a message."""
    try:
        return TablesListed(request, await source.tables(path, snapshot))
    except BackendError as exc:
        return TablesListed(request, None, str(exc))


async def fetch_rows(
    source: DatabaseSource, request: int, path: str, table: str, offset: int, snapshot: str | None,
) -> RowsFetched:
    """One page of ``table``'s rows from ``offset``, as a message."""
    try:
        return RowsFetched(request, await source.rows(path, table, offset, PAGE_ROWS, snapshot))
    except BackendError as exc:
        return RowsFetched(request, None, str(exc))


async def list_sessions(source: DatabaseSource, request: int, snapshot: str | None) -> SessionsListed:
    """OpenClaw's sessions in the state directory (now, or in ``snapshot``), as a message."""
    try:
        return SessionsListed(request, await source.sessions(snapshot))
    except BackendError as exc:
        return SessionsListed(request, None, str(exc))


async def fetch_conversation(
    source: DatabaseSource, request: int, session: str, snapshot: str | None, internal: bool,
) -> ConversationFetched:
    """One session's turns (OpenClaw's internal entries too, with ``internal``), as a message."""
    try:
        return ConversationFetched(request, await source.conversation(session, snapshot, internal))
    except BackendError as exc:
        return ConversationFetched(request, None, str(exc))
