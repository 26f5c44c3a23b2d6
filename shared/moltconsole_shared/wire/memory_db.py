"""A SQLite database of the agent's state, and OpenClaw's sessions, on the wire (issue 11).

The Memory screen browses the databases in a sandbox's state directory (now, or in a
snapshot) read-only: the tables with their row counts and columns (:class:`TableList`), a page
of one table's rows (:class:`RowsPage`), OpenClaw's sessions (:class:`SessionList`) and one
session's transcript as a conversation (:class:`Conversation`).

Every value a database holds can be anything the agent wrote. The backend sends it shown-safe:
text with its control characters replaced by visible symbols (newlines too, in a cell), long
text cut with its full length said, binary data as a short hex preview with its size, and
values in columns that hold secrets (tokens, private keys, passwords) hidden, as an
:class:`ElidedValue`. Transcript text keeps its newlines (other controls are replaced), and
keys that look like API keys or private keys inside it are hidden.

Times are Unix seconds (float); money is integer nano-dollars (1e-9 USD), as in ``records``;
token counts are integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.schema import WireSchema

TableKind = Literal["table", "view", "virtual"]
ElidedKind = Literal["text", "blob", "secret"]
TurnRole = Literal["user", "assistant", "tool", "system"]
# Why a session is no longer live: OpenClaw archived its transcript when it was deleted or
# reset ("bak": an older OpenClaw's backup copy).
ArchiveReason = Literal["deleted", "reset", "bak"]


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, its declared type ("" when none), and whether it is part of the
    primary key or may not be NULL."""

    name: StrictStr
    type: StrictStr = ""
    primary_key: StrictBool = False
    not_null: StrictBool = False


@dataclass(frozen=True)
class TableInfo:
    """A table (or view, or virtual table) with its row count and columns.

    ``rows`` is None when the rows could not be counted: ``note`` says why (counting took too
    long, or the table needs a SQLite module this backend lacks).
    """

    name: StrictStr
    kind: TableKind
    rows: StrictInt | None
    columns: list[ColumnInfo]
    note: StrictStr = ""


@dataclass(frozen=True)
class TableList:
    """A database's tables, views and virtual tables, sorted by name."""

    tables: list[TableInfo]


@dataclass(frozen=True)
class ElidedValue:
    """A value not shown whole.

    ``text``: text longer than the limit; ``preview`` is its beginning, ``size`` its length in
    characters. ``blob``: binary data; ``preview`` is its first bytes in hex, ``size`` its
    length in bytes. ``secret``: a value in a column that holds secrets; ``preview`` is empty,
    ``size`` its length (characters, or bytes for binary data).
    """

    kind: ElidedKind
    preview: StrictStr
    size: StrictInt


# One cell: SQL NULL, an integer, a real, text (shown-safe), or a value not shown whole.
Cell = StrictInt | StrictFloat | StrictStr | ElidedValue | None


@dataclass(frozen=True)
class RowsPage:
    """Rows ``offset`` to ``offset + len(rows)`` of one table, in its storage order, under its
    column names. ``total`` is None when counting took too long."""

    table: StrictStr
    columns: list[StrictStr]
    rows: list[list[Cell]]
    offset: StrictInt
    total: StrictInt | None


@dataclass(frozen=True)
class TurnUsage:
    """The tokens of one model response as OpenClaw recorded them: ``prompt`` (uncached
    input), ``cache_read``, ``cache_write`` and ``output``."""

    prompt: StrictInt = 0
    cache_read: StrictInt = 0
    cache_write: StrictInt = 0
    output: StrictInt = 0


@dataclass(frozen=True)
class Turn:
    """One step of a conversation.

    ``role``: ``user``; ``assistant`` (its text, or one tool call: ``tool_name`` and
    ``tool_input``, the arguments as JSON text); ``tool`` (a tool's result: ``tool_name``,
    ``text``, ``is_error``); ``system`` (what is not a message: a model change, a reset, a
    compaction summary, and any entry of a kind this backend does not know, shown ``raw``:
    ``text`` is the entry as stored). ``kind`` is OpenClaw's entry type (``message``,
    ``reset``, ``compaction``, ``model_change``, ``custom``...), or ``unreadable``.

    A response's ``usage``, ``cost_nanos`` (OpenClaw's own estimate, from the prices in its
    config) and ``model`` are on its first turn only, so sums never count one response twice.
    """

    role: TurnRole
    kind: StrictStr
    time: StrictFloat | None
    text: StrictStr
    tool_name: StrictStr | None = None
    tool_input: StrictStr | None = None
    is_error: StrictBool = False
    thinking: StrictStr = ""
    usage: TurnUsage | None = None
    cost_nanos: StrictInt | None = None
    model: StrictStr | None = None
    raw: StrictBool = False
    entry_id: StrictStr | None = None


@dataclass(frozen=True)
class SessionInfo:
    """One OpenClaw session (one transcript).

    ``ref`` names it for ``conversation`` (unique within a state directory; the same session
    id can have a live transcript and archived ones). ``key`` is OpenClaw's session key
    (``agent:main:main``); ``title`` its label or display name ("" when it has none);
    ``first_line`` the first line of its first user message. ``turns`` counts the user,
    assistant and tool turns; ``cost_nanos`` sums what OpenClaw recorded (None: no response
    carried a cost). ``archived`` says why the transcript is an archive; ``problem`` says
    what could not be read (the rest is shown).
    """

    ref: StrictStr
    id: StrictStr
    agent: StrictStr
    key: StrictStr = ""
    title: StrictStr = ""
    first_line: StrictStr = ""
    started: StrictFloat | None = None
    updated: StrictFloat | None = None
    turns: StrictInt = 0
    cost_nanos: StrictInt | None = None
    model: StrictStr = ""
    archived: ArchiveReason | None = None
    problem: StrictStr = ""


@dataclass(frozen=True)
class SessionList:
    """OpenClaw's sessions in a state directory, the most recently updated first, and what
    could not be read (an agent's damaged database, say: its sessions are missing from the
    list, the others are there)."""

    sessions: list[SessionInfo]
    problems: list[StrictStr] = field(default_factory=list)


@dataclass(frozen=True)
class Conversation:
    """One session and its turns, oldest first. ``omitted`` counts the oldest turns left out
    to keep the answer bounded."""

    session: SessionInfo
    turns: list[Turn] = field(default_factory=list)
    omitted: StrictInt = 0


TABLE_LIST: WireSchema[TableList] = WireSchema(TableList, "table list")
ROWS_PAGE: WireSchema[RowsPage] = WireSchema(RowsPage, "rows page")
SESSION_LIST: WireSchema[SessionList] = WireSchema(SessionList, "session list")
CONVERSATION: WireSchema[Conversation] = WireSchema(Conversation, "conversation")
