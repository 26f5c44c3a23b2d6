"""Which snapshots to keep (``choose``), removing the others' manifests (``forget``), and
removing the blobs no manifest names any more (``prune``), like restic's forget and prune.

The policy, as restic reads it: the newest ``keep_last`` snapshots are kept; then, for hours,
days, ISO weeks and months (UTC), the newest snapshot of each of the newest ``keep_<period>``
periods that have a snapshot. A snapshot is kept if any rule keeps it, and the reasons are
told. Two more rules of our own: the newest snapshot is always kept (whatever the numbers),
and so is the newest ``safety`` snapshot (the one taken before the last restore: it is the way
back from a restore that went wrong, and a burst of change snapshots after a restore must not
push it out). Other safety snapshots, and ``import`` snapshots, count like any other.

Forget removes manifests only; the blobs stay until a prune finds no manifest of any sandbox
naming them. Prune reads every manifest while backups go on, then holds the repository
exclusively (repo.py), reads the manifests written meanwhile, lists what is stored, and
deletes; a backup waits for it, and no blob a backup found stored is deleted under it. A
manifest or an index that cannot be read stops a prune before anything is deleted (what it
names is unknown). A pack is deleted when none of its blobs is named (and so is a pack no
index lists, left by a backup cut short); a pack some of whose blobs are still named is kept
whole (no repacking), and an index goes once every pack it lists is gone.

With a bucket behind the local repository, both copies are listed (an unreachable bucket
stops forget and prune before anything is deleted) and a delete removes the bucket's copy
first, then the local one: a bucket that goes away midway leaves only objects nothing needs
(prune again when it is back), never a manifest whose blob is gone. The bytes a prune reports
are the packs' and blobs' stored sizes on the local disk; one only in the bucket is counted
in ``unmeasured`` (measuring it would mean reading it).

All of these block (storage calls): call them from a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from moltconsole_backend.memory.repo import (
    BadManifest,
    Catalog,
    CorruptObject,
    Repository,
    RepositoryError,
    Snapshot,
    Where,
    blob_key,
)
from moltconsole_backend.memory.store import LocalFirst, LocalStore, ObjectStore, StoreError
from moltconsole_backend.settings import MemorySettings

Progress = Callable[[int, int], None]  # steps done, steps in all (the total may grow)

_PERIODS: tuple[tuple[str, str], ...] = (
    ("hourly", "%Y-%m-%d %H:00"),
    ("daily", "%Y-%m-%d"),
    ("weekly", "%G-W%V"),
    ("monthly", "%Y-%m"),
)


class RetentionError(RepositoryError):
    """A forget or prune stopped; the message says what was done and what to do."""


@dataclass(frozen=True)
class Policy:
    """How many snapshots to keep: the newest ``keep_last``, and the newest of each of the
    newest ``keep_hourly`` hours, ``keep_daily`` days, ``keep_weekly`` ISO weeks and
    ``keep_monthly`` months (UTC) that have one."""

    keep_last: int
    keep_hourly: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")

    @classmethod
    def from_settings(cls, memory: MemorySettings) -> Policy:
        """The policy of the ``[memory]`` settings."""
        return cls(
            keep_last=memory.keep_last, keep_hourly=memory.keep_hourly, keep_daily=memory.keep_daily,
            keep_weekly=memory.keep_weekly, keep_monthly=memory.keep_monthly,
        )


@dataclass(frozen=True)
class Decision:
    """Which snapshots a policy keeps and forgets (each newest first), and why each kept one
    is kept (snapshot id -> reasons like "last 3", "daily 2026-12-03", "newest safety")."""

    keep: list[Snapshot]
    forget: list[Snapshot]
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _period(when: float, pattern: str) -> str:
    return datetime.fromtimestamp(when, tz=UTC).strftime(pattern)


def choose(snapshots: Sequence[Snapshot], policy: Policy) -> Decision:
    """Apply ``policy`` to ``snapshots`` (of one sandbox, in any order)."""
    ordered = sorted(snapshots, key=lambda snap: (snap.time, snap.id), reverse=True)
    reasons: dict[str, list[str]] = {}

    def keep(snap: Snapshot, why: str) -> None:
        reasons.setdefault(snap.id, []).append(why)

    for place, snap in enumerate(ordered[: policy.keep_last], 1):
        keep(snap, f"last {place}")
    for kind, pattern in _PERIODS:
        wanted = getattr(policy, f"keep_{kind}")
        periods: list[str] = []
        for snap in ordered:  # newest first, so each period's first snapshot is its newest
            if len(periods) >= wanted:
                break
            period = _period(snap.time, pattern)
            if periods and periods[-1] == period:
                continue
            periods.append(period)
            keep(snap, f"{kind} {period}")
    if ordered and ordered[0].id not in reasons:
        keep(ordered[0], "newest")
    safety = next((snap for snap in ordered if snap.reason == "safety"), None)
    if safety is not None:
        keep(safety, "newest safety")
    return Decision(
        keep=[snap for snap in ordered if snap.id in reasons],
        forget=[snap for snap in ordered if snap.id not in reasons],
        reasons=reasons,
    )


@dataclass(frozen=True)
class ForgetReport:
    """What a forget of one sandbox did (or, with ``dry_run``, would do): the snapshots kept
    and forgotten (newest first), why each kept one is, and the manifests it could not read
    (kept; ``verify`` tells more)."""

    sandbox: str
    dry_run: bool
    keep: list[Snapshot]
    forget: list[Snapshot]
    reasons: dict[str, list[str]]
    unreadable: list[BadManifest]


def forget(repo: Repository, sandbox: str, policy: Policy, dry_run: bool = False) -> ForgetReport:
    """Remove the manifests of ``sandbox``'s snapshots that ``policy`` does not keep (their
    blobs stay until ``prune``). RetentionError if a storage fails (what was removed is said;
    the rest are kept)."""
    try:
        snapshots, unreadable = repo.readable_snapshots(list(repo.snapshot_ids(sandbox, every_copy=True)))
    except StoreError as exc:
        raise RetentionError(f"forget removed nothing: cannot read {sandbox}'s snapshots: {exc}") from None
    decision = choose(snapshots, policy)
    report = ForgetReport(sandbox, dry_run, decision.keep, decision.forget, decision.reasons, unreadable)
    if dry_run or not decision.forget:
        return report
    removed = 0
    with repo.exclusive():  # a copy to the bucket in progress must not put one back after us
        for snap in decision.forget:
            try:
                repo.delete_snapshot(snap)
            except StoreError as exc:
                raise RetentionError(
                    f"forget removed {removed} of {len(decision.forget)} snapshots of {sandbox}, then "
                    f"stopped: {exc}. The others are kept; run it again once the storage is reachable"
                ) from None
            removed += 1
    return report


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (or, with ``dry_run``, would remove): the manifests it read (of
    every sandbox), the blobs removed and kept, and their stored bytes measured on the local
    disk (``unmeasured`` blobs are only in the bucket, so not counted in the bytes)."""

    dry_run: bool
    manifests: int
    blobs_removed: int
    bytes_removed: int
    blobs_kept: int
    bytes_kept: int
    unmeasured: int
    seconds: float


def _local_root(store: ObjectStore) -> Path | None:
    if isinstance(store, LocalStore):
        return store.root
    if isinstance(store, LocalFirst):
        return _local_root(store.local)
    return None


def _stored_size(root: Path | None, key: str) -> int | None:
    if root is None:
        return None
    try:
        return os.stat(root.joinpath(*key.split("/"))).st_size
    except OSError:
        return None


REPACK_SHARE = 0.2  # a pack whose unneeded blobs are this share of its bytes is repacked


@dataclass(frozen=True)
class _Plan:
    """What a prune does: the packs to repack (their needed blobs carried to new packs), the
    objects to delete (packs, blobs stored alone, then indexes), the blobs removed and kept,
    and the stored bytes the repacked packs free."""

    repack: dict[str, list[tuple[str, Where]]]
    objects: list[str]
    indexes: list[str]
    removed: set[str]
    kept: set[str]
    repack_freed: int


def _plan(catalog: Catalog, named: set[str]) -> _Plan:
    unused_loose = catalog.loose - named
    dead = {
        pack for pack, contents in catalog.packs.items() if named.isdisjoint(b for b, _, _ in contents)
    } | catalog.orphans
    removed = set(unused_loose)
    for pack in dead:
        removed.update(b for b, _, _ in catalog.packs.get(pack, ()))
    repack: dict[str, list[tuple[str, Where]]] = {}
    freed = 0
    for pack, contents in catalog.packs.items():
        unneeded = sum(length for blob, _, length in contents if blob not in named)
        if pack in dead or not unneeded or unneeded < REPACK_SHARE * sum(n for _, _, n in contents):
            continue
        repack[pack] = [(blob, Where(pack, offset, n)) for blob, offset, n in contents if blob in named]
        removed.update(blob for blob, _, _ in contents if blob not in named)
        freed += unneeded
    kept = named & set(catalog.where)
    removed -= kept  # a blob in a dead pack and a kept one too
    gone = dead | set(repack)
    indexes = sorted(
        index for index, packs in catalog.indexes.items()
        if all(pack in gone or pack not in catalog.packs for pack in packs)  # deleted, or gone already
    )
    objects = sorted(gone) + sorted(blob_key(name) for name in unused_loose)
    return _Plan(repack, objects, indexes, removed, kept, freed)


def _everywhere(store: ObjectStore) -> Callable[[str, bytes], None]:
    """A put into every copy of the repository: a repacked pack must be in the bucket before
    the pack it replaces is deleted from both."""
    if not isinstance(store, LocalFirst):
        return store.put

    def put(key: str, data: bytes) -> None:
        store.remote.put(key, data)
        store.local.put(key, data)

    return put


def _repack(repo: Repository, plan: _Plan) -> None:
    """Carry the needed blobs of the packs ``plan`` repacks into new packs, with their index,
    written to every copy before anything is deleted."""
    writer = repo.packer(_everywhere(repo.store))
    for pack, blobs in plan.repack.items():
        try:
            for name, data in repo.fetch_stored(pack, blobs).items():
                writer.add_stored(name, data)
        except CorruptObject as exc:
            raise RetentionError(
                f"prune removed nothing: a blob a snapshot needs is damaged ({exc}). Run verify to "
                "see what it hurts"
            ) from None
    writer.finish()


def prune(
    repo: Repository, dry_run: bool = False, progress: Progress | None = None,
    forgotten: Sequence[Snapshot] = (),
) -> PruneReport:
    """Delete the blobs no manifest (of any sandbox) names. Safe while backups run in this
    process (see the module docstring). RetentionError when a manifest cannot be read or a
    storage fails (nothing a snapshot needs is ever removed; what was removed is said).

    ``forgotten``: snapshots a dry-run forget chose, counted as gone so that a dry run tells
    what a real forget and prune would remove."""
    started = time.monotonic()
    tell = progress or (lambda done, total: None)
    gone = {(snap.sandbox, snap.id) for snap in forgotten}
    try:
        ids = set(repo.snapshot_ids(every_copy=True)) - gone
    except StoreError as exc:
        raise RetentionError(f"prune removed nothing: cannot list the repository: {exc}") from None
    total = len(ids) + 1
    tell(0, total)
    snapshots, bad = _read(repo, ids, lambda done: tell(done, total))
    with contextlib.nullcontext() if dry_run else repo.exclusive():
        try:
            # Manifests written since the first listing (by backups that went on meanwhile),
            # and what is stored, listed now that no backup is between its packs and manifest.
            newer = set(repo.snapshot_ids(every_copy=True)) - ids - gone
            catalog = repo.catalog(every_copy=True)
        except StoreError as exc:
            raise RetentionError(f"prune removed nothing: cannot list the repository: {exc}") from None
        more, more_bad = _read(repo, newer, None)
        bad += more_bad + catalog.bad_indexes
        if bad:
            first = bad[0]
            raise RetentionError(
                f"prune removed nothing: {len(bad)} manifest(s) or index(es) cannot be read, so what "
                f"they name is unknown ({first.key}: {first.reason}). Run verify to see them all; "
                "restore or remove them before pruning"
            )
        named = {blob for snap in snapshots + more for entry in snap.files for blob in entry.blobs}
        plan = _plan(catalog, named)
        root = _local_root(repo.store)
        doomed = plan.objects + plan.indexes
        kept_objects = [key for key in catalog.packs if key not in set(plan.objects)] + list(plan.repack)
        kept_objects += [blob_key(name) for name in catalog.loose & named]
        sizes = {key: _stored_size(root, key) for key in doomed + kept_objects}
        total = len(ids) + len(doomed) + 1
        tell(len(ids) + 1, total)
        deleted = 0
        try:
            if plan.repack and not dry_run:
                try:
                    _repack(repo, plan)
                except StoreError as exc:
                    raise RetentionError(
                        f"prune removed nothing: cannot write a repacked pack: {exc}"
                    ) from None
            for key in [] if dry_run else doomed:
                try:
                    repo.store.delete(key)
                except StoreError as exc:
                    raise RetentionError(
                        f"prune removed {deleted} of {len(doomed)} unused objects, then stopped: {exc}. "
                        "Nothing a snapshot needs was removed; run prune again once the storage is reachable"
                    ) from None
                deleted += 1
                tell(len(ids) + 1 + deleted, total)
        finally:
            if deleted or (plan.repack and not dry_run):
                repo.objects_deleted()
    if dry_run:
        tell(total, total)
    return PruneReport(
        dry_run=dry_run,
        manifests=len(snapshots) + len(more),
        blobs_removed=len(plan.removed),
        bytes_removed=sum(sizes[key] or 0 for key in doomed if key not in plan.repack) + plan.repack_freed,
        blobs_kept=len(plan.kept),
        bytes_kept=sum(sizes[key] or 0 for key in kept_objects) - plan.repack_freed,
        unmeasured=sum(1 for size in sizes.values() if size is None),
        seconds=time.monotonic() - started,
    )


def _read(
    repo: Repository, ids: set[tuple[str, str]], progress: Callable[[int], None] | None,
) -> tuple[list[Snapshot], list[BadManifest]]:
    try:
        return repo.readable_snapshots(sorted(ids), progress)
    except StoreError as exc:
        raise RetentionError(f"prune removed nothing: cannot read a manifest: {exc}") from None
