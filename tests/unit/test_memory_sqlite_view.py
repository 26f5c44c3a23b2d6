"""The read-only SQLite view of the Memory screen: real OpenClaw databases (tables, counts,
secrets hidden, binary and long values shown safely), live databases read without disturbing
their writer (with a write-ahead log, and without one, where a read-only open would create
files), and hostile files (not a database, cut short, damaged, odd table names, a view that
never ends, a module this SQLite lacks, a link to another file)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from moltconsole_backend.memory import sqlite_view
from moltconsole_backend.memory.sqlite_view import (
    HIDDEN_SECRET,
    DatabaseUnreadable,
    NoSuchTable,
    NotADatabase,
    ReadConnection,
    SqliteViewError,
    read_database,
    rows,
    secret_column,
    shown_value,
    tables,
)
from moltconsole_shared.wire.memory_db import ROWS_PAGE, TABLE_LIST, ElidedValue, TableList

FIXTURE = Path(__file__).parent / "fixtures" / "openclaw_state"
STATE_DB = FIXTURE / "state" / "openclaw.sqlite"
AGENT_DB = FIXTURE / "agents" / "main" / "agent" / "openclaw-agent.sqlite"


def make_db(path: Path, *statements: str, wal: bool = False) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return path


# -- real OpenClaw databases -------------------------------------------------------------------


def test_the_global_state_database_lists_every_table_with_its_rows_and_columns() -> None:
    found = tables(STATE_DB)
    assert len(found) == 110
    assert [t.name for t in found] == sorted(t.name for t in found)
    by_name = {t.name: t for t in found}
    assert (by_name["audit_events"].rows, by_name["task_runs"].rows, by_name["cron_jobs"].rows) == (16, 6, 3)
    assert by_name["acp_sessions"].rows == 0
    identities = by_name["device_identities"]
    assert identities.kind == "table" and identities.note == ""
    assert [c.name for c in identities.columns] == [
        "identity_key", "device_id", "public_key_pem", "private_key_pem", "created_at_ms", "updated_at_ms",
    ]
    assert identities.columns[0].primary_key and identities.columns[0].type == "TEXT"
    assert identities.columns[3].not_null and not identities.columns[3].primary_key


def test_the_agent_database_shows_its_full_text_indexes_as_virtual_tables() -> None:
    by_name = {t.name: t for t in tables(AGENT_DB)}
    assert by_name["transcript_events"].rows == 28
    fts = by_name["memory_index_chunks_fts"]
    assert fts.kind == "virtual" and fts.rows is not None and fts.rows > 0
    assert by_name["memory_index_chunks_fts_data"].kind == "table"  # its shadow table


def test_secret_columns_are_hidden_and_their_neighbours_shown() -> None:
    identity = rows(STATE_DB, "device_identities")
    assert identity.columns[2:4] == ["public_key_pem", "private_key_pem"]
    (row,) = identity.rows
    assert isinstance(row[2], str) and row[2].startswith("-----BEGIN PUBLIC KEY-----\u240a")  # newline shown
    assert row[3] == ElidedValue("secret", "", len(_fixture_value("device_identities", "private_key_pem")))
    assert isinstance(row[4], int)
    (hmac_row,) = rows(STATE_DB, "config_revision_keys").rows
    assert hmac_row == [1, ElidedValue("secret", "", 32)]


def _fixture_value(table: str, column: str) -> str:
    conn = sqlite3.connect(f"file:{STATE_DB}?mode=ro", uri=True)
    try:
        return str(conn.execute(f"SELECT {column} FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_a_compressed_transcript_entry_shows_as_a_blob_and_long_json_is_cut_with_its_length() -> None:
    page = rows(AGENT_DB, "transcript_events", offset=0, limit=100)
    assert page.total == 28 and len(page.rows) == 28 and page.offset == 0
    zstd_col, json_col, nav_col = (
        page.columns.index(c) for c in ("event_zstd", "event_json", "navigation_json")
    )
    (packed,) = [r for r in page.rows if r[zstd_col] is not None]
    blob = packed[zstd_col]
    assert isinstance(blob, ElidedValue) and blob.kind == "blob"
    assert blob.preview.startswith("28b52ffd") and len(blob.preview) == 32  # zstd's magic, 16 bytes
    assert packed[json_col] is None
    nav = packed[nav_col]
    assert isinstance(nav, ElidedValue) and nav.kind == "text"
    assert len(nav.preview) == sqlite_view.MAX_TEXT and nav.size > sqlite_view.MAX_TEXT
    assert nav.preview.startswith('{"version":1')


def test_pages_follow_each_other_and_bad_bounds_are_refused() -> None:
    first = rows(AGENT_DB, "transcript_events", offset=0, limit=10)
    second = rows(AGENT_DB, "transcript_events", offset=10, limit=10)
    whole = rows(AGENT_DB, "transcript_events", offset=0, limit=20)
    assert first.rows + second.rows == whole.rows
    assert rows(AGENT_DB, "transcript_events", offset=28).rows == []
    with pytest.raises(ValueError, match="limit must be from 1 to 1000, not 0"):
        rows(AGENT_DB, "transcript_events", limit=0)
    with pytest.raises(ValueError, match="offset must be 0 or more"):
        rows(AGENT_DB, "transcript_events", offset=-1)


def test_table_names_are_matched_as_sql_does_and_a_missing_one_is_said() -> None:
    assert rows(STATE_DB, "AUDIT_EVENTS", limit=1).table == "audit_events"
    with pytest.raises(NoSuchTable, match=r"table 'no_such' does not exist in .*openclaw\.sqlite; refresh"):
        rows(STATE_DB, "no_such")


def test_the_same_database_as_bytes_from_a_snapshot_reads_the_same_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = AGENT_DB.read_bytes()
    assert tables(data, label="agents/main/agent/openclaw-agent.sqlite") == tables(AGENT_DB)
    assert rows(data, "session_windows") == rows(AGENT_DB, "session_windows")
    assert list(tmp_path.iterdir()) == []


def test_the_wire_carries_pages_and_tables_unchanged() -> None:
    page = rows(AGENT_DB, "transcript_events", limit=20)
    assert ROWS_PAGE.read(json.loads(ROWS_PAGE.dump_json(page))) == page
    listed = TableList(tables(AGENT_DB))
    assert TABLE_LIST.read(json.loads(TABLE_LIST.dump_json(listed))) == listed


# -- live databases -----------------------------------------------------------------------------


def test_a_live_database_is_read_through_its_log_without_touching_it_or_blocking_its_writer(
    tmp_path: Path,
) -> None:
    path = make_db(tmp_path / "live.sqlite", "CREATE TABLE notes (text TEXT)", wal=True)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the rows stay in the log
    writer.executemany("INSERT INTO notes VALUES (?)", [("one",), ("two",)])
    writer.commit()
    wal = tmp_path / "live.sqlite-wal"
    before = (wal.stat().st_size, wal.stat().st_mtime_ns, path.stat().st_mtime_ns)

    assert rows(path, "notes").rows == [["one"], ["two"]]

    def read_while_the_agent_writes(conn: ReadConnection) -> list[str]:
        seen = [r[0] for r in conn.execute("SELECT text FROM notes")]
        writer.execute("INSERT INTO notes VALUES ('three')")  # not kept waiting by the reader
        writer.commit()
        return seen + [r[0] for r in conn.execute("SELECT text FROM notes")]

    # One read transaction: the reader's view stays as it began.
    assert read_database(path, read_while_the_agent_writes) == ["one", "two", "one", "two"]
    assert rows(path, "notes").total == 3
    assert wal.stat().st_size > before[0] and path.stat().st_mtime_ns == before[2]  # nothing checkpointed
    writer.close()


def test_a_closed_wal_database_is_read_without_creating_log_files_the_agent_would_find(
    tmp_path: Path,
) -> None:
    path = make_db(tmp_path / "closed.sqlite", "CREATE TABLE t (x)", "INSERT INTO t VALUES (7)", wal=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["closed.sqlite"]
    assert rows(path, "t").rows == [[7]]
    assert [t.name for t in tables(path)] == ["t"]
    # A read-only open would have left closed.sqlite-wal and -shm behind, owned by the backend.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["closed.sqlite"]


def test_a_database_that_changes_while_it_is_read_is_read_again(tmp_path: Path) -> None:
    path = make_db(tmp_path / "busy.sqlite", "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")
    calls = []

    def work(conn: ReadConnection) -> int:
        calls.append(1)
        if len(calls) == 1:  # the agent writes while we read
            make_db(path, "INSERT INTO t VALUES (2)")
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    assert read_database(path, work) == 2
    assert len(calls) == 2


def test_a_database_that_never_stops_changing_is_said_to(tmp_path: Path) -> None:
    path = make_db(tmp_path / "churn.sqlite", "CREATE TABLE t (x)")

    def work(conn: ReadConnection) -> None:
        make_db(path, "INSERT INTO t VALUES (1)")

    with pytest.raises(DatabaseUnreadable, match="kept changing while it was read; try again"):
        read_database(path, work)


# -- hostile files ----------------------------------------------------------------------------


def test_files_that_are_not_databases_are_said_to_be_so(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("# not a database\n" * 10)
    with pytest.raises(NotADatabase, match=r"notes\.sqlite is not a SQLite database"):
        tables(text)
    empty = tmp_path / "openclaw-agent.sqlite.generation-lock.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(NotADatabase, match=r"is empty \(0 bytes\)"):
        tables(empty)
    with pytest.raises(NotADatabase, match=r"^the database is not a SQLite database"):
        rows(b"\x00" * 4096, "t")
    with pytest.raises(NotADatabase, match="not a regular file"):
        tables(tmp_path)
    with pytest.raises(SqliteViewError, match=r"gone\.sqlite does not exist"):
        tables(tmp_path / "gone.sqlite")


def test_a_database_cut_short_is_said_to_be_damaged() -> None:
    data = AGENT_DB.read_bytes()
    for cut in (100, 4096, len(data) // 2):
        with pytest.raises(DatabaseUnreadable, match=r"cut\.sqlite is damaged or cut short .*earlier"):
            tables(data[:cut], label="cut.sqlite")
        with pytest.raises(DatabaseUnreadable, match="damaged or cut short"):
            rows(data[:cut], "transcript_events", label="cut.sqlite")


def test_a_damaged_table_is_noted_and_the_others_still_listed(tmp_path: Path) -> None:
    path = tmp_path / "damaged.sqlite"
    shutil.copy(AGENT_DB, path)
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    # The table's root page and its indexes' (a count reads the smallest index).
    roots = conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'transcript_events'").fetchall()
    conn.close()
    with open(path, "r+b") as fh:
        for (root,) in roots:
            fh.seek((root - 1) * page_size)
            fh.write(b"\xff" * page_size)
    by_name = {t.name: t for t in tables(path)}
    assert by_name["transcript_events"].rows is None
    assert "damaged" in by_name["transcript_events"].note or "malformed" in by_name["transcript_events"].note
    assert by_name["session_windows"].rows == 2
    with pytest.raises(DatabaseUnreadable, match="damaged or cut short"):
        rows(path, "transcript_events")


@pytest.mark.parametrize(
    "name",
    [
        'a"; DROP TABLE keep; --',
        "Robert'); DROP TABLE keep;--",
        "with space",
        "x\x1b]52;c;ZXZpbA==\x07y",  # an OSC 52 clipboard write in a table name
        "select",
    ],
)
def test_tables_named_with_quotes_sql_or_escapes_are_shown_and_read_safely(tmp_path: Path, name: str) -> None:
    quoted = '"' + name.replace('"', '""') + '"'
    path = make_db(
        tmp_path / "odd.sqlite", "CREATE TABLE keep (x)", "INSERT INTO keep VALUES (1)",
        f"CREATE TABLE {quoted} ({quoted} TEXT)", f"INSERT INTO {quoted} VALUES ('v')",
    )
    listed = [t for t in tables(path) if t.name != "keep"]
    assert len(listed) == 1 and listed[0].rows == 1
    assert "\x1b" not in listed[0].name and "\x07" not in listed[0].name
    page = rows(path, name)
    assert page.rows == [["v"]] and all("\x1b" not in c for c in page.columns)
    assert rows(path, listed[0].name) == page  # by the name as it was shown
    assert rows(path, "keep").rows == [[1]]  # nothing was dropped


def test_a_view_that_never_ends_is_cut_off_in_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_view, "COUNT_SECONDS", 0.2)
    monkeypatch.setattr(sqlite_view, "QUERY_SECONDS", 0.3)
    path = make_db(
        tmp_path / "loop.sqlite", "CREATE TABLE t (x)",
        "CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT i FROM n WHERE i < 0",
    )
    by_name = {t.name: t for t in tables(path)}
    assert by_name["forever"].kind == "view"
    assert by_name["forever"].rows is None
    assert by_name["forever"].note == "not counted: counting took too long"
    assert by_name["t"].rows == 0
    with pytest.raises(DatabaseUnreadable, match=r"took too long to read \(over 0 s\); try a smaller page"):
        rows(path, "forever")


def test_counting_stops_when_its_time_is_used_up(tmp_path: Path) -> None:
    path = make_db(tmp_path / "many.sqlite", *(f"CREATE TABLE t{i} (x)" for i in range(5)))
    found = tables(path, count_budget=0.0)
    assert all(t.rows is None and "used the time for counting" in t.note for t in found)


def test_a_virtual_table_of_a_module_this_sqlite_lacks_is_noted(tmp_path: Path) -> None:
    path = make_db(tmp_path / "vec.sqlite", "CREATE TABLE plain (x)")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute(
        "INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES "
        "('table', 'embeddings', 'embeddings', 0, 'CREATE VIRTUAL TABLE embeddings USING vec0(v float[4])')"
    )
    conn.commit()
    conn.close()
    by_name = {t.name: t for t in tables(path)}
    assert by_name["embeddings"].kind == "virtual" and by_name["embeddings"].rows is None
    assert by_name["embeddings"].note == "needs the SQLite module vec0, which this backend does not have"
    assert by_name["plain"].rows == 0
    with pytest.raises(DatabaseUnreadable, match="needs the SQLite module vec0"):
        rows(path, "embeddings")


def test_a_link_in_the_state_is_not_followed(tmp_path: Path) -> None:
    link = tmp_path / "openclaw.sqlite"
    link.symlink_to(STATE_DB)
    with pytest.raises(SqliteViewError, match="is a symbolic link; links in the agent's state are not"):
        tables(link)


def test_text_that_is_not_utf8_is_shown_with_replacement_characters(tmp_path: Path) -> None:
    path = make_db(tmp_path / "latin.sqlite", "CREATE TABLE t (x TEXT)")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO t VALUES (CAST(X'63616688e9' AS TEXT))")
    conn.commit()
    conn.close()
    assert rows(path, "t").rows == [["caf\ufffd\ufffd"]]


def test_nothing_is_written_by_a_view_or_anything_else(tmp_path: Path) -> None:
    path = make_db(tmp_path / "ro.sqlite", "CREATE TABLE t (x)")
    with pytest.raises(DatabaseUnreadable, match=r"could not be read .*readonly database"):
        read_database(path, lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
    assert rows(path, "t").total == 0


def test_a_write_cut_short_by_a_crash_is_left_for_openclaw_to_repair(tmp_path: Path) -> None:
    path = make_db(tmp_path / "crashed.sqlite", "CREATE TABLE t (x)")
    make_db(path, *["INSERT INTO t VALUES ('" + "a" * 500 + "')"] * 500)
    # A writer that dies mid-transaction, its changes spilled into the file: a hot journal.
    crash = (
        "import os, sqlite3\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA cache_size=1'); c.execute('BEGIN'); c.execute(\"UPDATE t SET x = 'b'\")\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", crash], check=True)
    journal = tmp_path / "crashed.sqlite-journal"
    assert journal.stat().st_size > 0
    with pytest.raises(DatabaseUnreadable, match=r"left in the middle of a write .*OpenClaw repairs it"):
        rows(path, "t")
    assert journal.stat().st_size > 0  # not rolled back by us: the file stays as the agent left it


# -- values ---------------------------------------------------------------------------------


def test_values_are_made_safe_to_show() -> None:
    assert shown_value(None) is None and shown_value(42) == 42 and shown_value(1.5) == 1.5
    assert shown_value(float("inf")) == "inf" and shown_value(float("nan")) == "nan"
    assert shown_value("a\x1b[2Jb\nc") == "a\u241b[2Jb\u240ac"
    assert shown_value(b"\x00\x01" * 100) == ElidedValue("blob", "0001" * 8, 200)
    long = "x" * 1000
    assert shown_value(long, max_text=10) == ElidedValue("text", "x" * 10, 1000)
    assert shown_value("short", secret=True) == ElidedValue("secret", "", 5)
    assert shown_value(b"key", secret=True) == ElidedValue("secret", "", 3)
    assert shown_value(12345, secret=True) == 12345  # a count in a "tokens" column is no secret


def test_keys_inside_text_are_hidden_even_when_cut() -> None:
    key = "sk-ant-api03-" + "A1b2C3d4" * 6
    assert shown_value(f"my key is {key} ok") == f"my key is {HIDDEN_SECRET} ok"
    pem = "-----BEGIN PRIVATE KEY-----\n" + "MC4CAQAwBQYDK2VwBCIEI" * 40 + "\n-----END PRIVATE KEY-----"
    shown = shown_value(f"config: {pem}", max_text=60)
    assert isinstance(shown, ElidedValue) and shown.kind == "text"
    assert "MC4CAQ" not in shown.preview and HIDDEN_SECRET in shown.preview


@pytest.mark.parametrize(
    ("table", "column", "secret"),
    [
        ("device_auth_tokens", "token", True),
        ("config_revision_keys", "hmac_key", True),
        ("device_identities", "private_key_pem", True),
        ("x", "apiKey", True),
        ("web_push_subscriptions", "auth", True),
        ("device_pairing_paired", "tokens_json", True),
        ("auth_profile_store", "store_json", True),
        ("secret_store_entries", "value", True),
        ("device_identities", "public_key_pem", False),
        ("session_nodes", "session_key", False),
        ("plugin_state_entries", "entry_key", False),
        ("transcript_events", "event_json", False),
        ("session_nodes", "entry_json", False),
    ],
)
def test_secret_columns_are_known_by_their_names(table: str, column: str, secret: bool) -> None:
    assert secret_column(table, column) is secret


def test_no_file_is_left_in_the_directory_of_a_read_database(tmp_path: Path) -> None:
    path = make_db(tmp_path / "plain.sqlite", "CREATE TABLE t (x)")
    tables(path)
    rows(path, "t")
    assert os.listdir(tmp_path) == ["plain.sqlite"]
