"""The bucket as a copy of the local repository.

Snapshots are always written to the local repository first (a local disk is there when the
bucket is not), then copied object by object, as stored, to the bucket: the packs (and blobs
stored alone) holding a snapshot's blobs that the bucket lacks, then the indexes of those
packs, then its manifest, last. So the bucket holds the same repository (same config, same
names, same encryption), a snapshot there never names a missing blob,
and while the bucket is unreachable the local repository is the queue: nothing is lost, and
everything goes up when it returns.

On a new server the local repository is empty and the bucket holds one: ``adopt`` copies its
config down first, so the two are one repository again and restores can read from the bucket.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from moltconsole_backend.memory.repo import (
    BLOBS,
    CONFIG_KEY,
    INDEX,
    PACKS,
    SNAPSHOT_ID,
    SNAPSHOTS,
    Repository,
    Snapshot,
)
from moltconsole_backend.memory.store import LocalFirst, ObjectMissing, ObjectStore, StoreError

log = logging.getLogger(__name__)
COPIERS = 8  # objects copied to the bucket at once


class ReplicaMismatch(StoreError):
    """The bucket holds another repository than the local one."""


class Replica:
    """Copies the local repository's objects to ``remote``."""

    def __init__(self, local: Repository, remote: ObjectStore) -> None:
        self.local = local
        self.remote = remote
        self._known: set[str] | None = None  # keys of packs, indexes and blobs in the bucket
        self._manifests: set[str] | None = None  # manifest keys in the bucket
        self._checked = False  # the bucket's config was found to be this repository's
        self._lock = threading.Lock()
        local.on_blobs_deleted(self.forget_listing)  # a prune deleted blobs from the bucket too

    @property
    def where(self) -> str:
        return self.remote.where

    @staticmethod
    def adopt(local_store: ObjectStore, remote: ObjectStore) -> bool:
        """Before the local repository is opened: if it has no config and the bucket has one,
        take the bucket's (a new server restoring from the bucket). True if it did."""
        try:
            local_store.get(CONFIG_KEY)
            return False
        except ObjectMissing:
            pass
        try:
            config = remote.get(CONFIG_KEY)
        except ObjectMissing:
            return False
        local_store.put(CONFIG_KEY, config)
        return True

    def check(self) -> None:
        """Make sure the bucket holds this repository (or none yet: then give it the config);
        asked once, and again after a failure or a listing forgotten."""
        if self._checked:
            return
        mine = self.local.store.get(CONFIG_KEY)
        try:
            theirs = self.remote.get(CONFIG_KEY)
        except ObjectMissing:
            self.remote.put(CONFIG_KEY, mine)
            return
        if theirs != mine and not self._older_config(theirs, mine):
            raise ReplicaMismatch(
                f"{self.remote.where} holds another memory repository than {self.local.store.where}; "
                "point memory.repository at an empty prefix, or move the local repository away to "
                "take the bucket's"
            )
        self._checked = True

    def _older_config(self, theirs: bytes, mine: bytes) -> bool:
        """Whether the bucket's config is this repository's at an older format version (the
        local one was upgraded); if so it is replaced by the local one."""
        try:
            old, new = json.loads(theirs), json.loads(mine)
            same = {**old, "version": None} == {**new, "version": None}
            older = same and int(old["version"]) < int(new["version"])
        except (ValueError, TypeError, KeyError):
            return False
        if older:
            self.remote.put(CONFIG_KEY, mine)
        return older

    def _local_manifests(self) -> list[tuple[str, str, str]]:
        """(key, sandbox, id) of each manifest in the local storage alone, oldest first (the
        repository's own listing would list the bucket too)."""
        store = self.local.store
        local = store.local if isinstance(store, LocalFirst) else store
        found = []
        for key in local.list(SNAPSHOTS + "/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2].endswith(".json") and SNAPSHOT_ID.fullmatch(parts[2][:-5]):
                found.append((key, parts[1], parts[2][:-5]))
        return sorted(found, key=lambda item: item[2])

    def _remote_state(self) -> tuple[set[str], set[str]]:
        if self._known is None or self._manifests is None:
            known = {key for prefix in (PACKS, INDEX, BLOBS) for key in self.remote.list(prefix + "/")}
            manifests = set(self.remote.list("snapshots/"))
            self._known, self._manifests = known, manifests
        return self._known, self._manifests

    def pending(self, ask: bool = True) -> list[str]:
        """Manifest keys the bucket does not have yet, oldest first (listing the bucket once;
        without ``ask``, from what it held when last listed, or nothing known)."""
        with self._lock:
            manifests = self._remote_state()[1] if ask else (self._manifests or set())
            return [key for key, _, _ in self._local_manifests() if key not in manifests]

    def push(self) -> int:
        """Copy every snapshot the bucket lacks (packs and blobs first, their indexes next,
        each manifest last); the number of snapshots copied. StoreUnreachable when the bucket
        cannot be reached (the next push goes on where this one stopped). No forget or prune
        runs meanwhile (a manifest they removed is never copied back after them)."""
        with self.local.shared(), self._lock:
            self.check()
            known, manifests = self._remote_state()
            copied = 0
            for key, sandbox, snapshot_id in self._local_manifests():
                if key in manifests:
                    continue  # there already: not read again
                snap = self.local.read_snapshot(sandbox, snapshot_id)
                held, indexes = self._objects_of(snap, known)
                self._copy(held, known)
                self._copy(indexes, known)
                self.remote.put(snap.key, self.local.store.get(snap.key))
                manifests.add(snap.key)
                copied += 1
            return copied

    def _objects_of(self, snap: Snapshot, known: set[str]) -> tuple[list[str], list[str]]:
        """The keys of the packs and blobs holding ``snap``'s blobs, and of those packs'
        indexes, that the bucket lacks."""
        catalog = self.local.catalog()
        index_of = {pack: index for index, packs in catalog.indexes.items() for pack in packs}
        held: dict[str, None] = {}
        indexes: dict[str, None] = {}
        for entry in snap.files:
            for blob in entry.blobs:
                place = self.local.where(blob)
                if place.key in known or place.key in held:
                    continue
                held[place.key] = None
                index = index_of.get(place.key)
                if index is not None and index not in known:
                    indexes[index] = None
        return list(held), list(indexes)

    def _copy(self, keys: list[str], known: set[str]) -> None:
        def copy(key: str) -> None:
            self.remote.put(key, self.local.store.get(key))

        with ThreadPoolExecutor(COPIERS, thread_name_prefix="mc-push") as pool:
            for key, _ in zip(keys, pool.map(copy, keys), strict=True):
                known.add(key)

    def forget_listing(self) -> None:
        """List the bucket again on the next push (after a failure or someone else's change)."""
        with self._lock:
            self._known = self._manifests = None
            self._checked = False
