"""OpenClaw's sessions and their transcripts, read from a state directory (now, or as a
snapshot has it), for the Memory screen: the list of sessions, and one session as a
conversation of user, assistant, tool and system turns with the usage and cost each response
carries.

Where OpenClaw 2026.9.6 keeps them (seen by running real agent turns; the fixture in
``tests/unit/fixtures/openclaw_state`` is such a run):

- ``agents/<agent>/agent/openclaw-agent.sqlite`` (WAL mode), per agent:
  ``session_nodes`` (one row per session key such as ``agent:main:main``: its current session
  id, ``label``, ``display_name``, and the whole session entry as ``entry_json``);
  ``session_windows`` (one row per transcript, by session id: its key, ``created_at`` and
  ``updated_at`` in milliseconds, ``model_provider``, ``model``, ``display_name``);
  ``transcript_events`` (the transcript: ``session_id``, ``seq``, and each entry as JSON in
  ``event_json``, or, for an entry of 1 KiB or more that compresses, zstd-compressed in
  ``event_zstd`` with its length in ``event_utf8_bytes``);
  ``session_transcript_archives`` (the transcript of a deleted or reset session, as JSON
  lines, plain or zstd, in ``archive_blob``);
  ``session_transcript_cold_archives`` (a transcript moved out of ``transcript_events``, as
  zstd JSON lines of ``{"kind": "event", "row": {"seq", "event_json", "created_at"}}`` records,
  in ``archive_blob`` or in ``agents/<agent>/sessions/cold/<sha256>.jsonl.zst``).
- ``agents/<agent>/sessions/``: the archives as files too
  (``<session id>.jsonl.<deleted|reset|bak>.<time>[.<generation>][.zst]``), and, from older
  OpenClaw versions, live transcripts as ``<session id>.jsonl``.

A transcript is a list of entries (one JSON object each, one per line in a file): a header
``{"type": "session", "id", "timestamp", "cwd"}``, then entries with ``id``, ``parentId`` and an
ISO ``timestamp``: ``message`` (``message.role`` is ``user``, ``assistant`` with content
blocks ``text``, ``thinking`` and ``toolCall`` and its ``usage`` {``input``, ``output``,
``cacheRead``, ``cacheWrite``, ``cost`` {..., ``total`` in USD}}, ``toolResult``,
``bashExecution`` or ``custom``), ``model_change``, ``thinking_level_change``, ``reset``,
``compaction``, ``branch_summary``, ``custom_message``, and ``custom`` (OpenClaw's own
bookkeeping, not part of the conversation: shown only on request).

Everything here was written by the agent, so it is read as untrusted: any entry of another
shape becomes a raw system turn, text is made safe to show (control characters replaced, keys
hidden, long text cut), compressed data is decompressed only up to a limit, and files are read
without following symbolic links. One unreadable part (a damaged database, a missing archive)
is said in ``problems`` or in a session's ``problem``; the rest is still shown.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import zstandard

from moltconsole_backend.memory.sqlite_view import (
    ReadConnection,
    Source,
    SqliteViewError,
    hide_secrets,
    read_database,
)
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory_db import (
    ArchiveReason,
    Conversation,
    SessionInfo,
    SessionList,
    Turn,
    TurnUsage,
)
from moltconsole_shared.wire.records import NANOS_PER_USD

MAX_TEXT = 50_000  # characters of one turn's text
MAX_TOOL_INPUT = 10_000  # characters of a tool call's arguments as JSON
MAX_RAW = 4_000  # characters of an entry shown raw
MAX_FILE = 64 * 1024 * 1024  # bytes of one transcript file or archive, decompressed
MAX_EVENT = 4 * 1024 * 1024 + 1  # bytes of one compressed entry, decompressed (OpenClaw's own limit)
MAX_TURNS = 2_000  # turns of one conversation (the newest are kept)
MAX_FIRST_LINE = 200
SESSIONS_SECONDS = 60.0  # reading every session of one agent database
AGENT_DB = "openclaw-agent.sqlite"
_DB_PATH = re.compile(r"^agents/([^/]+)/agent/openclaw-agent\.sqlite$")
_FILE_PATH = re.compile(r"^agents/([^/]+)/sessions/([^/]+\.jsonl(?:\.[^/]*)?)$")
_COLD_PATH = re.compile(r"^agents/([^/]+)/sessions/cold/([0-9a-f]{64}\.jsonl\.zst)$")
_ARCHIVE_REASONS: tuple[ArchiveReason, ...] = ("deleted", "reset", "bak")
# Entry types that are OpenClaw's bookkeeping rather than the conversation.
_INTERNAL = frozenset({"custom", "label", "session_info", "leaf"})


class TranscriptError(Exception):
    """A session that cannot be shown; the message says what happened and what to do."""


class NoSuchSession(TranscriptError):
    """No session by that ref in this state directory (or snapshot)."""


class StateFiles(Protocol):
    """The files of a state directory that hold sessions, wherever they are."""

    def names(self) -> Iterable[str]:
        """Relative, '/'-separated paths of the regular files (only those under ``agents/``
        matter here)."""
        ...

    def read(self, name: str, limit: int) -> bytes:
        """The file's content; ValueError if it is larger than ``limit`` bytes."""
        ...

    def database(self, name: str) -> Source:
        """The database file as :mod:`sqlite_view` reads it: its path, or its content."""
        ...


class StateDirectory:
    """A live state directory on the host. Only ``agents/*/agent/`` and ``agents/*/sessions/``
    (with ``cold/``) are listed, without following symbolic links."""

    def __init__(self, root: Path, max_files: int = 10_000) -> None:
        self.root = root
        self.max_files = max_files

    def names(self) -> Iterable[str]:
        found: list[str] = []
        for agent in _entries(self.root, "agents", dirs=True):
            for sub in ("agent", "sessions", "sessions/cold"):
                for name in _entries(self.root, f"agents/{agent}/{sub}", dirs=False):
                    found.append(f"agents/{agent}/{sub}/{name}")
                    if len(found) >= self.max_files:
                        return found
        return found

    def read(self, name: str, limit: int) -> bytes:
        path = state_path(self.root, name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ValueError(f"{name} is not a regular file")
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{name} is larger than {limit:,} bytes")
        return data

    def database(self, name: str) -> Source:
        return state_path(self.root, name)


class SnapshotFiles:
    """The files of a snapshot (or any other copy): relative path -> a function that returns
    the content (for a repository snapshot, ``partial(repo.get_blob, entry.blob)``), called
    only for the files a session needs; what it raises is said as that file's problem."""

    def __init__(self, files: Mapping[str, Callable[[], bytes]]) -> None:
        self.files = files

    def names(self) -> Iterable[str]:
        return self.files.keys()

    def read(self, name: str, limit: int) -> bytes:
        data = self._content(name)
        if len(data) > limit:
            raise ValueError(f"{name} is larger than {limit:,} bytes")
        return data

    def database(self, name: str) -> Source:
        return self._content(name)

    def _content(self, name: str) -> bytes:
        try:
            return self.files[name]()
        except Exception as exc:  # whatever the repository raises (a missing or damaged blob)
            raise OSError(f"{sanitize(name)} could not be read from the snapshot: {exc}") from exc


def state_path(root: Path, name: str) -> Path:
    """``root``/``name`` for a relative '/'-separated ``name`` that stays inside ``root``
    through directories only: no absolute path, no ``..``, no symbolic link on the way (the
    last component is left to the reader, which refuses a link itself)."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{sanitize(name)!r} is not a path inside the state directory")
    path = root
    for part in parts[:-1]:
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{sanitize(name)} does not exist") from None
        if not stat.S_ISDIR(info.st_mode):
            raise ValueError(
                f"{sanitize(name)} is not inside the state directory (a link or a file on the way)"
            )
    return path / parts[-1]


def sessions(source: Path | StateFiles) -> SessionList:
    """Every session of every agent in the state directory ``source`` (a path, or
    :class:`SnapshotFiles`), the most recently updated first. What could not be read is said
    in ``problems``; the sessions that could are still listed."""
    files = StateDirectory(source) if isinstance(source, Path) else source
    layout = _Layout.of(files)
    found: list[SessionInfo] = []
    problems: list[str] = []
    for agent, db_name in sorted(layout.databases.items()):
        try:
            found.extend(_db_sessions(files, layout, agent, db_name))
        except SqliteViewError as exc:
            problems.append(f"the sessions of agent {sanitize(agent)} could not be read: {exc}")
        except (ValueError, OSError) as exc:  # the file went away, or a link appeared on its way
            problems.append(
                f"the sessions of agent {sanitize(agent)} could not be read: {sanitize(str(exc))}"
            )
    refs = [parse_ref(s.ref) for s in found]
    archived_in_db = {(agent, name) for kind, agent, name in refs if kind == "archive"}
    for (agent, name), rel in sorted(layout.transcript_files.items()):
        if (agent, name) in archived_in_db:
            continue  # the same archive as a database row, already listed
        found.append(_file_session(files, agent, name, rel, keep=False).session)
    found.sort(key=lambda s: (s.updated is not None, s.updated or 0.0), reverse=True)
    return SessionList(found, problems)


def conversation(
    source: Path | StateFiles, ref: str, *, internal: bool = False, max_turns: int = MAX_TURNS
) -> Conversation:
    """The session ``ref`` (from :func:`sessions`) and its turns, oldest first (the newest
    ``max_turns`` of them). ``internal`` adds OpenClaw's bookkeeping entries as raw system
    turns. NoSuchSession if there is none by that ref, TranscriptError if its file cannot be
    read, SqliteViewError if its database cannot be."""
    files = StateDirectory(source) if isinstance(source, Path) else source
    layout = _Layout.of(files)
    kind, agent, name = parse_ref(ref)
    read: _Read | None = None
    try:
        if kind in ("db", "archive") and agent in layout.databases:
            read = _db_conversation(files, layout, agent, layout.databases[agent], kind, name, internal)
        elif kind == "file" and (agent, name) in layout.transcript_files:
            read = _file_session(files, agent, name, layout.transcript_files[(agent, name)], internal)
    except (ValueError, OSError) as exc:  # the file went away, or a link appeared on its way
        raise TranscriptError(
            f"session {sanitize(ref)!r} could not be read: {sanitize(str(exc))}; refresh the list of sessions"
        ) from None
    if read is None:
        raise NoSuchSession(
            f"no session {sanitize(ref)!r} in this state directory; refresh the list of sessions"
        )
    turns = read.turns
    omitted = max(0, len(turns) - max_turns)
    return Conversation(read.session, turns[omitted:], omitted)


def session_ref(kind: str, agent: str, name: str) -> str:
    """A session's ref: ``db/<agent>/<session id>`` (a live transcript in the agent database),
    ``archive/<agent>/<archive name>`` (an archive in the database) or ``file/<agent>/<file
    name>`` (a file under ``sessions/``), each part percent-encoded, so a ref is printable
    ASCII whatever the agent named things."""
    return "/".join(urllib.parse.quote(part, safe="") for part in (kind, agent, name))


def parse_ref(ref: str) -> tuple[str, str, str]:
    """(kind, agent, name) of a ref made by :func:`session_ref` (empty parts for anything else)."""
    parts = [urllib.parse.unquote(part) for part in ref.split("/")]
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", "")


# -- where the sessions are ------------------------------------------------------------------


@dataclass
class _Layout:
    databases: dict[str, str] = field(default_factory=dict)  # agent -> its database's path
    transcript_files: dict[tuple[str, str], str] = field(default_factory=dict)  # (agent, name) -> path
    cold_files: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, files: StateFiles) -> _Layout:
        layout = cls()
        for name in files.names():
            if match := _DB_PATH.match(name):
                layout.databases[match.group(1)] = name
            elif (match := _FILE_PATH.match(name)) and not name.endswith(".tmp"):
                layout.transcript_files[(match.group(1), match.group(2))] = name
            elif match := _COLD_PATH.match(name):
                layout.cold_files[(match.group(1), match.group(2))] = name
        return layout


def _entries(root: Path, name: str, *, dirs: bool) -> list[str]:
    """Names of the subdirectories (or regular files) of directory ``name`` under ``root``,
    links left out; none when the directory, or one on the way to it, is a link."""
    try:
        directory = state_path(root, name)
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return []
        with os.scandir(directory) as found:
            wanted = []
            for entry in found:
                if entry.is_symlink():
                    continue
                if (entry.is_dir(follow_symlinks=False) if dirs else entry.is_file(follow_symlinks=False)):
                    wanted.append(entry.name)
    except (ValueError, OSError):
        return []
    return sorted(wanted)


# -- a session's summary ---------------------------------------------------------------------


@dataclass
class _Read:
    """A session as read: its summary and its turns."""

    session: SessionInfo
    turns: list[Turn]


@dataclass
class _Summary:
    """What the session list says of one transcript, gathered entry by entry."""

    ref: str
    id: str
    agent: str
    key: str = ""
    title: str = ""
    archived: ArchiveReason | None = None
    first_line: str = ""
    started: float | None = None
    updated: float | None = None
    turns: int = 0
    cost_nanos: int | None = None
    model: str = ""
    unreadable: int = 0
    problem: str = ""
    keep: list[Turn] | None = None  # the turns themselves, when a conversation is wanted

    def add(self, entry: Any, raw: str, fallback_time: float | None, internal: bool) -> None:
        if isinstance(entry, dict) and entry.get("type") == "session":
            self.id = self.id or _text_field(entry.get("id"))
            when = _time(entry.get("timestamp"))
            if when is not None and self.started is None:
                self.started = when
            return
        # Only the conversation's turns are shown whole; a listing needs their first line alone.
        shape = _safe_text if self.keep is not None else _cut
        turns = entry_turns(entry, raw, fallback_time, internal=internal, shape=shape)
        for turn in turns:
            if turn.kind == "unreadable":
                self.unreadable += 1
            if turn.role in ("user", "assistant", "tool") and not turn.raw:
                self.turns += 1
            if turn.role == "user" and not self.first_line:
                self.first_line = _first_line(turn.text)
            if turn.cost_nanos is not None:
                self.cost_nanos = (self.cost_nanos or 0) + turn.cost_nanos
            if turn.model:
                self.model = turn.model
            if turn.time is not None:
                self.started = turn.time if self.started is None else min(self.started, turn.time)
                self.updated = turn.time if self.updated is None else max(self.updated, turn.time)
        if self.keep is not None:
            self.keep.extend(turns)

    def read(self) -> _Read:
        problem = self.problem
        if self.unreadable:
            said = f"{self.unreadable} entr{'y' if self.unreadable == 1 else 'ies'} could not be read"
            problem = f"{problem}; {said}" if problem else said
        info = SessionInfo(
            ref=self.ref, id=sanitize(self.id), agent=sanitize(self.agent), key=sanitize(self.key),
            title=_line(self.title, MAX_FIRST_LINE), first_line=_line(self.first_line, MAX_FIRST_LINE),
            started=self.started, updated=self.updated, turns=self.turns, cost_nanos=self.cost_nanos,
            model=_line(self.model, MAX_FIRST_LINE),
            archived=self.archived, problem=problem,
        )
        return _Read(info, self.keep or [])


# -- sessions in an agent database -------------------------------------------------------------


def _db_sessions(files: StateFiles, layout: _Layout, agent: str, db_name: str) -> list[SessionInfo]:
    def work(conn: ReadConnection) -> list[SessionInfo]:
        conn.deadline.set(SESSIONS_SECONDS)
        tables = _table_names(conn)
        meta = _window_meta(conn, tables)
        summaries: dict[str, _Summary] = {}
        for session_id, entry, raw, when in _events(conn, tables, None):
            summary = summaries.get(session_id)
            if summary is None:
                summary = summaries[session_id] = _live_summary(agent, session_id, meta.get(session_id))
            summary.add(entry, raw, when, internal=False)
        for session_id, info in meta.items():
            if session_id not in summaries:  # no events here: moved to a cold archive, or none yet
                summary = summaries[session_id] = _live_summary(agent, session_id, info)
                _read_cold(conn, tables, files, layout, agent, summary, internal=False)
        found = [s.read().session for s in summaries.values()]
        found.extend(a.read().session for a in _db_archives(conn, tables, agent, None, internal=False))
        return found

    return read_database(files.database(db_name), work, label=f"agents/{sanitize(agent)}/agent/{AGENT_DB}")


def _db_conversation(
    files: StateFiles, layout: _Layout, agent: str, db_name: str, kind: str, name: str, internal: bool
) -> _Read | None:
    def work(conn: ReadConnection) -> _Read | None:
        conn.deadline.set(SESSIONS_SECONDS)
        tables = _table_names(conn)
        if kind == "archive":
            found = _db_archives(conn, tables, agent, name, internal=internal, keep=True)
            return found[0].read() if found else None
        info = _window_meta(conn, tables, name).get(name)
        summary = _live_summary(agent, name, info)
        summary.keep = []
        seen = False
        for _session_id, entry, raw, when in _events(conn, tables, name):
            seen = True
            summary.add(entry, raw, when, internal=internal)
        if not seen:
            if info is None:
                return None
            _read_cold(conn, tables, files, layout, agent, summary, internal=internal)
        return summary.read()

    return read_database(files.database(db_name), work, label=f"agents/{sanitize(agent)}/agent/{AGENT_DB}")


def _table_names(conn: ReadConnection) -> set[str]:
    return {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(conn: ReadConnection, table: str) -> set[str]:
    return {str(n) for (n,) in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))}


def _select(
    conn: ReadConnection, table: str, wanted: Iterable[str], where: str = "", args: tuple[Any, ...] = ()
) -> Iterator[dict[str, Any]]:
    """Rows of ``table`` as dicts of the ``wanted`` columns it has (another OpenClaw version
    may lack some: those read as None)."""
    have = _columns(conn, table)
    wanted = list(wanted)
    picked = [c for c in wanted if c in have]
    if not picked:
        return
    cursor = conn.execute(f"SELECT {', '.join(picked)} FROM {table} {where}", args)  # noqa: S608
    for row in cursor:
        found = dict.fromkeys(wanted)
        found.update(zip(picked, row, strict=True))
        yield found


def _window_meta(
    conn: ReadConnection, tables: set[str], session_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """session id -> what ``session_windows`` and ``session_nodes`` say of it."""
    if "session_windows" not in tables:
        return {}
    nodes: dict[str, dict[str, Any]] = {}
    if "session_nodes" in tables:
        for row in _select(conn, "session_nodes", ("session_key", "label", "display_name", "archived_at")):
            nodes[str(row["session_key"])] = row
    where, args = ("WHERE session_id = ?", (session_id,)) if session_id is not None else ("", ())
    meta: dict[str, dict[str, Any]] = {}
    wanted = (
        "session_id", "session_key", "created_at", "started_at", "updated_at", "model_provider", "model",
        "display_name",
    )
    for row in _select(conn, "session_windows", wanted, where, args):
        node = nodes.get(str(row["session_key"]), {})
        row["label"] = node.get("label")
        row["node_display_name"] = node.get("display_name")
        meta[str(row["session_id"])] = row
    return meta


def _live_summary(agent: str, session_id: str, info: dict[str, Any] | None) -> _Summary:
    summary = _Summary(ref=session_ref("db", agent, session_id), id=session_id, agent=agent)
    if info:
        summary.key = _text_field(info.get("session_key"))
        summary.title = (
            _text_field(info.get("label")) or _text_field(info.get("display_name"))
            or _text_field(info.get("node_display_name"))
        )
        summary.started = _ms(info.get("started_at")) or _ms(info.get("created_at"))
        summary.updated = _ms(info.get("updated_at"))
        provider, model = _text_field(info.get("model_provider")), _text_field(info.get("model"))
        summary.model = sanitize(f"{provider}/{model}" if provider and model else model)
    return summary


def _events(conn: ReadConnection, tables: set[str], session_id: str | None
            ) -> Iterator[tuple[str, Any, str, float | None]]:
    """(session id, entry, its text, its row's time) of each transcript row, in order."""
    if "transcript_events" not in tables:
        return
    where, args = ("WHERE session_id = ?", (session_id,)) if session_id is not None else ("", ())
    rows = _select(
        conn, "transcript_events",
        ("session_id", "seq", "event_json", "event_zstd", "event_utf8_bytes", "created_at"),
        f"{where} ORDER BY session_id, seq", args,
    )
    for row in rows:
        text = row["event_json"]
        if text is None and isinstance(row["event_zstd"], bytes):
            try:
                text = _unzstd(row["event_zstd"], MAX_EVENT).decode("utf-8", "replace")
            except ValueError as exc:
                text = f"(a compressed entry that could not be read: {exc})"
        raw = text if isinstance(text, str) else ""
        yield str(row["session_id"]), _parse(raw), raw, _ms(row["created_at"])


def _read_cold(conn: ReadConnection, tables: set[str], files: StateFiles, layout: _Layout, agent: str,
               summary: _Summary, *, internal: bool) -> None:
    """The transcript of ``summary``'s session from its cold archive, if it has one."""
    if "session_transcript_cold_archives" not in tables:
        return
    wanted = ("archive_name", "storage", "archive_blob")
    where = "WHERE session_id = ?"
    rows = list(_select(conn, "session_transcript_cold_archives", wanted, where, (summary.id,)))
    if not rows:
        return
    row = rows[0]
    name = _text_field(row["archive_name"])
    try:
        if row["storage"] == "sqlite" and isinstance(row["archive_blob"], bytes):
            packed = row["archive_blob"]
        elif (agent, name) in layout.cold_files:
            packed = files.read(layout.cold_files[(agent, name)], MAX_FILE)
        else:
            summary.problem = (
                f"its transcript is in the cold archive sessions/cold/{sanitize(name)}, which is missing"
            )
            return
        content = _unzstd(packed, MAX_FILE)
    except (ValueError, OSError) as exc:
        summary.problem = f"its cold archive {sanitize(name)} could not be read: {sanitize(str(exc))}"
        return
    for line in _lines(content):
        record = _parse(line)
        if isinstance(record, dict) and record.get("kind") == "event" and isinstance(record.get("row"), dict):
            row_data = record["row"]
            raw = row_data.get("event_json")
            raw = raw if isinstance(raw, str) else ""
            summary.add(_parse(raw), raw, _ms(row_data.get("created_at")), internal)


def _db_archives(conn: ReadConnection, tables: set[str], agent: str, name: str | None, *,
                 internal: bool, keep: bool = False) -> list[_Summary]:
    """The archived transcripts in the database (the one named ``name``, or all)."""
    if "session_transcript_archives" not in tables:
        return []
    where, args = ("WHERE archive_name = ?", (name,)) if name is not None else ("", ())
    wanted = ("session_id", "session_key", "reason", "encoding", "archive_blob", "archive_name", "created_at")
    found = []
    for row in _select(conn, "session_transcript_archives", wanted, where, args):
        archive_name = _text_field(row["archive_name"])
        summary = _Summary(
            ref=session_ref("archive", agent, archive_name), id=_text_field(row["session_id"]), agent=agent,
            key=_text_field(row["session_key"]), archived=_reason(row["reason"]), keep=[] if keep else None,
        )
        blob = row["archive_blob"]
        try:
            if not isinstance(blob, bytes):
                raise ValueError("it holds no data")
            content = _unzstd(blob, MAX_FILE) if row["encoding"] == "zstd" else blob
        except ValueError as exc:
            summary.problem = f"its archive could not be read: {sanitize(str(exc))}"
            content = b""
        for line in _lines(content):
            summary.add(_parse(line), line, None, internal)
        if summary.updated is None:
            summary.updated = _ms(row["created_at"])
        found.append(summary)
    return found


# -- sessions as files -----------------------------------------------------------------------


def _file_session(
    files: StateFiles, agent: str, name: str, rel: str, internal: bool = False, *, keep: bool = True
) -> _Read:
    session_id = name.split(".jsonl", 1)[0]
    reason_part = name.split(".jsonl", 1)[1].lstrip(".").split(".", 1)[0]
    summary = _Summary(
        ref=session_ref("file", agent, name), id=session_id, agent=agent,
        archived=_reason(reason_part), keep=[] if keep else None,
    )
    try:
        content = files.read(rel, MAX_FILE)
        if name.endswith(".zst"):
            content = _unzstd(content, MAX_FILE)
    except (ValueError, OSError, KeyError) as exc:
        summary.problem = f"sessions/{sanitize(name)} could not be read: {sanitize(str(exc))}"
        content = b""
    for line in _lines(content):
        summary.add(_parse(line), line, None, internal)
    return summary.read()


# -- entries to turns ------------------------------------------------------------------------


def entry_turns(
    entry: Any, raw: str, fallback_time: float | None = None, *, internal: bool = False,
    shape: Callable[[str, int], str] | None = None,
) -> list[Turn]:
    """The turns one transcript entry shows as (none for the header, or for OpenClaw's
    bookkeeping unless ``internal``). ``raw`` is the entry as stored, shown for any entry of a
    shape this function does not know; it never raises on what the entry holds."""
    shape = shape or _safe_text
    if not isinstance(entry, dict):
        return [_raw_turn("unreadable", raw, fallback_time, None, shape)]
    kind = entry.get("type")
    when = _time(entry.get("timestamp"))
    if when is None:
        when = fallback_time
    entry_id = _text_field(entry.get("id")) or None
    if kind == "session":
        return []
    if kind == "message":
        return _message_turns(entry.get("message"), raw, when, entry_id, shape)
    if kind in _INTERNAL:
        return [_raw_turn(str(kind), raw, when, entry_id, shape)] if internal else []
    text = _system_text(entry, shape)
    if text is None:
        shown_kind = sanitize(kind)[:40] if isinstance(kind, str) and kind else "unreadable"
        return [_raw_turn(shown_kind, raw, when, entry_id, shape)]
    if kind == "custom_message" and entry.get("display") is False and not internal:
        return []
    return [Turn("system", str(kind), when, text, entry_id=entry_id)]


def _system_text(entry: dict[str, Any], shape: Callable[[str, int], str]) -> str | None:
    """What a non-message entry says, or None for a kind (or shape) not known here."""
    kind = entry.get("type")
    if kind == "model_change":
        provider, model = _text_field(entry.get("provider")), _text_field(entry.get("modelId"))
        return shape(f"model: {provider}/{model}" if provider else f"model: {model}", MAX_FIRST_LINE)
    if kind == "thinking_level_change":
        return shape(f"thinking level: {_text_field(entry.get('thinkingLevel'))}", MAX_FIRST_LINE)
    if kind == "reset":
        return shape(f"reset ({_text_field(entry.get('reason')) or 'no reason given'})", MAX_FIRST_LINE)
    if kind == "compaction":
        before = entry.get("tokensBefore")
        head = f"compacted ({before:,} tokens before)" if _is_count(before) else "compacted"
        return shape(f"{head}: {_text_field(entry.get('summary'))}", MAX_TEXT)
    if kind == "branch_summary":
        return shape(f"branch summary: {_text_field(entry.get('summary'))}", MAX_TEXT)
    if kind == "custom_message":
        return shape(_content_text(entry.get("content")), MAX_TEXT)
    return None


def _message_turns(
    message: Any, raw: str, when: float | None, entry_id: str | None, shape: Callable[[str, int], str]
) -> list[Turn]:
    if not isinstance(message, dict):
        return [_raw_turn("message", raw, when, entry_id, shape)]
    role = message.get("role")
    if when is None:
        when = _ms(message.get("timestamp"))
    if role == "user":
        return [Turn("user", "message", when, shape(_content_text(message.get("content")), MAX_TEXT),
                     entry_id=entry_id)]
    if role == "assistant":
        return _assistant_turns(message, when, entry_id, shape)
    if role == "toolResult":
        return [Turn(
            "tool", "message", when, shape(_content_text(message.get("content")), MAX_TEXT),
            tool_name=shape(_text_field(message.get("toolName")), MAX_FIRST_LINE) or None,
            is_error=message.get("isError") is True, entry_id=entry_id,
        )]
    if role == "bashExecution":
        code = message.get("exitCode")
        return [Turn(
            "tool", "message", when, shape(_text_field(message.get("output")), MAX_TEXT),
            tool_name="bash", tool_input=shape(_text_field(message.get("command")), MAX_TOOL_INPUT),
            is_error=_is_count(code) and code != 0, entry_id=entry_id,
        )]
    if role == "custom":
        return [Turn("system", "message", when, shape(_content_text(message.get("content")), MAX_TEXT),
                     entry_id=entry_id)]
    return [_raw_turn("message", raw, when, entry_id, shape)]


def _assistant_turns(
    message: dict[str, Any], when: float | None, entry_id: str | None, shape: Callable[[str, int], str]
) -> list[Turn]:
    content = message.get("content")
    blocks: list[Any] = content if isinstance(content, list) else [{"type": "text", "text": content}]
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[tuple[str, str]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_field(block.get("text")))
        elif kind == "thinking":
            thinking.append(_text_field(block.get("thinking")))
        elif kind == "redacted_thinking":
            thinking.append("[redacted thinking]")
        elif kind in ("toolCall", "tool_use"):
            arguments = block.get("arguments", block.get("input"))
            calls.append((_text_field(block.get("name")) or "?", _json_text(arguments)))
        elif kind == "image":
            texts.append(f"[image: {_text_field(block.get('mimeType')) or 'unknown type'}]")
    text = "\n".join(t for t in texts if t)
    is_error = message.get("stopReason") == "error"
    if is_error:
        error = _text_field(message.get("errorMessage")) or "the model's response failed"
        text = f"{text}\n{error}" if text else error
    provider, model = _text_field(message.get("provider")), _text_field(message.get("model"))
    shown_model = shape(f"{provider}/{model}" if provider and model else model, MAX_FIRST_LINE) or None
    usage, cost = _usage(message.get("usage")), _cost(message.get("usage"))
    turns: list[Turn] = []
    if text or thinking or not calls:
        turns.append(Turn(
            "assistant", "message", when, shape(text, MAX_TEXT), is_error=is_error,
            thinking=shape("\n".join(thinking), MAX_TEXT), entry_id=entry_id,
        ))
    for name, arguments in calls:
        turns.append(Turn(
            "assistant", "message", when, "", tool_name=shape(name, MAX_FIRST_LINE),
            tool_input=shape(arguments, MAX_TOOL_INPUT), entry_id=entry_id,
        ))
    # The response's usage, cost and model go on its first turn only.
    turns[0] = replace(turns[0], usage=usage, cost_nanos=cost, model=shown_model)
    return turns


def _raw_turn(
    kind: str, raw: str, when: float | None, entry_id: str | None, shape: Callable[[str, int], str]
) -> Turn:
    return Turn("system", kind, when, shape(raw, MAX_RAW), raw=True, entry_id=entry_id)


def _usage(usage: Any) -> TurnUsage | None:
    if not isinstance(usage, dict):
        return None
    return TurnUsage(
        prompt=_count(usage.get("input")), cache_read=_count(usage.get("cacheRead")),
        cache_write=_count(usage.get("cacheWrite")), output=_count(usage.get("output")),
    )


def _cost(usage: Any) -> int | None:
    """OpenClaw's cost of a response in nano-dollars (its ``usage.cost.total`` in USD, or the
    sum of its parts), None when it recorded none."""
    if not isinstance(usage, dict) or not isinstance(usage.get("cost"), dict):
        return None
    cost = usage["cost"]
    total = cost.get("total")
    if not _is_amount(total):
        parts = [v for k, v in cost.items() if k != "total" and _is_amount(v)]
        if not parts:
            return None
        total = sum(parts)
    return round(float(total) * NANOS_PER_USD)


# -- small readers ---------------------------------------------------------------------------


def _parse(line: str) -> Any:
    """The JSON value of ``line``, or None when it is not JSON (shown raw)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _lines(content: bytes) -> Iterator[str]:
    for line in content.decode("utf-8", "replace").splitlines():
        if line.strip():
            yield line


def _unzstd(data: bytes, limit: int) -> bytes:
    """``data`` decompressed (zstd, every frame); ValueError if it is not zstd, or would be
    larger than ``limit`` bytes (a bomb is never decompressed whole)."""
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            while chunk := reader.read(min(1 << 20, limit + 1 - len(out))):
                out += chunk
                if len(out) > limit:
                    raise ValueError(f"it is larger than {limit:,} bytes decompressed")
    except zstandard.ZstdError as exc:
        raise ValueError(f"it is not valid zstd data ({exc})") from None
    return bytes(out)


def _time(value: Any) -> float | None:
    """An ISO 8601 time as Unix seconds (a number is taken as milliseconds)."""
    if isinstance(value, str) and len(value) <= 64:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        return when.timestamp() if when.tzinfo is not None else None
    return _ms(value)


def _ms(value: Any) -> float | None:
    if _is_amount(value) and value > 0:
        seconds = float(value) / 1000
        return seconds if seconds < 1e11 else None
    return None


def _is_amount(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int:
    return value if _is_count(value) and value >= 0 else 0


def _text_field(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _reason(value: Any) -> ArchiveReason | None:
    for reason in _ARCHIVE_REASONS:
        if value == reason:
            return reason
    return None


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its blocks (other blocks
    named)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_field(block.get("text")))
        elif kind == "image":
            parts.append(f"[image: {_text_field(block.get('mimeType')) or 'unknown type'}]")
        elif isinstance(kind, str):
            parts.append(f"[{kind}]")
    return "\n".join(p for p in parts if p)


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=2)[: MAX_TOOL_INPUT + 1]
    except (TypeError, ValueError, RecursionError):
        return ""


def _safe_text(text: str, limit: int) -> str:
    """``text`` made safe to show with its lines kept: keys hidden, control characters other
    than newline and tab replaced, cut to ``limit`` characters with the full length said."""
    head = hide_secrets(text[: limit + 256])
    shown = "\n".join(sanitize(line) for line in head.split("\n"))
    if len(text) > limit or len(shown) > limit:
        return f"{shown[:limit]}\n[cut: {len(text):,} characters in all]"
    return shown


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, not yet safe to show (for a session's summary,
    whose few shown fields are made safe once, by ``_line``)."""
    return text[:limit]


def _line(text: str, limit: int) -> str:
    return sanitize(hide_secrets(text[: limit + 256]))[:limit]


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()[:MAX_FIRST_LINE]
    return ""


__all__ = [
    "NoSuchSession",
    "SnapshotFiles",
    "StateDirectory",
    "StateFiles",
    "TranscriptError",
    "conversation",
    "entry_turns",
    "parse_ref",
    "session_ref",
    "sessions",
    "state_path",
]
