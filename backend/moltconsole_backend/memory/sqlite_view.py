"""A SQLite database of the agent's state, read-only, for the Memory screen: its tables with
their row counts, and a page of one table's rows with every value made safe to show.

How a database is opened depends on where it is, so that reading it never disturbs the agent:

- A live file in the state directory, with its ``-wal`` file (OpenClaw has the database open,
  or did not close it cleanly): opened ``mode=ro``. SQLite then reads the write-ahead log
  through the shared ``-shm`` index as any reader of the agent's own does: a read-only
  connection never checkpoints, truncates or deletes the log, WAL readers never make the
  writer wait, and each call here is one short read transaction (so the only effect on the
  agent is that its writer cannot restart the log from the beginning for those milliseconds).
- A live file without a ``-wal`` file: the main file then holds the whole database. Opening
  it ``mode=ro`` would create ``-wal`` and ``-shm`` files, owned by the backend's user, which
  could lock the agent out of its own database when it next opens it; so the file is opened
  ``immutable=1`` (no lock taken, no file created) and the read is checked afterwards: if
  the file changed or a log or journal appeared meanwhile, the read is done again (with the
  log now there, the first way).
- Bytes (a file taken out of a snapshot): written to a private temporary file and opened
  ``immutable=1``.

The backup API into memory would hold the same read transaction for a whole copy, and copy a
database of hundreds of megabytes to show a hundred rows, so it is not used here.

The file is the agent's, so untrusted: a symbolic link is refused (it could point at any file
of the host), the schema is not trusted (``trusted_schema=OFF``: no function with side
effects runs from a view or trigger), the connection is ``query_only``, text that is not
UTF-8 is decoded with replacement characters, and a query that runs too long (a view written
to loop) is interrupted. Host SQLite may be older than the agent's (Debian 12 has 3.40, whose
CHECK constraints cannot call ``octet_length``): reading is unaffected, and nothing here
writes or runs ``integrity_check``.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sqlite3
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory_db import Cell, ColumnInfo, ElidedValue, RowsPage, TableInfo, TableKind

T = TypeVar("T")

SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_TEXT = 500  # characters of a text value shown in a cell
BLOB_PREVIEW = 16  # bytes of a blob shown in hex
MAX_LIMIT = 1000  # rows in one page
QUERY_SECONDS = 5.0  # one query of a page, or the schema
COUNT_SECONDS = 1.0  # counting one table's rows
COUNT_BUDGET = 3.0  # counting every table's rows, in all
_RETRIES = 3  # reads of a database without a log that changed while it was read

# Words of a column name that say it holds a secret (its text or binary values are hidden).
_SECRET_WORDS = frozenset(
    {
        "token", "tokens", "secret", "secrets", "password", "passwd", "passphrase", "hmac",
        "credential", "credentials", "cookie", "cookies", "apikey", "auth", "p256dh", "privatekey",
    }
)
_SECRET_PAIRS = (("private", "key"), ("api", "key"), ("access", "key"), ("secret", "key"))
# Columns whose name says nothing but whose JSON holds keys (OpenClaw 2026.9.6's state).
_SECRET_COLUMNS = frozenset(
    {
        ("auth_profile_store", "store_json"),
        ("auth_profile_state", "state_json"),
        ("mcp_oauth_stores", "store_json"),
        ("secret_store_entries", "value"),
        ("device_pairing_join_codes", "payload_json"),
    }
)
# Keys inside free text: PEM private keys (also cut short), and well-known API key shapes.
_SECRET_TEXT = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)"
    r"|\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{35})",
    re.DOTALL,
)
# Each match of _SECRET_TEXT holds one of these.
_SECRET_MARKERS = ("PRIVATE KEY", "sk-", "xox", "p_", "o_", "u_", "s_", "r_", "AKIA", "AIza")
HIDDEN_SECRET = "[secret hidden]"  # noqa: S105  # the marker, not a secret
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


class SqliteViewError(Exception):
    """A database that cannot be shown; the message says what happened and what to do."""


class NotADatabase(SqliteViewError):
    """The file is not a SQLite database (or is empty)."""


class NoSuchTable(SqliteViewError):
    """The database has no table or view of that name."""


class DatabaseUnreadable(SqliteViewError):
    """A SQLite database that could not be read: damaged, cut short, busy, or too slow."""


Source = Path | bytes  # a file in the state directory, or a database file's content


def secret_column(table: str, column: str) -> bool:
    """Whether ``column`` of ``table`` holds secrets, by its name (``token``, ``hmac_key``,
    ``private_key_pem``, ``apiKey``...) or as a column known to hold keys in its JSON."""
    if (table.lower(), column.lower()) in _SECRET_COLUMNS:
        return True
    words = [w.lower() for w in _WORD.findall(column)]
    if _SECRET_WORDS.intersection(words):
        return True
    return any(pair == (a, b) for a, b in itertools.pairwise(words) for pair in _SECRET_PAIRS)


def hide_secrets(text: str) -> str:
    """``text`` with private keys and API keys of well-known shapes replaced by a marker."""
    if not any(marker in text for marker in _SECRET_MARKERS):
        return text  # the common case, without running the pattern at every position
    return _SECRET_TEXT.sub(HIDDEN_SECRET, text)


def shown_value(value: Any, *, secret: bool = False, max_text: int = MAX_TEXT) -> Cell:
    """A value from the database as it may be shown: numbers and NULL as they are, text
    without control characters or keys and cut to ``max_text`` characters, binary data as a
    hex preview with its size, and anything in a secret column hidden."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no inf or NaN
    if isinstance(value, bytes):
        if secret:
            return ElidedValue("secret", "", len(value))
        return ElidedValue("blob", value[:BLOB_PREVIEW].hex(), len(value))
    text = value if isinstance(value, str) else str(value)
    if secret:
        return ElidedValue("secret", "", len(text))
    # Keys are hidden before the cut (a key cut in half would no longer match), on a bounded
    # prefix so a value of megabytes costs no more than a short one.
    head = sanitize(hide_secrets(text[: max_text + 256]))
    if len(text) > max_text or len(head) > max_text:
        return ElidedValue("text", head[:max_text], len(text))
    return head


def quote_name(name: str) -> str:
    """``name`` as a SQL identifier, whatever it holds (quotes, spaces, SQL)."""
    return '"' + name.replace('"', '""') + '"'


def tables(
    source: Source, *, label: str | None = None, count_budget: float = COUNT_BUDGET
) -> list[TableInfo]:
    """Every table, view and virtual table of the database, sorted by name, with its columns
    and row count (None, with a note, when it could not be counted in time or at all).

    ``label`` names the database in error messages (default: the path, or "the database").
    """
    return read_database(source, lambda conn: _tables(conn, count_budget), label=label)


def rows(
    source: Source, table: str, offset: int = 0, limit: int = 100, *,
    label: str | None = None, max_text: int = MAX_TEXT,
) -> RowsPage:
    """Rows ``offset`` .. ``offset + limit`` of ``table`` (a table or view) in storage order,
    every value made safe to show (see :func:`shown_value`), and the table's row count."""
    if offset < 0:
        raise ValueError(f"offset must be 0 or more, not {offset}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, not {limit}")
    name = label or _default_label(source)
    return read_database(source, lambda conn: _rows(conn, name, table, offset, limit, max_text), label=label)


def read_database(source: Source, work: Callable[[ReadConnection], T], *, label: str | None = None) -> T:
    """``work(connection)`` on the database opened read-only as the module says, inside one
    read transaction; SQLite's errors become :class:`SqliteViewError` naming the database."""
    name = label or _default_label(source)
    if isinstance(source, bytes):
        _check_header(source[:16], len(source), name)
        with _private_copy(source) as path:
            return _run(_uri(path, "immutable=1"), work, name)
    for _ in range(_RETRIES):
        before = _signature(source, name)
        if before.wal or before.journal:
            # The agent's log is there (or a write is under way): read through it, never from
            # the main file alone.
            result = _run(_uri(source, "mode=ro"), work, name)
            _same_file(before, _signature(source, name), name)
            return result
        result = _run(_uri(source, "immutable=1"), work, name)
        if _signature(source, name) == before:
            return result
    raise DatabaseUnreadable(f"{name} kept changing while it was read; try again in a moment")


@dataclass(frozen=True)
class _FileSignature:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    wal: bool
    journal: bool


def _default_label(source: Source) -> str:
    return sanitize(str(source)) if isinstance(source, Path) else "the database"


def _signature(path: Path, name: str) -> _FileSignature:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SqliteViewError(f"{name} does not exist (any more?); refresh the file list") from None
    except OSError as exc:
        raise SqliteViewError(f"{name} cannot be read: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise SqliteViewError(f"{name} is a symbolic link; links in the agent's state are not followed")
    if not stat.S_ISREG(info.st_mode):
        raise NotADatabase(f"{name} is not a regular file, so not a SQLite database")
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise SqliteViewError(f"{name} cannot be read: {exc.strerror}") from None
    _check_header(header, info.st_size, name)
    return _FileSignature(
        info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
        os.path.lexists(f"{path}-wal"), os.path.lexists(f"{path}-journal"),
    )


def _same_file(before: _FileSignature, after: _FileSignature, name: str) -> None:
    if (before.dev, before.ino) != (after.dev, after.ino):
        raise DatabaseUnreadable(f"{name} was replaced while it was read; try again")


def _check_header(header: bytes, size: int, name: str) -> None:
    if size == 0:
        raise NotADatabase(f"{name} is empty (0 bytes): there is no database in it")
    if header != SQLITE_MAGIC:
        raise NotADatabase(f"{name} is not a SQLite database (it does not start with SQLite's header)")


def _uri(path: Path, options: str) -> str:
    return f"file:{urllib.parse.quote(str(path), safe='/')}?{options}"


@contextmanager
def _private_copy(content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mc-sqlite-view-") as tmp:  # 0700
        path = Path(tmp) / "db.sqlite"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        yield path


class _Deadline:
    """Interrupts a query that runs past its time (SQLite calls it every 1,000 steps)."""

    def __init__(self) -> None:
        self.until = math.inf

    def set(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def __call__(self) -> int:
        return 1 if time.monotonic() > self.until else 0


class ReadConnection(sqlite3.Connection):
    """A read-only connection with the deadline its queries run under (``deadline.set``)."""

    deadline: _Deadline


def _run(uri: str, work: Callable[[ReadConnection], T], name: str) -> T:
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=2.0, isolation_level=None, factory=ReadConnection)
    except sqlite3.Error as exc:
        raise _unreadable(exc, name) from None
    assert isinstance(conn, ReadConnection)
    try:
        conn.text_factory = lambda data: data.decode("utf-8", "replace")
        conn.deadline = _Deadline()
        conn.set_progress_handler(conn.deadline, 1000)
        conn.deadline.set(QUERY_SECONDS)
        for pragma in ("trusted_schema=OFF", "query_only=ON", "cell_size_check=ON", "mmap_size=0"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN")
        return work(conn)
    except sqlite3.Error as exc:
        raise _unreadable(exc, name) from None
    finally:
        conn.close()  # a read transaction ends with the connection; nothing to commit


def _unreadable(exc: sqlite3.Error, name: str) -> SqliteViewError:
    message = str(exc)
    if "file is not a database" in message:
        return NotADatabase(f"{name} is not a SQLite database (SQLite says: {message})")
    if "malformed" in message or "disk I/O error" in message:
        return DatabaseUnreadable(
            f"{name} is damaged or cut short (SQLite says: {message}); an earlier snapshot may hold a "
            "sound copy"
        )
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_ROLLBACK":
        return DatabaseUnreadable(
            f"{name} was left in the middle of a write (its journal is still there); OpenClaw repairs it "
            "when it next opens the database: try again after the sandbox has started"
        )
    if "locked" in message or "busy" in message:
        return DatabaseUnreadable(f"{name} is busy (the agent is writing it); try again in a moment")
    if "interrupted" in message:
        return DatabaseUnreadable(
            f"{name} took too long to read (over {QUERY_SECONDS:.0f} s); try a smaller page"
        )
    return DatabaseUnreadable(f"{name} could not be read (SQLite says: {sanitize(message)})")


def _schema(conn: ReadConnection) -> list[tuple[str, str, str]]:
    """(name, type, sql) of every table and view, from ``sqlite_master``."""
    found = conn.execute(
        "SELECT name, type, coalesce(sql, '') FROM sqlite_master WHERE type IN ('table', 'view') "
        "ORDER BY name"
    ).fetchall()
    return [(str(n), str(t), str(s)) for n, t, s in found]


def _kind(kind: str, sql: str) -> TableKind:
    if kind == "view":
        return "view"
    return "virtual" if sql.lstrip().upper().startswith("CREATE VIRTUAL") else "table"


def _columns(conn: ReadConnection, table: str) -> list[ColumnInfo]:
    found = conn.execute(
        'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid', (table,)
    ).fetchall()
    return [
        ColumnInfo(sanitize(str(n)), sanitize(str(t or "")), bool(pk), bool(nn))
        for n, t, nn, pk, hidden in found
        if hidden != 1  # a virtual table's hidden columns are not in SELECT *
    ]


def _missing_module(message: str) -> str | None:
    match = re.search(r"no such module: (\S+)", message)
    return sanitize(match.group(1)) if match else None


def _tables(conn: ReadConnection, count_budget: float) -> list[TableInfo]:
    deadline = conn.deadline
    spend_until = time.monotonic() + count_budget
    found: list[TableInfo] = []
    for name, kind, sql in _schema(conn):
        shown_kind = _kind(kind, sql)
        deadline.set(QUERY_SECONDS)
        try:
            columns = _columns(conn, name)
        except sqlite3.OperationalError as exc:
            module = _missing_module(str(exc))
            note = (
                f"needs the SQLite module {module}, which this backend does not have"
                if module else f"cannot be read: {sanitize(str(exc))}"
            )
            found.append(TableInfo(sanitize(name), shown_kind, None, [], note))
            continue
        count, note = _count(conn, name, spend_until)
        found.append(TableInfo(sanitize(name), shown_kind, count, columns, note))
    return found


def _count(conn: ReadConnection, table: str, spend_until: float) -> tuple[int | None, str]:
    """The table's row count and "", or None and why not (out of time, or unreadable)."""
    left = spend_until - time.monotonic()
    if left <= 0:
        return None, "not counted: counting the tables before it used the time for counting"
    conn.deadline.set(min(COUNT_SECONDS, left))
    try:
        (count,) = conn.execute(f"SELECT count(*) FROM {quote_name(table)}").fetchone()  # noqa: S608
    except sqlite3.OperationalError as exc:
        message = str(exc)
        if "interrupted" in message:
            return None, "not counted: counting took too long"
        module = _missing_module(message)
        if module:
            return None, f"needs the SQLite module {module}, which this backend does not have"
        return None, f"cannot be read: {sanitize(message)}"
    except sqlite3.DatabaseError as exc:
        return None, f"damaged: {sanitize(str(exc))}"
    return int(count), ""


def _find_table(conn: ReadConnection, name: str, table: str) -> str:
    """The table's name as the schema spells it: ``table`` exactly, or as :func:`tables`
    showed it (control characters made visible), or in another case (SQL names ignore it)."""
    if "\x00" not in table:
        names = [candidate for candidate, _, _ in _schema(conn)]
        if table in names:
            return table
        for matches in (
            [c for c in names if sanitize(c) == table],
            [c for c in names if c.lower() == table.lower()],
        ):
            if len(matches) == 1:
                return matches[0]
    raise NoSuchTable(f"table {sanitize(table)!r} does not exist in {name}; refresh the list of its tables")


def _rows(conn: ReadConnection, name: str, table: str, offset: int, limit: int, max_text: int) -> RowsPage:
    real = _find_table(conn, name, table)
    deadline = conn.deadline
    deadline.set(QUERY_SECONDS)
    try:
        cursor = conn.execute(
            f"SELECT * FROM {quote_name(real)} LIMIT ? OFFSET ?", (limit, offset)  # noqa: S608
        )
    except sqlite3.OperationalError as exc:
        module = _missing_module(str(exc))
        if module:
            raise DatabaseUnreadable(
                f"table {sanitize(real)!r} of {name} needs the SQLite module {module}, which this backend "
                "does not have; its rows cannot be shown"
            ) from None
        raise
    columns = [str(d[0]) for d in cursor.description or ()]
    secret = [secret_column(real, c) for c in columns]
    shown = [
        [shown_value(v, secret=s, max_text=max_text) for v, s in zip(row, secret, strict=False)]
        for row in cursor.fetchall()
    ]
    total, _note = _count(conn, real, time.monotonic() + COUNT_SECONDS)
    return RowsPage(sanitize(real), [sanitize(c) for c in columns], shown, offset, total)


__all__ = [
    "DatabaseUnreadable",
    "NoSuchTable",
    "NotADatabase",
    "ReadConnection",
    "Source",
    "SqliteViewError",
    "hide_secrets",
    "quote_name",
    "read_database",
    "rows",
    "secret_column",
    "shown_value",
    "tables",
]
