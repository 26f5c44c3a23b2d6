"""The memory repository on a local directory: snapshots and restores, what is uploaded again
(nothing unchanged), live SQLite captured consistently, encryption, damage found, crashes that
leave nothing dangling, and manifest paths that try to leave the state directory."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from moltconsole_backend.memory.capture import Capture, excluded, sqlite_image
from moltconsole_backend.memory.repo import (
    CorruptObject,
    FileEntry,
    Repository,
    RepositoryError,
    Snapshot,
    new_snapshot_id,
)
from moltconsole_backend.memory.restore import UnsafePath, restore_files, restore_snapshot, staging_dir
from moltconsole_backend.memory.store import LocalStore, StoreError
from tests.support.memory_store import damage_blob


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    (root / "workspace" / "memory").mkdir(parents=True)
    (root / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes tea.\n")
    (root / "workspace" / "memory" / "2026-12-03.md").write_text("Met Ada.\n")
    (root / "workspace" / "SOUL.md").write_text("# Memory\nThe user likes tea.\n")  # same content
    (root / "openclaw.json").write_text('{"gateway": {}}\n')
    os.chmod(root / "openclaw.json", 0o640)
    (root / "tmp").mkdir()
    (root / "tmp" / "scratch").write_text("not kept")
    (root / "gateway.lock").write_text("1")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalStore(tmp_path / "repo")).open()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_snapshot_restores_the_files_as_they_were(state: Path, repo: Repository, tmp_path: Path) -> None:
    report = Capture(repo, "main", state).take("manual")
    snap = report.snapshot
    assert sorted(f.path for f in snap.files) == [
        "openclaw.json", "workspace/MEMORY.md", "workspace/SOUL.md", "workspace/memory/2026-12-03.md",
    ]  # tmp/ and the lock left out
    assert report.new_blobs == 3  # MEMORY.md and SOUL.md have one blob
    assert repo.snapshots("main") == [snap]
    target = tmp_path / "restored"
    target.mkdir()
    restore_files(repo, snap.files, target)
    kept = {k: v for k, v in _tree(state).items() if not k.startswith("tmp/") and k != "gateway.lock"}
    assert _tree(target) == kept
    restored, original = (target / "openclaw.json").stat(), (state / "openclaw.json").stat()
    assert (restored.st_mode & 0o777, restored.st_mtime_ns) == (0o640, original.st_mtime_ns)


def test_nothing_unchanged_is_read_or_uploaded_again(state: Path, repo: Repository) -> None:
    capture = Capture(repo, "main", state)
    first = capture.take("manual")
    again = capture.take("schedule")
    assert (again.read_files, again.new_blobs, again.uploaded_bytes) == (0, 0, 0)
    (state / "workspace" / "memory" / "2026-12-03.md").write_text("Met Ada. She builds engines.\n")
    changed = capture.take("change")
    assert (changed.read_files, changed.new_blobs) == (1, 1)
    assert changed.snapshot.parent is None or isinstance(changed.snapshot.parent, str)
    assert {f.path for f in changed.snapshot.files} == {f.path for f in first.snapshot.files}


def test_a_live_sqlite_database_is_captured_with_what_is_still_in_its_log(
    tmp_path: Path, repo: Repository,
) -> None:
    root = tmp_path / "state"
    root.mkdir()
    db = sqlite3.connect(root / "openclaw.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # everything stays in the -wal file
    db.execute("CREATE TABLE turns (text TEXT)")
    db.executemany("INSERT INTO turns VALUES (?)", [("remember the tea",), ("and Ada",)])
    db.commit()
    assert (root / "openclaw.sqlite-wal").stat().st_size > 0
    capture = Capture(repo, "main", root)
    snap = capture.take("manual").snapshot
    assert [f.path for f in snap.files] == ["openclaw.sqlite"]  # -wal and -shm are in the image
    out = tmp_path / "out"
    out.mkdir()
    restore_files(repo, snap.files, out)
    copy = sqlite3.connect(out / "openclaw.sqlite")
    assert copy.execute("SELECT text FROM turns").fetchall() == [("remember the tea",), ("and Ada",)]
    copy.close()
    # A write that only grows the log is seen as a change.
    db.execute("INSERT INTO turns VALUES ('a third')")
    db.commit()
    assert capture.take("change").read_files == 1
    db.close()


def test_an_encrypted_repository_hides_names_and_content_and_wants_its_key(
    state: Path, tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "repo")
    repo = Repository(store, "correct horse").open()
    snap = Capture(repo, "main", state).take("manual").snapshot
    everything = b"".join(p.read_bytes() for p in (tmp_path / "repo").rglob("*") if p.is_file())
    assert b"likes tea" not in everything and b"MEMORY.md" not in everything
    plain = hashlib.sha256((state / "workspace" / "MEMORY.md").read_bytes()).hexdigest()
    assert all(f.blob != plain for f in snap.files)
    assert Repository(store, "correct horse").open().snapshots("main") == [snap]
    with pytest.raises(RepositoryError, match="wrong passphrase"):
        Repository(store, "wrong").open()
    with pytest.raises(RepositoryError, match="is encrypted; set the variable"):
        Repository(store).open()


def test_a_damaged_blob_is_found_not_restored(state: Path, repo: Repository, tmp_path: Path) -> None:
    snap = Capture(repo, "main", state).take("manual").snapshot
    entry = next(f for f in snap.files if f.path == "openclaw.json")
    damage_blob(repo, tmp_path / "repo", entry.blob)
    with pytest.raises(CorruptObject, match=entry.blob):
        repo.get_blob(entry.blob)


class _FailingManifest(LocalStore):
    def put(self, key: str, data: bytes) -> None:
        if key.startswith("snapshots/"):
            raise StoreError("the disk filled up")
        super().put(key, data)


def test_a_snapshot_cut_short_leaves_no_manifest_and_the_next_one_completes(
    state: Path, tmp_path: Path,
) -> None:
    broken = Repository(_FailingManifest(tmp_path / "repo")).open()
    with pytest.raises(StoreError):
        Capture(broken, "main", state).take("manual")
    repo = Repository(LocalStore(tmp_path / "repo")).open()
    assert repo.snapshots("main") == []  # blobs may be there; no manifest names a missing one
    snap = Capture(repo, "main", state).take("manual").snapshot
    for entry in snap.files:
        assert repo.get_blob(entry.blob)


def test_paths_that_leave_the_state_directory_are_refused(repo: Repository, tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "workspace").symlink_to(outside)  # planted link
    blob, _ = repo.put_blob(b"pwned")
    for path in ("../escape", "/etc/passwd", "a/../../escape", "workspace/AGENTS.md", "", "a//b", "./x"):
        with pytest.raises(UnsafePath):
            restore_files(repo, [FileEntry(path, blob, 5)], root)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape").exists()


def test_a_manifest_from_the_bucket_is_checked(repo: Repository, tmp_path: Path) -> None:
    sid = new_snapshot_id()
    repo.store.put(f"snapshots/main/{sid}.json", json.dumps({"id": sid, "sandbox": "main"}).encode())
    with pytest.raises(CorruptObject, match="not a snapshot manifest"):
        repo.read_snapshot("main", sid)
    repo.store.put("snapshots/main/not-an-id.json", b"{}")  # not a manifest's key: passed over
    assert [i for _, i in repo.snapshot_ids("main")] == [sid]
    with pytest.raises(ValueError):
        repo.store.put("snapshots/../x", b"")


def test_a_whole_restore_swaps_in_one_step_and_an_interrupted_one_changes_nothing(
    state: Path, repo: Repository, tmp_path: Path,
) -> None:
    snap = Capture(repo, "main", state).take("manual").snapshot
    (state / "workspace" / "MEMORY.md").write_text("overwritten\n")
    (state / "new.md").write_text("made after\n")
    before = _tree(state)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_snapshot(repo, snap, state, interrupt)
    assert _tree(state) == before  # untouched; the staging directory is what was cut short
    previous = restore_snapshot(repo, snap, state)
    assert previous is not None and _tree(previous) == before
    assert (state / "workspace" / "MEMORY.md").read_text() == "# Memory\nThe user likes tea.\n"
    assert not (state / "new.md").exists() and not staging_dir(state).exists()


def test_excludes_match_directories_and_names() -> None:
    patterns = ("tmp/*", "*-wal", "*/cache/*", "*.lock")
    assert excluded("tmp/x/y", patterns)
    assert excluded("agents/a/agent/openclaw-agent.sqlite-wal", patterns)
    assert excluded("agents/a/cache/blob", patterns)
    assert not excluded("workspace/memory/tmp.md", patterns)
    assert not excluded("workspace/MEMORY.md", patterns)


def test_snapshot_ids_sort_by_time() -> None:
    ids = [new_snapshot_id(t) for t in (1_700_000_000.5, 1_700_000_000.25, 1_800_000_000.0)]
    assert sorted(ids) == [ids[1], ids[0], ids[2]]
    assert Snapshot(ids[0], "main", 0.0, "manual").key == f"snapshots/main/{ids[0]}.json"


def test_a_database_at_rest_is_captured_without_creating_its_log_files(tmp_path: Path) -> None:
    """A read-only open of a WAL database with no -wal beside it would create -wal and -shm as
    the backend's user (root, for a root backend): the sandbox's user could not open them."""
    db = tmp_path / "odd name #1?.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES ('kept')")
    conn.commit()
    conn.close()  # the last connection checkpoints and removes the -wal
    assert not Path(f"{db}-wal").exists()
    image = sqlite_image(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == [db.name]
    copy = tmp_path.parent / f"{tmp_path.name}-copy.sqlite"
    copy.write_bytes(image)
    reopened = sqlite3.connect(copy)
    assert reopened.execute("SELECT x FROM t").fetchall() == [("kept",)]
    reopened.close()


def test_a_database_held_in_a_write_does_not_hold_the_snapshot_up(state: Path, repo: Repository) -> None:
    """OpenClaw's memory reindex holds a database in a write for many seconds; the backup API
    retried without end, so a snapshot (and a stop waiting for it) waited as long."""
    db = state / "agent.sqlite"
    first = sqlite3.connect(db)
    first.execute("CREATE TABLE t (x)")
    first.execute("INSERT INTO t VALUES ('before')")
    first.commit()
    capture = Capture(repo, "main", state)
    before = next(f for f in capture.take("manual").snapshot.files if f.path == "agent.sqlite")
    first.execute("BEGIN EXCLUSIVE")
    first.execute("INSERT INTO t VALUES ('during')")
    try:
        (state / "note.md").write_text("changed meanwhile\n")
        started = time.monotonic()
        report = capture.take("change")
        assert time.monotonic() - started < 5
    finally:
        first.rollback()
        first.close()
    kept = {f.path: f for f in report.snapshot.files}
    assert kept["agent.sqlite"] == before  # the last copy, not a torn one
    assert "note.md" in kept


def test_an_automatic_snapshot_that_finds_nothing_changed_writes_no_manifest(
    state: Path, repo: Repository,
) -> None:
    capture = Capture(repo, "main", state)
    first = capture.take("change").snapshot
    again = capture.take("schedule")
    assert again.unchanged and again.snapshot == first
    assert capture.take("manual").snapshot.id != first.id  # asked for by name: always written
    assert len(repo.snapshots("main")) == 2


def test_the_excludes_expression_agrees_with_fnmatch_on_every_prefix() -> None:
    """One compiled expression replaced fnmatch on every prefix of every path (1.2 s of a
    10,000-file snapshot); it must decide exactly as that did."""
    import fnmatch
    import itertools

    from moltconsole_backend.settings import DEFAULT_MEMORY_EXCLUDES

    def reference(path: str, patterns: list[str]) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in patterns)

    names = ["a", "tmp", "cache", "x.lock", "db.sqlite", "db.sqlite-wal", "db.sqlite.reindex-lock.sqlite",
             "logs", "[x]", "é", "b.tmp", "agent.sqlite.memory-reindex-1"]
    patterns = [*DEFAULT_MEMORY_EXCLUDES, "a/[xy]", "?", "workspace/private/*"]
    checked = 0
    for depth in (1, 2, 3):
        for parts in itertools.product(names, repeat=depth):
            path = "/".join(parts)
            assert excluded(path, patterns) == reference(path, patterns), path
            assert excluded(path, []) is False
            checked += 1
    assert checked > 1000


def test_a_large_database_is_captured_while_the_agent_commits_all_the_time(tmp_path: Path) -> None:
    """A backup in steps starts over whenever another process commits between two steps: a
    database of more than a few MiB under a busy agent was never copied (the last copy was kept
    each time). The agent here is another process committing as fast as it can."""
    import subprocess
    import sys

    db = tmp_path / "agent.sqlite"
    setup = sqlite3.connect(db)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    setup.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 4000,) for _ in range(5000)])  # ~20 MB
    setup.commit()
    setup.close()
    agent = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1])\n"
            "conn.execute('INSERT INTO t (body) VALUES (\\'turn\\')'); conn.commit()\n"
            "print('go', flush=True)\n"
            "while True:\n"
            "    conn.execute('INSERT INTO t (body) VALUES (\\'turn\\')'); conn.commit()\n"
        ), str(db)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline() == "go\n"  # committing now
        image = sqlite_image(db)
    finally:
        agent.kill()
        agent.wait()
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(image)
    check = sqlite3.connect(copy)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*) FROM t WHERE body != 'turn'").fetchone() == (5000,)
    assert check.execute("SELECT count(*) FROM t WHERE body = 'turn'").fetchone()[0] >= 1
    check.close()
