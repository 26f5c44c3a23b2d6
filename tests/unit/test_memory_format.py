"""Format 2 of the memory repository: packs, chunks, format 1 read and upgraded, repacking."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from moltconsole_backend.memory.capture import Capture
from moltconsole_backend.memory.replicate import Replica
from moltconsole_backend.memory.repo import (
    CHUNK_SIZE,
    CONFIG_KEY,
    INDEX,
    PACKS,
    CorruptObject,
    FileEntry,
    Repository,
    RepositoryError,
    Snapshot,
    blob_key,
    new_snapshot_id,
)
from moltconsole_backend.memory.restore import UnsafePath, restore_files, restore_snapshot
from moltconsole_backend.memory.retention import Policy, RetentionError, forget, prune
from moltconsole_backend.memory.store import LocalFirst, LocalStore
from moltconsole_backend.memory.verify import verify
from tests.support.memory_store import blob_span

KEEP_ONE = Policy(keep_last=1, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "repo")


@pytest.fixture
def repo(store: LocalStore) -> Repository:
    return Repository(store).open()


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def keys(store: LocalStore, prefix: str) -> list[str]:
    return sorted(store.list(prefix + "/"))


def test_many_small_files_go_into_one_pack_and_come_back_whole(
    repo: Repository, store: LocalStore, tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    (state / "memory").mkdir(parents=True)
    for n in range(300):
        (state / "memory" / f"{n:03}.md").write_text(f"note {n}\n" * (n % 7 + 1))
    report = Capture(repo, "main", state).take("manual")
    assert report.new_blobs == 300
    assert len(keys(store, PACKS)) == 1 and len(keys(store, INDEX)) == 1  # not 300 objects
    assert keys(store, "blobs") == []
    restore_snapshot(repo, report.snapshot, tmp_path / "back")
    assert tree(tmp_path / "back") == tree(state)


def test_a_large_file_changed_in_one_page_stores_one_new_chunk(
    repo: Repository, store: LocalStore, tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    big = state / "archive.bin"
    content = bytearray(os.urandom(3 * CHUNK_SIZE + 1000))  # four chunks, the last one short
    big.write_bytes(content)
    capture = Capture(repo, "main", state)
    first = capture.take("manual")
    entry = first.snapshot.files[0]
    assert len(entry.chunks) == 4 and entry.blob == repo.blob_name(bytes(content))
    assert first.new_blobs == 4

    content[CHUNK_SIZE + 5000:CHUNK_SIZE + 5000 + 4096] = os.urandom(4096)  # one page of chunk 1
    big.write_bytes(content)
    second = capture.take("manual")
    changed = second.snapshot.files[0]
    assert second.new_blobs == 1 and second.uploaded_bytes < CHUNK_SIZE + 1024
    assert [a == b for a, b in zip(entry.chunks, changed.chunks, strict=True)] == [True, False, True, True]
    assert repo.read_file(changed) == bytes(content)
    (tmp_path / "old").mkdir()
    restore_files(repo, [entry], tmp_path / "old")
    assert (tmp_path / "old" / "archive.bin").read_bytes() != bytes(content)
    assert repo.read_file(entry) == (tmp_path / "old" / "archive.bin").read_bytes()


def test_a_database_whose_agent_changed_one_row_stores_a_few_chunks(repo: Repository, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "openclaw.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO notes (body) VALUES (?)", [(os.urandom(2000),) for _ in range(4000)])
    db.commit()
    capture = Capture(repo, "main", state)
    first = capture.take("manual")
    size = first.snapshot.files[0].size
    assert size > 6 * CHUNK_SIZE
    db.execute("UPDATE notes SET body = ? WHERE id = 2000", (os.urandom(2000),))
    db.commit()
    second = capture.take("manual")
    assert 1 <= second.new_blobs <= 3  # the row's page, the header's page: not 8 MB again
    assert second.uploaded_bytes < 3 * CHUNK_SIZE + 4096
    image = repo.read_file(second.snapshot.files[0])
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(image)
    with sqlite3.connect(copy) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert check.execute("SELECT count(*) FROM notes").fetchone() == (4000,)
    db.close()


def test_chunks_named_out_of_order_by_a_manifest_are_refused(repo: Repository) -> None:
    one, two = b"a" * CHUNK_SIZE, b"b" * 10
    writer = repo.packer()
    chunks = (writer.add(one), writer.add(two))
    writer.finish()
    right = FileEntry("f", repo.blob_name(one + two), len(one + two), chunks=chunks)
    assert repo.read_file(right) == one + two
    swapped = FileEntry("f", right.blob, right.size, chunks=chunks[::-1])
    with pytest.raises(CorruptObject, match="chunks of f do not make its content"):
        repo.read_file(swapped)


def test_a_manifest_naming_a_chunk_that_is_not_a_blob_name_is_refused(repo: Repository) -> None:
    snap = Snapshot(id=new_snapshot_id(), sandbox="main", time=1.0, reason="manual")
    body = snap.to_json()
    body["files"] = [{"path": "f", "blob": "a" * 64, "size": 1, "chunks": ["../../etc/passwd"]}]
    repo.store.put(snap.key, json.dumps(body).encode())
    with pytest.raises(CorruptObject, match="names a chunk that is not a blob"):
        repo.read_snapshot("main", snap.id)


def make_format_1(store: LocalStore, files: dict[str, bytes]) -> Snapshot:
    """A repository as format 1 wrote it: every blob alone, config version 1."""
    store.put(CONFIG_KEY, json.dumps({"format": "moltconsole-memory", "version": 1, "id": "f1" * 16,
                                      "compression": "zlib", "encryption": None}).encode())
    old = Repository(store)
    old.id = "f1" * 16
    entries = []
    for path, content in files.items():
        name = old.blob_name(content)
        store.put(blob_key(name), old.encode(content))
        entries.append(FileEntry(path, name, len(content)))
    snap = Snapshot(id=new_snapshot_id(), sandbox="main", time=1.0, reason="manual", files=entries)
    store.put(snap.key, json.dumps(snap.to_json()).encode())
    return snap


def test_a_format_1_repository_is_read_and_marked_format_2(store: LocalStore, tmp_path: Path) -> None:
    old = make_format_1(store, {"MEMORY.md": b"tea\n", "big.bin": b"x" * (2 * CHUNK_SIZE)})
    bucket = LocalStore(tmp_path / "bucket")
    bucket.put(CONFIG_KEY, store.get(CONFIG_KEY))  # the bucket copy, as format 1 left it
    repo = Repository(LocalFirst(store, bucket)).open()
    assert json.loads(store.get(CONFIG_KEY))["version"] == 2
    restore_snapshot(repo, repo.read_snapshot("main", old.id), tmp_path / "back")
    assert tree(tmp_path / "back") == {"MEMORY.md": b"tea\n", "big.bin": b"x" * (2 * CHUNK_SIZE)}

    state = tmp_path / "back"
    (state / "MEMORY.md").write_text("green tea\n")
    Capture(repo, "main", state).take("manual")  # the old blob of big.bin is used, new ones packed
    assert Replica(repo, bucket).push() == 2  # the bucket's format 1 config is replaced, no mismatch
    assert json.loads(bucket.get(CONFIG_KEY))["version"] == 2
    assert verify(repo).ok and verify(repo, bucket=True).ok


def test_a_newer_format_is_refused_with_what_to_do(store: LocalStore) -> None:
    store.put(CONFIG_KEY, json.dumps({"format": "moltconsole-memory", "version": 3, "id": "x"}).encode())
    with pytest.raises(RepositoryError, match=r"version 3; this moltconsole reads versions 1, 2\. Upgrade"):
        Repository(store).open()


def test_prune_repacks_a_pack_mostly_unneeded_into_every_copy_first(tmp_path: Path) -> None:
    local, bucket = LocalStore(tmp_path / "local"), LocalStore(tmp_path / "bucket")
    repo = Repository(LocalFirst(local, bucket)).open()
    replica = Replica(repo, bucket)
    state = tmp_path / "state"
    state.mkdir()
    (state / "keep.md").write_bytes(os.urandom(1000))
    (state / "draft.md").write_bytes(os.urandom(100_000))
    capture = Capture(repo, "main", state)
    first = capture.take("manual").snapshot
    (state / "draft.md").unlink()
    capture.take("manual")
    assert replica.push() == 2
    old_pack = blob_span(repo, tmp_path / "local", first.files[1].blob)[0]  # keep.md's pack
    assert forget(repo, "main", KEEP_ONE).forget == [first]

    report = prune(repo)
    assert report.blobs_removed == 1 and report.blobs_kept == 1  # draft.md gone, keep.md carried
    assert not old_pack.exists()
    assert keys(local, PACKS) == keys(bucket, PACKS) and len(keys(local, PACKS)) == 1
    assert keys(local, INDEX) == keys(bucket, INDEX) and len(keys(local, INDEX)) == 1
    assert verify(repo).ok and verify(repo, bucket=True).ok
    restore_snapshot(repo, repo.latest("main"), tmp_path / "back")  # type: ignore[arg-type]
    assert tree(tmp_path / "back") == tree(state)


def test_a_damaged_index_stops_prune_and_is_reported_by_verify(repo: Repository, store: LocalStore) -> None:
    writer = repo.packer()
    writer.add(b"unused")
    writer.finish()
    (index,) = keys(store, INDEX)
    path = store.root.joinpath(*index.split("/"))
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    repo.forget_catalog()
    with pytest.raises(RetentionError, match=r"prune removed nothing: 1 manifest\(s\) or index\(es\)"):
        prune(repo)
    assert len(keys(store, PACKS)) == 1  # its pack is not taken for an orphan
    assert [bad.key for bad in verify(repo).bad_manifests] == [index]


def test_a_manifest_naming_a_path_twice_is_refused_and_the_state_is_left_as_it_was(
    repo: Repository, tmp_path: Path,
) -> None:
    name, _ = repo.put_blob(b"one")
    twice = [FileEntry("MEMORY.md", name, 3), FileEntry("MEMORY.md", name, 3)]
    snap = Snapshot(id=new_snapshot_id(), sandbox="main", time=1.0, reason="manual", files=twice)
    state = tmp_path / "state"
    state.mkdir()
    (state / "MEMORY.md").write_text("as it was\n")
    with pytest.raises(UnsafePath, match="names it twice"):
        restore_snapshot(repo, snap, state)
    assert tree(state) == {"MEMORY.md": b"as it was\n"}
