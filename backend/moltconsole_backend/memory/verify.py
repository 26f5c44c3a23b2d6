"""Checking a memory repository, like ``restic check``: every manifest is read, every blob a
manifest names must be in the store (every index must be readable, since it says where they
are), and all blobs (or a random sample) are read back, a pack's chosen blobs in one read, and
checked against their names (a blob's name is its content's hash, so damage cannot hide).

The findings name what they hurt: each missing or damaged blob with the snapshots (sandbox,
id) and file paths that need it, so the user knows which restores would fail.

It runs beside backups, forgets and prunes without stopping them: a blob found missing is
looked up again at the end, and reported only if it is still missing and a manifest that
still exists names it (a prune may have removed it with the forgotten snapshot that named it).

With a bucket behind the local repository, ``verify(repo)`` checks what this backend restores
from (the local copy, and the bucket where the local one lacks an object), and
``verify(repo, bucket=True)`` the bucket alone: what a new server would restore from.

It blocks (storage calls): call it from a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from moltconsole_backend.memory.repo import (
    BadManifest,
    CorruptObject,
    Repository,
    Where,
)
from moltconsole_backend.memory.store import LocalFirst, ObjectMissing

Progress = Callable[[int, int], None]  # steps done, steps in all (grows once the blobs to read are known)


@dataclass(frozen=True)
class SnapshotRef:
    """One snapshot, by its sandbox and id."""

    sandbox: str
    id: str


@dataclass(frozen=True)
class BlobProblem:
    """A blob that is missing or damaged, why, and the snapshots and file paths it hurts."""

    blob: str
    reason: str
    snapshots: list[SnapshotRef]
    paths: list[str]


@dataclass(frozen=True)
class VerifyReport:
    """What a verify found: where it looked, the manifests read and those that cannot be,
    the blobs the manifests name, how many were read back and their stored bytes, and the
    missing and damaged blobs."""

    where: str
    manifests: int
    bad_manifests: list[BadManifest]
    blobs_named: int
    blobs_checked: int
    bytes_read: int
    missing: list[BlobProblem] = field(default_factory=list)
    damaged: list[BlobProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.bad_manifests or self.missing or self.damaged)

    @property
    def hurt(self) -> list[SnapshotRef]:
        """Every snapshot that cannot be restored whole (a missing or damaged blob)."""
        refs = {ref for problem in self.missing + self.damaged for ref in problem.snapshots}
        return sorted(refs, key=lambda ref: (ref.sandbox, ref.id))


def how_many(sample: float | int | None, count: int) -> int:
    """The blobs to read back out of ``count``: all (None), a fraction (a float in (0, 1]),
    or a number (an int, at most ``count``). ValueError for anything else."""
    if sample is None:
        return count
    if isinstance(sample, bool):
        raise ValueError("sample is a fraction (0 < f <= 1) or a number of blobs, not true or false")
    if isinstance(sample, float):
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"a sample fraction is more than 0 and at most 1, not {sample}")
        return min(count, math.ceil(sample * count))
    if sample < 0:
        raise ValueError(f"a sample is a number of blobs, at least 0, not {sample}")
    return min(count, sample)


def bucket_copy(repo: Repository) -> Repository:
    """The bucket's copy of a local repository with a bucket behind it (ValueError if none)."""
    if not isinstance(repo.store, LocalFirst):
        raise ValueError(f"the memory repository at {repo.store.where} has no bucket copy")
    return repo.view(repo.store.remote)


def verify(
    repo: Repository,
    sandbox: str | None = None,
    sample: float | int | None = None,
    progress: Progress | None = None,
    *,
    bucket: bool = False,
) -> VerifyReport:
    """Check the manifests (of ``sandbox``, or all) and the blobs they name, reading back all
    of them or a ``sample`` (see ``how_many``); with ``bucket``, the bucket's copy alone.
    StoreError when a storage cannot be reached (nothing can be said then)."""
    started = time.monotonic()
    target = bucket_copy(repo) if bucket else repo
    tell = progress or (lambda done, total: None)
    how_many(sample, 0)  # a wrong sample is refused before any storage call

    # Manifests first, then the blob listing: a backup writes its blobs before its manifest,
    # so every blob a manifest read here names is in the listing that follows (unless pruned).
    ids = sorted(target.snapshot_ids(sandbox, every_copy=True))
    tell(0, len(ids))
    snapshots, bad = target.readable_snapshots(ids, lambda done: tell(done, len(ids)))
    users: dict[str, list[tuple[SnapshotRef, str]]] = {}
    for snap in snapshots:
        for entry in snap.files:
            for blob in entry.blobs:
                users.setdefault(blob, []).append((SnapshotRef(snap.sandbox, snap.id), entry.path))
    catalog = target.catalog(every_copy=True)
    bad = bad + catalog.bad_indexes
    missing = {name: "not in the repository" for name in users if name not in catalog.where}
    present = sorted(name for name in users if name in catalog.where)
    chosen = random.sample(present, how_many(sample, len(present)))
    groups: dict[str, list[tuple[str, Where]]] = {}
    for name in chosen:
        place = catalog.where[name]
        groups.setdefault(place.key, []).append((name, place))
    total = len(ids) + len(chosen)
    damaged: dict[str, str] = {}
    read = 0
    done = len(ids)
    for key, blobs in groups.items():
        found: dict[str, bytes | Exception]
        try:
            checked, size = target.fetch_checked(key, blobs)
            found = dict(checked)
            read += size
        except ObjectMissing:
            found = {name: ObjectMissing(key) for name, _ in blobs}
        for name, value in found.items():
            if isinstance(value, ObjectMissing):
                missing[name] = "not in the repository"
            elif isinstance(value, CorruptObject):
                damaged[name] = str(value)
        done += len(blobs)
        tell(done, total)

    if missing:  # again, now: a prune beside us may have removed it with its snapshot
        still = set(target.snapshot_ids(sandbox, every_copy=True))
        stored = target.catalog(every_copy=True).where
        for name in list(missing):
            users[name] = [(ref, path) for ref, path in users[name] if (ref.sandbox, ref.id) in still]
            if not users[name] or name in stored:
                del missing[name]
    return VerifyReport(
        where=target.store.where,
        manifests=len(snapshots),
        bad_manifests=bad,
        blobs_named=len(users),
        blobs_checked=len(chosen),
        bytes_read=read,
        missing=[_problem(name, why, users[name]) for name, why in sorted(missing.items())],
        damaged=[_problem(name, why, users[name]) for name, why in sorted(damaged.items())],
        seconds=time.monotonic() - started,
    )


def _problem(name: str, reason: str, users: list[tuple[SnapshotRef, str]]) -> BlobProblem:
    snapshots = sorted({ref for ref, _ in users}, key=lambda ref: (ref.sandbox, ref.id))
    return BlobProblem(name, reason, snapshots, sorted({path for _, path in users}))
