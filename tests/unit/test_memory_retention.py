"""Retention on local repositories: which snapshots a policy keeps and why, forget removing
manifests, prune removing only blobs no manifest names, and prune against what goes on beside
it: a backup between its blobs and its manifest, a backup that would reuse a pruned blob, a
copy to the bucket in progress, and a bucket that is down or goes away midway."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from moltconsole_backend.memory.capture import Capture
from moltconsole_backend.memory.replicate import Replica
from moltconsole_backend.memory.repo import FileEntry, Repository, Snapshot, blob_key, new_snapshot_id
from moltconsole_backend.memory.retention import (
    Policy,
    PruneReport,
    RetentionError,
    choose,
    forget,
    prune,
)
from moltconsole_backend.memory.store import LocalFirst, LocalStore, StoreUnreachable
from moltconsole_backend.memory.verify import verify
from moltconsole_backend.settings import MemorySettings

NOTHING = Policy(keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def snap(when: str, reason: str = "change", sandbox: str = "main") -> Snapshot:
    t = at(when)
    return Snapshot(id=new_snapshot_id(t), sandbox=sandbox, time=t, reason=reason)


def write(
    repo: Repository, when: str, *contents: bytes, reason: str = "change", sandbox: str = "main",
) -> Snapshot:
    """A snapshot taken at ``when`` (UTC) of files holding ``contents``."""
    files = []
    for number, content in enumerate(contents):
        name, _ = repo.put_blob(content)
        files.append(FileEntry(f"f{number}", name, len(content)))
    base = snap(when, reason, sandbox)
    made = Snapshot(id=base.id, sandbox=sandbox, time=base.time, reason=reason, files=files)
    repo.write_snapshot(made)
    return made


def blobs_in(store: LocalStore) -> set[str]:
    return {key.rsplit("/", 1)[-1] for key in store.list("blobs/")}


def every_blob_there(repo: Repository) -> bool:
    return all(repo.store.exists(blob_key(f.blob)) for s in repo.snapshots() for f in s.files)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalStore(tmp_path / "repo")).open()


# --- choose ---------------------------------------------------------------------------------
def test_the_newest_n_are_kept_and_the_newest_of_each_period() -> None:
    snaps = [
        snap("2026-12-03T10:50"), snap("2026-12-03T10:20"), snap("2026-12-03T09:40"),
        snap("2026-12-02T23:00"), snap("2026-12-02T08:00"), snap("2026-11-30T12:00"),
        snap("2026-11-02T12:00"),
    ]
    decision = choose(list(reversed(snaps)), Policy(keep_last=2, keep_hourly=0, keep_daily=3,
                                                       keep_weekly=0, keep_monthly=2))
    by_id = {s.id: s for s in snaps}
    kept = {by_id[i].time: why for i, why in decision.reasons.items()}
    assert kept == {
        at("2026-12-03T10:50"): ["last 1", "daily 2026-12-03", "monthly 2026-12"],
        at("2026-12-03T10:20"): ["last 2"],
        at("2026-12-02T23:00"): ["daily 2026-12-02"],
        at("2026-11-30T12:00"): ["daily 2026-11-30", "monthly 2026-11"],
    }
    assert [s.time for s in decision.keep] == sorted(kept, reverse=True)  # newest first
    assert [s.time for s in decision.forget] == [
        at("2026-12-03T09:40"), at("2026-12-02T08:00"), at("2026-11-02T12:00"),
    ]


def test_hours_and_iso_weeks_are_utc_periods() -> None:
    snaps = [
        snap("2026-12-07T00:10"),  # Monday: ISO week 50
        snap("2026-12-06T23:50"),  # Sunday: week 49
        snap("2026-12-06T23:10"),
        snap("2026-11-30T01:00"),  # Monday of week 49
        snap("2026-11-29T22:00"),  # week 48
    ]
    decision = choose(snaps, Policy(keep_last=0, keep_hourly=2, keep_daily=0, keep_weekly=3, keep_monthly=0))
    reasons = [decision.reasons.get(s.id) for s in snaps]
    assert reasons == [
        ["hourly 2026-12-07 00:00", "weekly 2026-W50"],
        ["hourly 2026-12-06 23:00", "weekly 2026-W49"],
        None,
        None,
        ["weekly 2026-W48"],
    ]


def test_the_newest_snapshot_and_the_newest_safety_snapshot_are_always_kept() -> None:
    newest, safety, older_safety, old = (
        snap("2026-12-03T12:00"), snap("2026-12-03T11:00", "safety"),
        snap("2026-12-02T11:00", "safety"), snap("2026-12-01T11:00", "import"),
    )
    decision = choose([old, older_safety, safety, newest], NOTHING)
    assert decision.reasons == {newest.id: ["newest"], safety.id: ["newest safety"]}
    assert decision.forget == [older_safety, old]  # other safety and import snapshots count as any
    assert choose([], NOTHING) == choose([], Policy(1, 1, 1, 1, 1))


def test_the_policy_comes_from_the_settings_and_refuses_negative_numbers() -> None:
    memory = MemorySettings(keep_last=3, keep_hourly=4, keep_daily=5, keep_weekly=6, keep_monthly=7)
    assert Policy.from_settings(memory) == Policy(3, 4, 5, 6, 7)
    with pytest.raises(ValueError, match="keep_daily cannot be negative"):
        Policy(1, 0, -1, 0, 0)


# --- forget and prune -----------------------------------------------------------------------
def test_forget_removes_the_manifests_the_policy_does_not_keep(repo: Repository) -> None:
    a = write(repo, "2026-12-01T10:00", b"one")
    b = write(repo, "2026-12-02T10:00", b"two")
    c = write(repo, "2026-12-03T10:00", b"three")
    other = write(repo, "2026-12-01T09:00", b"four", sandbox="work")
    policy = Policy(keep_last=2, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0)

    dry = forget(repo, "main", policy, dry_run=True)
    assert (dry.keep, dry.forget, dry.dry_run) == ([c, b], [a], True)
    assert repo.snapshots("main") == [a, b, c]

    report = forget(repo, "main", policy)
    assert report.forget == [a] and report.reasons == {c.id: ["last 1"], b.id: ["last 2"]}
    assert repo.snapshots() == [other, b, c]  # another sandbox's snapshots are not touched
    assert repo.store.exists(blob_key(a.files[0].blob))  # the blob waits for prune


def test_forget_keeps_a_manifest_it_cannot_read_and_says_so(repo: Repository) -> None:
    write(repo, "2026-12-01T10:00", b"one")
    newest = write(repo, "2026-12-02T10:00", b"two")
    damaged = snap("2026-12-03T10:00")
    repo.store.put(damaged.key, b"not json")
    report = forget(repo, "main", NOTHING)
    assert report.keep == [newest]
    unreadable = [(bad.key, bad.reason) for bad in report.unreadable]
    assert unreadable == [(damaged.key, f"{damaged.key} is not JSON")]
    assert repo.store.exists(damaged.key)


def test_prune_removes_only_blobs_no_manifest_of_any_sandbox_names(repo: Repository) -> None:
    store = repo.store
    assert isinstance(store, LocalStore)
    old = write(repo, "2026-12-01T10:00", b"shared", b"only old" * 1000)
    write(repo, "2026-12-02T10:00", b"shared", b"new")
    write(repo, "2026-12-01T10:00", b"only old" * 1000, sandbox="work")  # names the same blob
    orphan, _ = repo.put_blob(b"a backup cut short")
    repo.delete_snapshot(old)
    gone_size = (store.root / blob_key(orphan)).stat().st_size
    before = blobs_in(store)

    dry = prune(repo, dry_run=True)
    assert (dry.blobs_removed, dry.blobs_kept, dry.bytes_removed) == (1, 3, gone_size)
    assert blobs_in(store) == before

    seen: list[tuple[int, int]] = []
    report = prune(repo, progress=lambda done, total: seen.append((done, total)))
    assert (report.manifests, report.blobs_removed, report.blobs_kept, report.unmeasured) == (2, 1, 3, 0)
    assert report.bytes_kept == sum((store.root / blob_key(n)).stat().st_size for n in blobs_in(store))
    assert blobs_in(store) == before - {orphan}
    assert every_blob_there(repo)
    assert seen[-1] == (4, 4) and seen == sorted(seen)  # 2 manifests read, the listing, 1 delete
    assert not repo.has_blob(orphan)
    assert repo.put_blob(b"a backup cut short")[1] > 0  # known no more: written again


def test_a_manifest_prune_cannot_read_stops_it_before_any_delete(repo: Repository) -> None:
    write(repo, "2026-12-01T10:00", b"kept")
    orphan, _ = repo.put_blob(b"unused")
    damaged = snap("2026-12-02T10:00")
    repo.store.put(damaged.key, b"{}")
    unreadable = r"removed nothing: 1 manifest\(s\) or index\(es\) cannot be read.*verify"
    with pytest.raises(RetentionError, match=unreadable):
        prune(repo)
    assert repo.store.exists(blob_key(orphan))


class Gate:
    """Pauses a call until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def paused(*args: Any) -> Any:
            self.reached.set()
            assert self.go.wait(30)
            return call(*args)
        return paused


def run(target: Callable[[], Any], done: threading.Event | None = None) -> tuple[threading.Thread, list[Any]]:
    """``target`` in a thread; its result (or exception) in the list, ``done`` set after."""
    out: list[Any] = []

    def body() -> None:
        try:
            out.append(target())
        except Exception as exc:
            out.append(exc)
        finally:
            if done is not None:
                done.set()
    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def test_a_prune_waits_for_a_backup_that_reused_a_blob_no_manifest_names_yet(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = write(repo, "2026-12-01T10:00", b"The user likes tea.\n")
    write(repo, "2026-12-02T10:00", b"newer")
    repo.delete_snapshot(gone)  # its blob is stored, and no manifest names it
    state = tmp_path / "state"
    state.mkdir()
    (state / "MEMORY.md").write_text("The user likes tea.\n")  # the same content: found stored

    gate = Gate()
    monkeypatch.setattr(repo, "write_snapshot", gate.wrap(repo.write_snapshot))
    backup, taken = run(lambda: Capture(repo, "main", state).take("manual"))
    assert gate.reached.wait(30)  # its blobs are stored (that one skipped), its manifest not yet

    blocked_or_done = threading.Event()  # the prune waits for the backup, or (unprotected) ends
    monkeypatch.setattr(repo.access, "waiting", blocked_or_done.set)
    pruning, pruned = run(lambda: prune(repo), blocked_or_done)
    assert blocked_or_done.wait(30)
    gate.go.set()
    backup.join(30)
    pruning.join(30)

    assert isinstance(pruned[0], PruneReport) and pruned[0].blobs_removed == 0
    report = taken[0]
    assert report.new_blobs == 0  # it did reuse the stored blob
    assert repo.get_blob(report.snapshot.files[0].blob) == b"The user likes tea.\n"


def test_a_file_unchanged_since_a_pruned_snapshot_is_read_again(repo: Repository, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "MEMORY.md").write_text("The user likes tea.\n")
    capture = Capture(repo, "main", state)
    first = capture.take("change").snapshot
    # The keeper remembers an older snapshot after restoring it, which forget may then remove.
    repo.delete_snapshot(first)
    assert prune(repo).blobs_removed == 1

    report = capture.take("change")
    assert report.read_files == 1 and report.new_blobs == 1
    assert repo.get_blob(report.snapshot.files[0].blob) == b"The user likes tea.\n"


# --- a bucket behind the local repository ---------------------------------------------------
class Bucket(LocalStore):
    """A bucket that can be cut off, or go away after a number of deletes."""

    down = False
    deletes_left: int | None = None

    def _check(self) -> None:
        if self.down:
            raise StoreUnreachable("the bucket is down")

    def put(self, key: str, data: bytes) -> None:
        self._check()
        super().put(key, data)

    def get(self, key: str) -> bytes:
        self._check()
        return super().get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._check()
        return super().get_range(key, start, length)

    def exists(self, key: str) -> bool:
        self._check()
        return super().exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        self._check()
        return super().list(prefix)

    def delete(self, key: str) -> None:
        if self.deletes_left is not None:
            if self.deletes_left == 0:
                self.down = True
            self.deletes_left -= 1
        self._check()
        super().delete(key)


@pytest.fixture
def bucket(tmp_path: Path) -> Bucket:
    return Bucket(tmp_path / "bucket")


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "local")


@pytest.fixture
def both(local: LocalStore, bucket: Bucket) -> tuple[Repository, Replica]:
    repo = Repository(LocalFirst(local, bucket)).open()
    return repo, Replica(repo, bucket)


def test_forget_and_prune_remove_both_copies(
    both: tuple[Repository, Replica], local: LocalStore, bucket: Bucket,
) -> None:
    repo, replica = both
    old = write(repo, "2026-12-01T10:00", b"old")
    new = write(repo, "2026-12-02T10:00", b"new")
    replica.push()
    forget(repo, "main", Policy(1, 0, 0, 0, 0))
    assert not local.exists(old.key) and not bucket.exists(old.key) and bucket.exists(new.key)
    report = prune(repo)
    assert report.blobs_removed == 1
    assert blobs_in(local) == blobs_in(bucket) == {new.files[0].blob}


def test_an_unreachable_bucket_stops_forget_and_prune_before_anything_is_removed(
    both: tuple[Repository, Replica], local: LocalStore, bucket: Bucket,
) -> None:
    repo, replica = both
    old = write(repo, "2026-12-01T10:00", b"old")
    write(repo, "2026-12-02T10:00", b"new")
    replica.push()
    repo.delete_snapshot(old)
    write(repo, "2026-12-03T10:00", b"newest")
    bucket.down = True
    with pytest.raises(RetentionError, match=r"forget removed nothing: .*the bucket is down"):
        forget(repo, "main", NOTHING)
    with pytest.raises(RetentionError, match="prune removed nothing: cannot list the repository: the bucket"):
        prune(repo)
    assert len(blobs_in(local)) == 3 and len(list(local.list("snapshots/"))) == 2


def test_a_bucket_that_goes_away_midway_keeps_every_manifest_whole(
    both: tuple[Repository, Replica], local: LocalStore, bucket: Bucket,
) -> None:
    repo, replica = both
    old = [write(repo, f"2026-12-01T1{n}:00", f"old {n}".encode()) for n in range(5)]
    newest = write(repo, "2026-12-02T10:00", b"new", b"old 0")
    replica.push()
    for gone in old:
        repo.delete_snapshot(gone)
    bucket.deletes_left = 2
    with pytest.raises(RetentionError, match="prune removed 2 of 4 unused objects, then stopped: the bucket"):
        prune(repo)
    bucket.down, bucket.deletes_left = False, None
    bucket_copy = repo.view(bucket)
    assert bucket_copy.snapshots() == [newest]
    assert verify(bucket_copy).ok and verify(repo).ok
    assert prune(repo).blobs_removed == 2  # the rest, once the bucket is back
    assert blobs_in(local) == blobs_in(bucket) == {f.blob for f in newest.files}


def test_the_bucket_gets_a_pruned_blob_again_when_a_new_snapshot_needs_it(
    both: tuple[Repository, Replica], bucket: Bucket,
) -> None:
    repo, replica = both
    old = write(repo, "2026-12-01T10:00", b"The user likes tea.\n")
    write(repo, "2026-12-02T10:00", b"new")
    replica.push()
    repo.delete_snapshot(old)
    prune(repo)
    again = write(repo, "2026-12-03T10:00", b"The user likes tea.\n")  # written locally again
    replica.push()  # its copy of what the bucket holds was listed before the prune
    assert bucket.exists(blob_key(again.files[0].blob))
    assert verify(repo.view(bucket)).ok


def test_a_forget_waits_for_a_copy_to_the_bucket_in_progress(
    both: tuple[Repository, Replica], bucket: Bucket, monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, replica = both
    old = write(repo, "2026-12-01T10:00", b"old")
    write(repo, "2026-12-02T10:00", b"new")
    gate = Gate()
    put = bucket.put

    def put_manifest_after_gate(key: str, data: bytes) -> None:
        if key == old.key:
            gate.wrap(put)(key, data)
        else:
            put(key, data)
    monkeypatch.setattr(bucket, "put", put_manifest_after_gate)
    pushing, _ = run(replica.push)
    assert gate.reached.wait(30)  # the push read the old manifest and is about to copy it

    blocked_or_done = threading.Event()
    monkeypatch.setattr(repo.access, "waiting", blocked_or_done.set)
    forgetting, forgot = run(lambda: forget(repo, "main", Policy(1, 0, 0, 0, 0)), blocked_or_done)
    assert blocked_or_done.wait(30)
    gate.go.set()
    pushing.join(30)
    forgetting.join(30)

    assert forgot[0].forget == [old]
    assert not bucket.exists(old.key)  # not copied back after the forget removed it
