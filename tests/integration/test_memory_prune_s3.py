"""Forget, prune and verify against a real S3 server (SeaweedFS, authentication on): more than
1,000 unused blobs pruned through list pages of 1,000 (R2's limit), a local repository with
the bucket as its copy pruned in both places (a blob pruned and needed again goes up again),
an unreachable bucket that stops a prune before anything is removed, and a blob damaged or
lost in the bucket found by verify with the snapshots it hurts."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from moltconsole_backend.memory.capture import Capture
from moltconsole_backend.memory.replicate import Replica
from moltconsole_backend.memory.repo import BLOBS, Repository, blob_key, blob_names
from moltconsole_backend.memory.retention import Policy, RetentionError, forget, prune
from moltconsole_backend.memory.s3 import S3Location, S3Store, s3_store_from
from moltconsole_backend.memory.store import LocalFirst, LocalStore
from moltconsole_backend.memory.verify import SnapshotRef, verify
from tests.integration import memory_conftest_fixtures
from tests.integration.test_memory_s3 import fresh_prefix, moltworker_env, store_on
from tests.support.s3_server import S3Server

s3_server = memory_conftest_fixtures.s3_server  # the session's SeaweedFS, shared with other memory tests

KEEP_ONE = Policy(keep_last=1, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0)


def count_list_pages(store: S3Store) -> list[int]:
    pages: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        pages.append(len(parsed.get("Contents", [])))

    store._client.meta.events.register("after-call.s3.ListObjectsV2", count)
    return pages


def holds(store: LocalStore | S3Store, blob: str) -> bool:
    """Whether the repository in ``store`` has ``blob`` (in a pack that is there, or alone)."""
    return blob in Repository(store).open(create=False).catalog().where


def with_bucket(server: S3Server, local_dir: Path) -> tuple[Repository, Replica, LocalStore, S3Store]:
    local, bucket = LocalStore(local_dir), store_on(server, fresh_prefix())
    Replica.adopt(local, bucket)
    repo = Repository(LocalFirst(local, bucket)).open()
    return repo, Replica(repo, bucket), local, bucket


def test_more_than_1000_unused_blobs_are_pruned_across_list_pages(
    s3_server: S3Server, tmp_path: Path,
) -> None:
    store = store_on(s3_server, fresh_prefix(), page_size=1000)
    repo = Repository(store).open()
    state = tmp_path / "state"
    state.mkdir()
    for name in ("MEMORY.md", "SOUL.md", "openclaw.json"):
        (state / name).write_text(f"{name} stays\n")
    kept = Capture(repo, "main", state).take("manual").snapshot
    with ThreadPoolExecutor(8) as pool:  # backups cut short: blobs no manifest names
        list(pool.map(lambda n: repo.put_blob(f"orphan {n}".encode()), range(1_100)))
    pages = count_list_pages(store)

    started = time.monotonic()
    report = prune(repo)
    seconds = time.monotonic() - started
    assert (report.manifests, report.blobs_removed, report.blobs_kept) == (1, 1_100, 3)
    assert report.unmeasured == 1_101 and report.bytes_removed == 0  # no local copy to measure
    assert 1000 in pages  # the listing of the blobs followed a full page to the next
    assert blob_names(store.list(BLOBS + "/")) == set()  # every orphan gone
    assert set(Repository(store).open().catalog().where) == {f.blob for f in kept.files}
    assert verify(repo).ok
    print(f"pruned 1,100 blobs from SeaweedFS in {seconds:.2f} s")


def test_a_local_repository_and_its_bucket_copy_are_pruned_together(
    s3_server: S3Server, tmp_path: Path,
) -> None:
    repo, replica, local, bucket = with_bucket(s3_server, tmp_path / "local")
    state = tmp_path / "state"
    state.mkdir()
    memory = state / "MEMORY.md"
    memory.write_text("The user likes tea.\n")
    capture = Capture(repo, "main", state)
    first = capture.take("change").snapshot
    tea = first.files[0].blob
    memory.write_text("The user likes green tea.\n")
    capture.take("change")
    assert replica.push() == 2

    report = forget(repo, "main", KEEP_ONE)
    assert report.forget == [first]
    assert not bucket.exists(first.key) and not local.exists(first.key)
    assert prune(repo).blobs_removed == 1
    assert not holds(bucket, tea) and not holds(local, tea)

    memory.write_text("The user likes tea.\n")  # the pruned content is needed again
    again = capture.take("change").snapshot
    assert again.files[0].blob == tea
    assert replica.push() == 1
    assert holds(bucket, tea)
    assert verify(repo).ok and verify(repo, bucket=True).ok


def test_an_unreachable_bucket_stops_a_prune_before_anything_is_removed(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    location = S3Location(bucket="gone", prefix="p", endpoint_url=f"http://127.0.0.1:{port}", path_style=True)
    dead = s3_store_from(location, {"R2_ACCESS_KEY_ID": "k", "R2_SECRET_ACCESS_KEY": "s"})
    local = LocalStore(tmp_path / "local")
    Repository(local).open()  # made while the bucket was there
    repo = Repository(LocalFirst(local, dead)).open()
    orphan, _ = repo.put_blob(b"a backup cut short")

    started = time.monotonic()
    with pytest.raises(RetentionError, match=rf"removed nothing: cannot list the repository: .*:{port}"):
        prune(repo)
    assert time.monotonic() - started < 10
    assert local.exists(blob_key(orphan))


def test_a_blob_damaged_or_lost_in_the_bucket_is_found_with_the_snapshots_it_hurts(
    s3_server: S3Server, tmp_path: Path,
) -> None:
    repo, replica, _local, bucket = with_bucket(s3_server, tmp_path / "local")
    snaps = {}
    for sandbox in ("main", "work"):
        state = tmp_path / sandbox
        state.mkdir()
        (state / "MEMORY.md").write_text("The user likes tea.\n")  # one blob for both
        (state / f"{sandbox}.md").write_text(f"only {sandbox}\n")
        snaps[sandbox] = Capture(repo, sandbox, state).take("manual").snapshot
    assert replica.push() == 2
    tea = next(f.blob for f in snaps["main"].files if f.path == "MEMORY.md")
    only_work = next(f.blob for f in snaps["work"].files if f.path == "work.md")
    raw = s3_server.client()
    in_bucket = Repository(bucket).open(create=False)
    place = in_bucket.where(tea)
    pack = bytearray(bucket.get(place.key))
    pack[place.offset + (place.length or 0) - 1] ^= 0xFF  # the last byte of tea's blob
    raw.put_object(Bucket=s3_server.bucket, Key=f"{bucket.prefix}/{place.key}", Body=bytes(pack))
    raw.delete_object(Bucket=s3_server.bucket, Key=f"{bucket.prefix}/{in_bucket.where(only_work).key}")

    assert verify(repo).ok  # this backend's local copy is sound
    report = verify(repo, bucket=True)
    assert report.where == bucket.where and report.manifests == 2
    assert [(p.blob, p.snapshots, p.paths) for p in report.damaged] == [
        (tea, [SnapshotRef("main", snaps["main"].id), SnapshotRef("work", snaps["work"].id)], ["MEMORY.md"]),
    ]
    missing = [(p.blob, p.snapshots) for p in report.missing]
    assert missing == [(only_work, [SnapshotRef("work", snaps["work"].id)])]
    assert verify(repo, "main", bucket=True).missing == []  # work's blob does not hurt main

    on_bucket = Repository(store_on(s3_server, bucket.prefix, env=moltworker_env(s3_server)))
    on_bucket.open(create=False)
    assert [p.blob for p in verify(on_bucket).damaged] == [tea]  # a new server reading the bucket
