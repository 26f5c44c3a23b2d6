"""Verify on local repositories: a sound repository, a missing blob, a damaged one (plain and
encrypted), a manifest that cannot be read, each named with the snapshots and paths it hurts;
a sample of the blobs; one sandbox; the bucket's copy alone; and a prune beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moltconsole_backend.memory.repo import FileEntry, Repository, Snapshot, blob_key, new_snapshot_id
from moltconsole_backend.memory.store import LocalFirst, LocalStore
from moltconsole_backend.memory.verify import BlobProblem, SnapshotRef, how_many, verify


def write(repo: Repository, sandbox: str, files: dict[str, bytes], when: float = 1_780_000_000.0) -> Snapshot:
    entries = [FileEntry(path, repo.put_blob(content)[0], len(content)) for path, content in files.items()]
    snap = Snapshot(id=new_snapshot_id(when), sandbox=sandbox, time=when, reason="change", files=entries)
    repo.write_snapshot(snap)
    return snap


def stored(repo: Repository, name: str) -> Path:
    store = repo.store.local if isinstance(repo.store, LocalFirst) else repo.store
    assert isinstance(store, LocalStore)
    return store.root / blob_key(name)


def ref(snap: Snapshot) -> SnapshotRef:
    return SnapshotRef(snap.sandbox, snap.id)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalStore(tmp_path / "repo")).open()


def test_a_sound_repository_is_read_back_whole(repo: Repository) -> None:
    write(repo, "main", {"MEMORY.md": b"tea", "SOUL.md": b"tea", "a.json": b"{}"})
    write(repo, "work", {"MEMORY.md": b"coffee"}, when=1_780_000_100.0)
    seen: list[tuple[int, int]] = []
    report = verify(repo, progress=lambda done, total: seen.append((done, total)))
    assert report.ok and report.hurt == []
    assert (report.manifests, report.blobs_named, report.blobs_checked) == (2, 3, 3)
    names = {f.blob for s in repo.snapshots() for f in s.files}
    assert report.bytes_read == sum(stored(repo, name).stat().st_size for name in names)
    assert seen[-1] == (5, 5) and [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert report.where == repo.store.where


def test_missing_and_damaged_blobs_are_named_with_the_snapshots_they_hurt(repo: Repository) -> None:
    one = write(repo, "main", {"MEMORY.md": b"tea", "notes.md": b"ada"})
    two = write(repo, "main", {"MEMORY.md": b"tea", "notes.md": b"grace"}, when=1_780_000_100.0)
    other = write(repo, "work", {"w/MEMORY.md": b"tea"}, when=1_780_000_200.0)
    tea, ada = one.files[0].blob, one.files[1].blob
    stored(repo, tea).write_bytes(repo.encode(b"coffee"))  # decodes, but is not what its name says
    stored(repo, ada).unlink()

    report = verify(repo)
    assert not report.ok
    assert report.missing == [BlobProblem(ada, "not in the repository", [ref(one)], ["notes.md"])]
    assert report.damaged == [
        BlobProblem(tea, f"blob {tea} does not match its name: it is damaged",
                    sorted([ref(one), ref(two), ref(other)], key=lambda r: (r.sandbox, r.id)),
                    ["MEMORY.md", "w/MEMORY.md"]),
    ]
    assert report.hurt == sorted([ref(one), ref(two), ref(other)], key=lambda r: (r.sandbox, r.id))
    assert report.blobs_checked == 2  # the missing one cannot be read

    only_work = verify(repo, "work")
    assert only_work.manifests == 1 and [p.snapshots for p in only_work.damaged] == [[ref(other)]]
    assert only_work.missing == []


def test_damage_is_found_in_an_encrypted_repository(tmp_path: Path) -> None:
    repo = Repository(LocalStore(tmp_path / "enc"), passphrase="correct horse").open()
    snap = write(repo, "main", {"MEMORY.md": b"tea"})
    path = stored(repo, snap.files[0].blob)
    data = bytearray(path.read_bytes())
    data[20] ^= 1
    path.write_bytes(bytes(data))
    report = verify(repo)
    assert [(p.blob, p.reason) for p in report.damaged] == [
        (snap.files[0].blob, "cannot decrypt: a wrong key, or a damaged object"),
    ]


def test_a_manifest_that_cannot_be_read_is_reported_with_its_key(repo: Repository) -> None:
    good = write(repo, "main", {"MEMORY.md": b"tea"})
    bad = Snapshot(id=new_snapshot_id(1_780_000_100.0), sandbox="main", time=0, reason="change")
    repo.store.put(bad.key, b'{"id": 1}')
    report = verify(repo)
    assert report.manifests == 1 and report.blobs_named == len(good.files)
    assert [(b.key, b.reason) for b in report.bad_manifests] == [
        (bad.key, f"{bad.key} is not a snapshot manifest ('files')"),
    ]
    assert not report.ok


def test_a_sample_reads_back_a_number_or_a_fraction_of_the_blobs(repo: Repository) -> None:
    write(repo, "main", {f"f{n}": f"content {n}".encode() for n in range(10)})
    assert verify(repo, sample=3).blobs_checked == 3
    assert verify(repo, sample=0.25).blobs_checked == 3  # rounded up
    assert verify(repo, sample=1.0).blobs_checked == 10
    assert verify(repo, sample=50).blobs_checked == 10
    assert verify(repo, sample=0).blobs_checked == 0 and verify(repo, sample=0).blobs_named == 10
    for wrong in (1.5, 0.0, -1, True):
        with pytest.raises(ValueError, match="sample"):
            verify(repo, sample=wrong)
    assert how_many(None, 7) == 7


def test_a_blob_pruned_with_its_forgotten_snapshot_meanwhile_is_no_finding(
    repo: Repository, monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = write(repo, "main", {"MEMORY.md": b"old"})
    write(repo, "main", {"MEMORY.md": b"new"}, when=1_780_000_100.0)
    listing = repo.store.list

    def forget_and_prune_then_list(prefix: str) -> Iterator[str]:
        if prefix.startswith("blobs"):  # after verify read the manifests: old goes, with its blob
            repo.delete_snapshot(old)
            repo.store.delete(blob_key(old.files[0].blob))
        return listing(prefix)
    monkeypatch.setattr(repo.store, "list", forget_and_prune_then_list)
    report = verify(repo)
    assert report.ok, report


def test_the_bucket_copy_is_verified_alone(tmp_path: Path) -> None:
    local, bucket = LocalStore(tmp_path / "local"), LocalStore(tmp_path / "bucket")
    repo = Repository(LocalFirst(local, bucket)).open()
    snap = write(repo, "main", {"MEMORY.md": b"tea"})
    for key in ["config.json", snap.key, blob_key(snap.files[0].blob)]:
        bucket.put(key, local.get(key))  # what a push copies
    bucket.put(blob_key(snap.files[0].blob), b"damaged in the bucket")

    assert verify(repo).ok  # this backend reads the local copy, which is sound
    report = verify(repo, bucket=True)
    assert report.where == bucket.where
    assert [(p.blob, p.snapshots) for p in report.damaged] == [(snap.files[0].blob, [ref(snap)])]
    with pytest.raises(ValueError, match="has no bucket copy"):
        verify(Repository(local).open(), bucket=True)
