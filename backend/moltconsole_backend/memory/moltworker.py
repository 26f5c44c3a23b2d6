"""A Moltworker bucket, read-only: what it holds as OpenClaw state, and its import as the first
snapshot of a sandbox (moving from Cloudflare to one's own server in one command).

Moltworker keeps OpenClaw's state by ``rclone sync`` into an R2 bucket (before that, rsync onto an
s3fs mount of it), under four prefixes. Each mirrors a directory of Moltworker's container, and
each maps onto the sandbox's state directory (``<data_dir>/sandboxes/<name>/state``, mounted
as OPENCLAW_STATE_DIR; with that variable set and no ``agents.defaults.workspace``, OpenClaw
2026.9.6 keeps the agent's workspace in ``<state>/workspace``):

    bucket key       Moltworker's directory                state directory path
    openclaw/<p>     /root/.openclaw (its OpenClaw state)  <p>
    clawdbot/<p>     /root/.clawdbot (Clawdbot era)        <p>, only when openclaw/ is not used
    workspace/<p>    /root/clawd (the agent's workspace)   workspace/<p>
    skills/<p>       /root/clawd/skills                    workspace/skills/<p>

Which config prefix: ``openclaw/`` when it holds a config file (openclaw.json, moltbot.json or
clawdbot.json), else ``clawdbot/`` when that does, else whichever holds anything, ``openclaw/``
first; the other is left out and the layout says so. That is Moltworker's own boot order
(``openclaw/openclaw.json`` first, the legacy prefix only without it) made a little wider: a
Moltworker whose config directory was still /root/.clawdbot synced it into ``openclaw/`` too.

Config names of the Clawdbot and Moltbot eras: OpenClaw 2026.9.6 reads ``openclaw.json`` and,
only without it, ``clawdbot.json``; it never reads ``moltbot.json``. The sandbox's entrypoint
writes ``openclaw.json`` on every start, so a config kept under an old name would be passed
over: without an ``openclaw.json`` in the bucket, ``moltbot.json`` (the newer era) or else
``clawdbot.json`` becomes ``openclaw.json``. Moltworker pointed ``agents.defaults.workspace`` at
/root/clawd, which does not exist in the sandbox (and its uid could not create it): the import
drops that key (a plain-JSON config only; Moltworker writes JSON), so OpenClaw uses
``<state>/workspace``, where the files went. Other paths into Moltworker's container are named
in the report's warnings.

When the workspace comes from two places (``workspace/`` and ``<config prefix>/workspace/``, a
Moltworker whose OpenClaw used its own default workspace), the one the config names wins a
path both hold; without a name, OpenClaw's default of the config's era. ``skills/`` wins over a
``workspace/skills/`` copy, as it does when Moltworker restores (skills are copied last).

Left out, each with its reason: keys that are not safe as a path (``../``, absolute, empty
parts, NUL or other control characters, bidirectional overrides, names longer than a file
system takes), directory markers, uploads cut short (``*.partial``; rsync's ``.<name>.XXXXXX``
beside ``<name>``), what every snapshot leaves out (``memory.excludes``: locks, caches, logs,
tmp, and so a ``-wal`` or ``-journal`` without its database), SQLite's ``-shm`` index, and the
losing copy of a path two prefixes hold. A database with its ``-wal`` or ``-journal`` beside it
(rclone copies live SQLite files byte for byte) is folded into one consistent image through
SQLite itself, as a snapshot of a live database would be.

Keys are untrusted input: nothing is ever written by this module except blobs and one manifest
into the repository (blobs first, the manifest last, the repository held shared in between so
a prune waits: an import cut short leaves no snapshot); a key is shown only in an escaped
form. An S3 bucket is read through its own listing, not the repository's key rules, so file
names with spaces, ``@`` or non-ASCII letters come along.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import stat
import tempfile
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from moltconsole_backend.memory.capture import DEFAULT_EXCLUDES, SQLITE_MAGIC, excluded
from moltconsole_backend.memory.repo import (
    FileEntry,
    PackWriter,
    Repository,
    Snapshot,
    new_snapshot_id,
    snapshot_key,
)
from moltconsole_backend.memory.restore import Progress, UnsafePath, safe_parts
from moltconsole_backend.memory.s3 import S3Store
from moltconsole_backend.memory.store import LocalStore, ObjectMissing, ObjectStore, StoreError

log = logging.getLogger(__name__)
OPENCLAW = "openclaw/"
CLAWDBOT = "clawdbot/"
WORKSPACE = "workspace/"
SKILLS = "skills/"
PREFIXES = (OPENCLAW, CLAWDBOT, WORKSPACE, SKILLS)
CONFIG_FILE = "openclaw.json"
# Newest era first: without openclaw.json the first of these present becomes it.
LEGACY_CONFIG_FILES = ("moltbot.json", "clawdbot.json")
# Where Moltworker's container kept the workspace and its OpenClaw state; a config naming one
# of these as agents.defaults.workspace names a directory the sandbox does not have.
BUCKET_WORKSPACE_PATHS = frozenset({"/root/clawd", "~/clawd"})
CONFIG_WORKSPACE_PATHS = frozenset({
    "/root/.openclaw/workspace", "~/.openclaw/workspace",
    "/root/.clawdbot/workspace", "~/.clawdbot/workspace",
})
SQLITE_LOGS = ("-wal", "-journal")  # folded into their database
SQLITE_INDEX = "-shm"  # rebuilt by SQLite from the database and its log
MAX_NAME_BYTES = 255  # NAME_MAX of the usual Linux file systems
MAX_PATH_BYTES = 3000  # leaves room for the state directory's own path under PATH_MAX (4096)
MAX_FILE_SIZE = 1024**3  # one file is held in memory whole on its way into a blob
# Files read from the bucket and stored at once: each waits on the network (R2 answers a read
# in tens of ms) and on the repository (a local one syncs every blob to disk), not on the CPU.
WORKERS = 8
IN_FLIGHT_BYTES = 256 * 1024**2  # read ahead no further than this (a few large databases)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


class MoltworkerError(Exception):
    """The bucket cannot be read or imported as Moltworker's; the message says what to do."""


class NotMoltworkerData(MoltworkerError):
    """None of Moltworker's prefixes holds anything in the bucket."""


class UnsafeKey(MoltworkerError):
    """A key asked for that is not one of Moltworker's files (outside its prefixes, not a plain
    path): it is not read."""


class TooLarge(MoltworkerError):
    """A file larger than may be read whole to be shown; ``size`` is its size."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


# --- reading a bucket as it is ----------------------------------------------------------------
@dataclass(frozen=True)
class BucketObject:
    """One object as the bucket lists it: its key (untrusted), size and modification time when
    the listing gives them, and whether it is a regular file (a local copy may hold links)."""

    key: str
    size: int | None = None
    mtime_ns: int | None = None
    regular: bool = True


@dataclass(frozen=True)
class StoredObject:
    """An object's content, and the file's modification time if the bucket kept it (rclone
    keeps it as ``mtime`` metadata)."""

    data: bytes
    mtime_ns: int | None = None


@runtime_checkable
class BucketObjects(Protocol):
    """A bucket read as it is, every key as the bucket holds it (not only repository keys)."""

    @property
    def where(self) -> str:
        """Where the objects are, for messages."""

    def objects(self, prefix: str) -> Iterator[BucketObject]:
        """Every object whose key starts with ``prefix`` (one of PREFIXES)."""

    def read(self, key: str) -> StoredObject:
        """The object under ``key`` (a key ``objects`` listed); ObjectMissing if it is gone."""

    def has(self, key: str) -> bool:
        """Whether there is an object under ``key``."""


class S3Objects:
    """The objects of an S3Store's bucket under its prefix, listed raw (R2's pages of at most
    1,000 keys followed by token) and read by their exact key. It borrows the store's client
    and its error sorting, so credentials and messages stay as the store keeps them."""

    def __init__(self, store: S3Store) -> None:
        self._store = store
        self._client = store.client  # raw keys: names the repository's key rules would refuse
        self._base = f"{store.prefix}/" if store.prefix else ""

    @property
    def where(self) -> str:
        return self._store.where

    def objects(self, prefix: str) -> Iterator[BucketObject]:
        request: dict[str, Any] = {
            "Bucket": self._store.bucket, "Prefix": self._base + prefix, "MaxKeys": self._store.page_size,
        }
        while True:
            try:
                page = self._client.list_objects_v2(**request)
            except Exception as exc:
                raise self._store.error_for(exc, "list", prefix) from None
            for item in page.get("Contents", ()):
                name = item.get("Key")
                if not isinstance(name, str) or not name.startswith(self._base + prefix):
                    # A server that lists what was not asked for; never taken as a key of ours.
                    log.warning("skipped a key outside %s%s in %s: %s", self._base, prefix, self.where,
                                shown_key(name) if isinstance(name, str) else type(name).__name__)
                    continue
                key = name[len(self._base) :]
                size = item.get("Size")
                modified = item.get("LastModified")
                mtime = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else None
                yield BucketObject(key, size if isinstance(size, int) else None, mtime)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token or token == request.get("ContinuationToken"):
                raise StoreError(
                    f"listing {self.where} stopped: the server said there was more but gave no way "
                    "to continue; check that the endpoint is an S3-compatible server"
                )
            request["ContinuationToken"] = token

    def read(self, key: str) -> StoredObject:
        try:
            response = self._client.get_object(Bucket=self._store.bucket, Key=self._base + key)
            data: bytes = response["Body"].read()
        except Exception as exc:
            raise self._store.error_for(exc, "read", shown_key(key)) from None
        metadata = response.get("Metadata") or {}
        return StoredObject(data, _rclone_mtime(metadata.get("mtime")))

    def read_at_most(self, key: str, limit: int) -> bytes:
        """The object under ``key`` if it is at most ``limit`` bytes (TooLarge otherwise, its
        body left unread: the size comes with the answer's headers)."""
        try:
            response = self._client.get_object(Bucket=self._store.bucket, Key=self._base + key)
        except Exception as exc:
            raise self._store.error_for(exc, "read", shown_key(key)) from None
        body = response["Body"]
        size = response.get("ContentLength")
        if isinstance(size, int) and size > limit:
            body.close()
            raise TooLarge(f"{shown_key(key)} is {size:,} bytes", size)
        try:
            data: bytes = body.read(limit + 1)
        except Exception as exc:
            raise self._store.error_for(exc, "read", shown_key(key)) from None
        finally:
            body.close()
        if len(data) > limit:
            raise TooLarge(f"{shown_key(key)} is more than {limit:,} bytes", len(data))
        return data

    def has(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._store.bucket, Key=self._base + key)
        except Exception as exc:
            error = self._store.error_for(exc, "look up", shown_key(key))
            if isinstance(error, ObjectMissing):
                return False
            raise error from None
        return True


class DirectoryObjects:
    """A directory laid out like a bucket (a LocalStore's, or a bucket copied down with
    ``rclone copy``): files are objects, named by their path. Links are listed as what they
    are and never followed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def where(self) -> str:
        return str(self.root)

    def objects(self, prefix: str) -> Iterator[BucketObject]:
        base = self.root / prefix.strip("/")
        if base.is_symlink() or not base.is_dir():
            return
        stack = [base]
        while stack:
            current = stack.pop()
            with os.scandir(current) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(Path(entry.path))
                        continue
                    key = Path(entry.path).relative_to(self.root).as_posix()
                    regular = stat.S_ISREG(info.st_mode)
                    yield BucketObject(key, info.st_size if regular else None, info.st_mtime_ns, regular)

    def _path(self, key: str) -> Path:
        """The file of ``key``; StoreError for a key that is not a plain path or passes a link."""
        try:
            parts = safe_parts(key)
        except UnsafePath:
            raise StoreError(f"refusing to read {shown_key(key)} in {self.root}: not a plain path") from None
        current = self.root
        for part in parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise StoreError(f"refusing to read under {current}: it is a link")
        return current / parts[-1]

    def read(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectMissing(f"{shown_key(key)} is not in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {shown_key(key)} in {self.root}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            return StoredObject(fh.read(), info.st_mtime_ns)

    def read_at_most(self, key: str, limit: int) -> bytes:
        """The file of ``key`` if it is a regular file of at most ``limit`` bytes."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ObjectMissing(f"{shown_key(key)} is not in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {shown_key(key)} in {self.root}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"refusing to read {shown_key(key)} in {self.root}: not a regular file")
            if info.st_size > limit:
                raise TooLarge(f"{shown_key(key)} is {info.st_size:,} bytes", info.st_size)
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"{shown_key(key)} is more than {limit:,} bytes", len(data))
        return data

    def has(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except StoreError:
            return False


class StoreObjects:
    """Any ObjectStore read as a bucket. It shows only keys the repository's rules allow
    (letters, digits, '.', '_' and '-'), so an S3Store or LocalStore is read through S3Objects or
    DirectoryObjects instead."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    @property
    def where(self) -> str:
        return self._store.where

    def objects(self, prefix: str) -> Iterator[BucketObject]:
        for key in self._store.list(prefix):
            yield BucketObject(key)

    def read(self, key: str) -> StoredObject:
        return StoredObject(self._store.get(key))

    def has(self, key: str) -> bool:
        return self._store.exists(key)


def read_at_most(objects: BucketObjects, key: str, limit: int) -> bytes:
    """The object under ``key`` if it is at most ``limit`` bytes, else TooLarge; a kind of
    bucket that can tell the size first is not read past it."""
    capped = getattr(objects, "read_at_most", None)
    if capped is not None:
        data: bytes = capped(key, limit)
        return data
    data = objects.read(key).data
    if len(data) > limit:
        raise TooLarge(f"{shown_key(key)} is {len(data):,} bytes", len(data))
    return data


def key_problem(key: str) -> str | None:
    """Why ``key`` (untrusted, from a request) is not one of the files Moltworker keeps: not
    under one of its prefixes, a folder, or not a plain path; None when it is one."""
    prefix = next((p for p in PREFIXES if key.startswith(p)), None)
    if prefix is None:
        return f"it is not under one of Moltworker's prefixes ({', '.join(PREFIXES)})"
    rest = key[len(prefix):]
    if not rest or rest.endswith("/"):
        return "it names a folder, not a file"
    return unsafe_reason(rest)


def bucket_objects(store: ObjectStore | BucketObjects) -> BucketObjects:
    """The way to read ``store`` as a bucket that sees every key it holds."""
    if isinstance(store, S3Store):
        return S3Objects(store)
    if isinstance(store, LocalStore):
        return DirectoryObjects(store.root)
    if isinstance(store, BucketObjects):
        return store
    return StoreObjects(store)


# --- what the bucket holds as state -----------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Which of Moltworker's prefixes the bucket holds, and how they are read.

    ``config_prefix`` is the prefix whose files become the top of the state directory
    (``openclaw/``, or the Clawdbot era's ``clawdbot/`` when ``legacy``), None when only the
    workspace or skills were kept. ``workspace_from`` names the prefix whose files win a path
    of the workspace that two prefixes hold. ``notes`` say each choice in words."""

    where: str
    prefixes: tuple[str, ...]
    config_prefix: str | None
    legacy: bool
    workspace_from: str = WORKSPACE
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BucketFile:
    """One file of the bucket as it would be in the state directory: its key, its path there,
    its size if the bucket says, and (for a SQLite database) the keys of its ``-wal`` or
    ``-journal`` folded into it on import. ``note`` says any change on the way (a rename)."""

    key: str
    path: str
    size: int | None = None
    mtime_ns: int | None = None
    companions: tuple[str, ...] = ()
    note: str = ""
    companions_size: int = 0


@dataclass(frozen=True)
class LeftOut:
    """A key the import leaves out and why. ``key`` is shown escaped (the bucket's keys are
    untrusted); ``path`` is where it would have gone, when it was safe to say."""

    key: str
    reason: str
    path: str | None = None


@dataclass(frozen=True)
class BucketScan:
    """One listing of the bucket: its layout, the files as state, and what is left out."""

    layout: Layout
    files: list[BucketFile]
    left_out: list[LeftOut]

    @property
    def size(self) -> int:
        """The bytes of the files (and their SQLite logs) whose size the bucket gave."""
        return sum((f.size or 0) + f.companions_size for f in self.files)


def shown_key(key: str, limit: int = 200) -> str:
    """A key from the bucket made safe to print: escaped to ASCII, cut at ``limit`` characters."""
    text = ascii(key[:limit])[1:-1]
    return text + "..." if len(key) > limit else text


def unsafe_reason(path: str) -> str | None:
    """Why ``path`` (relative to a prefix) cannot name a file in the state directory, or None."""
    try:
        parts = safe_parts(path)
    except UnsafePath:
        return "not safe as a path (absolute, '..', '.', an empty part, a backslash or NUL)"
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        return "a name with control characters"
    if any(ch in _BIDI_CONTROLS for ch in path):
        return "a name with bidirectional-text controls (it would show as another name)"
    try:
        encoded = [part.encode("utf-8") for part in parts]
    except UnicodeEncodeError:
        return "a name that is not valid UTF-8"
    if any(len(part) > MAX_NAME_BYTES for part in encoded):
        return f"a name longer than a file system takes ({MAX_NAME_BYTES} bytes a part)"
    if sum(len(part) + 1 for part in encoded) > MAX_PATH_BYTES:
        return f"a path longer than the import takes ({MAX_PATH_BYTES} bytes)"
    return None


def _is_cut_short(rest: str, names: set[str]) -> bool:
    """An upload cut short: rclone's ``*.partial``, or rsync's ``.<name>.XXXXXX`` beside ``<name>``
    (rsync onto s3fs left these in the bucket when the 30 s sync was killed)."""
    folder, _, name = rest.rpartition("/")
    if name.endswith(".partial"):
        return True
    if name.startswith(".") and len(name) > 8 and name[-7] == "." and name[-6:].isalnum():
        original = name[1:-7]
        return f"{folder}/{original}" in names if folder else original in names
    return False


@dataclass
class _Candidate:
    rank: int  # lower wins a path two prefixes hold
    obj: BucketObject
    source: str
    note: str = ""
    logs: list[BucketObject] = field(default_factory=list)  # a database's -wal or -journal


class MoltworkerBucket:
    """A Moltworker bucket, read only. ``store`` is the bucket (an S3Store for R2 or any S3; a
    LocalStore or any ObjectStore in tests), at the prefix Moltworker used (the bucket's root
    unless Moltworker's bucket was shared)."""

    def __init__(
        self, store: ObjectStore | BucketObjects, excludes: Sequence[str] = DEFAULT_EXCLUDES,
    ) -> None:
        self.objects = bucket_objects(store)
        self.excludes = tuple(excludes)

    @property
    def where(self) -> str:
        return self.objects.where

    def __repr__(self) -> str:
        return f"MoltworkerBucket({self.where!r})"

    def read(self, key: str, limit: int) -> bytes:
        """One file's bytes as the bucket holds them (``key`` from the listing, checked here as
        the untrusted input it is), if it is at most ``limit`` bytes. UnsafeKey for a key that
        is not one of Moltworker's files, TooLarge, ObjectMissing, or the bucket's StoreError."""
        problem = key_problem(key)
        if problem is not None:
            raise UnsafeKey(f"refusing to read {shown_key(key)} from {self.where}: {problem}")
        return read_at_most(self.objects, key, limit)

    # --- layout -----------------------------------------------------------------------------
    def detect(self) -> Layout:
        """Which prefixes hold anything, and which is the config's (one list call each, and a
        look-up of each config name); NotMoltworkerData when none holds anything."""
        present = set()
        for prefix in PREFIXES:
            if next(iter(self.objects.objects(prefix)), None) is not None:
                present.add(prefix)
        return self._layout(present, self.objects.has)

    def _layout(self, present: set[str], has: Callable[[str], bool]) -> Layout:
        if not present:
            raise NotMoltworkerData(
                f"{self.where} holds no Moltworker data: none of {', '.join(PREFIXES)} has anything. "
                "Check the bucket name (Moltworker's is R2_BUCKET_NAME, moltbot-data unless set) and "
                "that no prefix is set for it"
            )
        notes: list[str] = []
        with_config = [
            p for p in (OPENCLAW, CLAWDBOT)
            if p in present and any(has(p + name) for name in (CONFIG_FILE, *LEGACY_CONFIG_FILES))
        ]
        config_prefix = with_config[0] if with_config else next(
            (p for p in (OPENCLAW, CLAWDBOT) if p in present), None
        )
        if OPENCLAW in present and CLAWDBOT in present:
            unused = CLAWDBOT if config_prefix == OPENCLAW else OPENCLAW
            why = (
                "it is the newer copy (Moltworker restores clawdbot/ only when openclaw/ has no config)"
                if config_prefix == OPENCLAW
                else "only clawdbot/ holds a config file"
            )
            notes.append(f"both openclaw/ and clawdbot/ hold files: {config_prefix} is used, {why}; "
                         f"{unused} is left out")
        if config_prefix is None:
            notes.append("no OpenClaw config in the bucket (only the workspace or skills): the sandbox "
                         "starts with moltconsole's config")
        legacy = config_prefix == CLAWDBOT
        if legacy:
            notes.append("the config comes from clawdbot/, the Clawdbot era's prefix")
        return Layout(self.where, tuple(p for p in PREFIXES if p in present), config_prefix, legacy,
                      notes=tuple(notes))

    # --- the files ---------------------------------------------------------------------------
    def files(self) -> list[BucketFile]:
        """The bucket's files as they would be in the state directory (see ``scan`` for what is
        left out)."""
        return self.scan().files

    def scan(self) -> BucketScan:
        """List the bucket once: its layout, its files mapped onto the state directory, and
        every key left out with the reason."""
        listed = {prefix: list(self.objects.objects(prefix)) for prefix in PREFIXES}
        keys = {obj.key for objs in listed.values() for obj in objs}
        layout = self._layout({p for p, objs in listed.items() if objs}, keys.__contains__)
        left_out: list[LeftOut] = []
        candidates: dict[str, list[_Candidate]] = {}
        for prefix, objs in listed.items():
            if prefix in (OPENCLAW, CLAWDBOT) and prefix != layout.config_prefix:
                reason = f"{prefix} is not used: {layout.config_prefix} holds the config"
                left_out += [LeftOut(shown_key(o.key), reason) for o in objs]
                continue
            for path, candidate in self._prefix_candidates(prefix, objs, layout, left_out).items():
                candidates.setdefault(path, []).append(candidate)

        if layout.config_prefix and any(
            {WORKSPACE, layout.config_prefix} <= {c.source for c in found} for found in candidates.values()
        ):
            layout = self._decide_workspace(layout, candidates)
        files: list[BucketFile] = []
        for path in sorted(candidates):
            ranked = sorted(candidates[path], key=lambda c: (self._rank(c, layout), c.source))
            winner = ranked[0]
            for loser in ranked[1:]:
                reason = f"{shown_key(winner.obj.key)} gives this path instead"
                left_out += [LeftOut(shown_key(o.key), reason, path) for o in (loser.obj, *loser.logs)]
            logs = sorted(winner.logs, key=lambda o: o.key)
            files.append(BucketFile(
                winner.obj.key, path, winner.obj.size, winner.obj.mtime_ns,
                tuple(o.key for o in logs), winner.note, sum(o.size or 0 for o in logs),
            ))
        if isinstance(self.objects, StoreObjects):
            note = ("this storage lists only keys of letters, digits, '.', '_' and '-'; files with other "
                    "names cannot be seen through it")
            layout = Layout(layout.where, layout.prefixes, layout.config_prefix, layout.legacy,
                            layout.workspace_from, (*layout.notes, note))
        return BucketScan(layout, files, left_out)

    def _prefix_candidates(
        self, prefix: str, objs: Sequence[BucketObject], layout: Layout, left_out: list[LeftOut],
    ) -> dict[str, _Candidate]:
        """The files one prefix gives (state path -> candidate), a SQLite database with its logs;
        what it leaves out is added to ``left_out``."""
        names = {o.key[len(prefix) :] for o in objs if o.key.startswith(prefix)}
        config_names = self._config_names(prefix, names, layout)
        placed: dict[str, _Candidate] = {}
        for obj in objs:
            found = self._place(prefix, obj, names, config_names)
            if isinstance(found, LeftOut):
                left_out.append(found)
            else:
                path, rank, note = found
                placed[path] = _Candidate(rank, obj, prefix, note)
        logs = set()
        for path, candidate in placed.items():
            base = _sqlite_base(path)
            if base is not None and base[0] in placed:  # a log or index beside its database
                logs.add(path)
                if base[1] == SQLITE_INDEX:
                    left_out.append(LeftOut(shown_key(candidate.obj.key),
                                            "SQLite's shared-memory index; SQLite rebuilds it", path))
                else:
                    placed[base[0]].logs.append(candidate.obj)
        kept: dict[str, _Candidate] = {}
        for path, candidate in placed.items():
            if path in logs:
                continue
            if excluded(path, self.excludes):
                pattern = next(p for p in self.excludes if excluded(path, [p]))
                reason = f"left out of every snapshot (memory.excludes: {pattern})"
                left_out.append(LeftOut(shown_key(candidate.obj.key), reason, path))
                left_out += [LeftOut(shown_key(o.key), "its database is left out") for o in candidate.logs]
                continue
            kept[path] = candidate
        return kept

    def _config_names(self, prefix: str, names: set[str], layout: Layout) -> dict[str, str]:
        """Old config names at the top of the config prefix -> the name they take."""
        if prefix != layout.config_prefix or CONFIG_FILE in names:
            return {}
        for legacy in LEGACY_CONFIG_FILES:
            if legacy in names:
                return {legacy: CONFIG_FILE}
        return {}

    def _place(
        self, prefix: str, obj: BucketObject, names: set[str], config_names: Mapping[str, str],
    ) -> tuple[str, int, str] | LeftOut:
        """Where ``obj`` goes in the state directory (path, rank, note), or why it is left out.
        A SQLite log or index comes back with its own path; the caller pairs it."""
        shown = shown_key(obj.key)
        if not obj.key.startswith(prefix):
            return LeftOut(shown, f"listed for {prefix} but outside it (a server that lists wrongly)")
        rest = obj.key[len(prefix) :]
        if not obj.regular:
            return LeftOut(shown, "not a regular file (a link or a device in a local copy)")
        if not rest or rest.endswith("/"):
            return LeftOut(shown, "a directory marker (s3fs writes these), not a file")
        reason = unsafe_reason(rest)
        if reason is not None:
            return LeftOut(shown, reason)
        if _is_cut_short(rest, names):
            return LeftOut(shown, "an upload cut short (rclone or rsync's temporary name)")
        if obj.size is not None and obj.size > MAX_FILE_SIZE:
            return LeftOut(shown, f"larger than an import takes ({MAX_FILE_SIZE // 1024**2:,} MiB a file)")
        note = ""
        if rest in config_names:
            note = f"renamed from {rest}: OpenClaw 2026.9.6 reads {config_names[rest]}"
            rest = config_names[rest]
        if prefix == SKILLS:
            return f"workspace/skills/{rest}", 0, note
        if prefix == WORKSPACE:
            return f"workspace/{rest}", 1, note
        return rest, 1, note

    def _rank(self, candidate: _Candidate, layout: Layout) -> int:
        if candidate.rank == 0:
            return 0
        return 1 if candidate.source == layout.workspace_from else 2

    def _decide_workspace(self, layout: Layout, candidates: Mapping[str, list[_Candidate]]) -> Layout:
        """The workspace prefix that wins a path two prefixes hold, from the config's
        ``agents.defaults.workspace`` (or, without one, the default of the config's era)."""
        config = next(
            (c.obj for c in candidates.get(CONFIG_FILE, []) if c.source == layout.config_prefix), None,
        )
        configured: object = None
        readable = False
        if config is not None:
            with contextlib.suppress(StoreError, ValueError):
                parsed = json.loads(self.objects.read(config.key).data)
                readable = isinstance(parsed, dict)
                configured = _dig(parsed, "agents", "defaults", "workspace")
        config_prefix = layout.config_prefix or OPENCLAW
        if isinstance(configured, str) and configured.rstrip("/") in CONFIG_WORKSPACE_PATHS:
            chosen, why = config_prefix, f"the config names {configured} as the workspace"
        elif isinstance(configured, str) and configured.rstrip("/") in BUCKET_WORKSPACE_PATHS:
            chosen, why = WORKSPACE, f"the config names {configured} as the workspace"
        elif readable and configured is None and config_prefix == OPENCLAW:
            chosen, why = config_prefix, "the config names no workspace, so OpenClaw used its own default"
        elif readable and configured is None:
            chosen, why = WORKSPACE, "the config names no workspace, and Clawdbot's default was ~/clawd"
        else:
            chosen, why = WORKSPACE, "the config does not say which was the workspace; workspace/ is taken"
        note = f"the workspace is in two places: {chosen} wins where both hold a file ({why})"
        return Layout(layout.where, layout.prefixes, layout.config_prefix, layout.legacy, chosen,
                      (*layout.notes, note))


def _sqlite_base(path: str) -> tuple[str, str] | None:
    """(database path, suffix) when ``path`` is a SQLite log or index file."""
    for suffix in (*SQLITE_LOGS, SQLITE_INDEX):
        if path.endswith(suffix) and len(path) > len(suffix) and not path.endswith("/" + suffix):
            return path[: -len(suffix)], suffix
    return None


def _dig(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _rclone_mtime(value: object) -> int | None:
    """rclone's ``mtime`` metadata (seconds since the epoch, with a fraction) in ns, if sane."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        seconds = Decimal(value)
    except InvalidOperation:
        return None
    if not seconds.is_finite() or not 0 < seconds < 2**33:
        return None
    return int(seconds * 1_000_000_000)


# --- import -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportReport:
    """What an import made: the snapshot (reason "import"), the layout it read, how many bytes
    came from the bucket and went to the repository, what was left out and changed on the way,
    and what the user should look at (``warnings``)."""

    snapshot: Snapshot
    layout: Layout
    read_bytes: int
    new_blobs: int
    uploaded_bytes: int
    seconds: float
    left_out: list[LeftOut] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return len(self.snapshot.files)


def import_snapshot(
    repo: Repository,
    sandbox: str,
    bucket: MoltworkerBucket,
    progress: Progress | None = None,
    *,
    allow_existing: bool = False,
) -> ImportReport:
    """Read every file of ``bucket`` into ``repo`` as a snapshot of ``sandbox`` (reason
    "import"): blobs first, the manifest last, so an import cut short leaves no snapshot.
    ``progress(done, total)`` is called with bytes read from the bucket (total is exact when the
    bucket lists sizes, as S3 and a directory do). Restore it into an empty state directory
    with ``restore.restore_snapshot``.

    MoltworkerError when the sandbox has snapshots already (the import is meant to be its
    first; ``allow_existing`` adds it as the newest) or the sandbox name cannot be a key;
    NotMoltworkerData for a bucket without Moltworker's prefixes; StoreError (or
    StoreUnreachable) when the bucket fails, with nothing imported.
    """
    started = time.monotonic()
    snapshot_id = new_snapshot_id()
    try:
        snapshot_key(sandbox, snapshot_id)
    except ValueError:
        raise MoltworkerError(
            f"{shown_key(sandbox)} cannot be a sandbox name in the repository: use letters, digits, "
            "'.', '_' and '-'"
        ) from None
    if not allow_existing:
        existing = sum(1 for _ in repo.snapshot_ids(sandbox))
        if existing:
            raise MoltworkerError(
                f"sandbox {sandbox} has {existing} snapshot(s) already; an import is meant to be its "
                "first. Import into a new sandbox name, or ask for the import to be added as the newest"
            )
    scan = bucket.scan()
    left_out = list(scan.left_out)
    changes = [f"{f.key} -> {f.path}: {f.note}" for f in scan.files if f.note]
    warnings: list[str] = []
    total = scan.size
    done = read_bytes = 0
    entries: list[FileEntry] = []
    with repo.shared():  # from the first blob to the manifest: no prune deletes a blob meanwhile
        packer = repo.packer()
        try:
            for item, stored in _in_order(_Storing(repo, packer, bucket.objects), scan.files):
                if stored is None:
                    left_out.append(LeftOut(shown_key(item.key), "gone from the bucket since it was "
                                            "listed (is Moltworker still syncing?)", item.path))
                    continue
                entries += stored.entries
                changes += stored.changes
                warnings += stored.warnings
                read_bytes += stored.read_bytes
                done += stored.read_bytes
                if progress is not None:
                    progress(done, max(total, done))
        except BaseException:
            with contextlib.suppress(StoreError):
                packer.finish()  # what was read is stored: an import tried again does not store it again
            raise
        packer.finish()  # the last pack and its index, before the manifest
        new_blobs, uploaded = packer.new_blobs, packer.stored_bytes
        snapshot = Snapshot(
            id=snapshot_id, sandbox=sandbox, time=time.time(), reason="import",
            files=sorted(entries, key=lambda e: e.path), parent=None, host=socket.gethostname(),
        )
        repo.write_snapshot(snapshot)
    return ImportReport(snapshot, scan.layout, read_bytes, new_blobs, uploaded, time.monotonic() - started,
                        left_out, changes, warnings)


@dataclass
class _Stored:
    """One bucket file in the repository: its entries (a database's logs may add some when they
    cannot be folded), and what reading and storing it took and changed."""

    entries: list[FileEntry]
    read_bytes: int
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Storing:
    """Reads one bucket file (and its SQLite logs), makes it what the snapshot holds, and packs
    its blobs (whole, or in chunks when large); several run at once, and the pack writer
    stores identical content once."""

    def __init__(self, repo: Repository, packer: PackWriter, objects: BucketObjects) -> None:
        self.repo = repo
        self.packer = packer
        self.objects = objects

    def __call__(self, item: BucketFile) -> _Stored | None:
        try:
            parts = {item.key: self.objects.read(item.key)}
        except ObjectMissing:
            return None
        for key in item.companions:
            with contextlib.suppress(ObjectMissing):
                parts[key] = self.objects.read(key)
        stored = _Stored([], sum(len(p.data) for p in parts.values()))
        content, extra = _content(item, parts, stored.changes, stored.warnings)
        mtime = parts[item.key].mtime_ns or item.mtime_ns or 0
        for path, data in [(item.path, content), *extra]:
            name, chunks = self.packer.add_file(data)
            stored.entries.append(FileEntry(path, name, len(data), _mode(data), mtime, chunks))
        return stored


def _in_order(
    work: Callable[[BucketFile], _Stored | None], files: Iterable[BucketFile],
) -> Iterator[tuple[BucketFile, _Stored | None]]:
    """``work`` done on each file, WORKERS at once, the results in the files' order; at most
    IN_FLIGHT_BYTES (by the listed sizes) are held beyond the file taken last. A failure stops
    the rest (what is queued is cancelled; what runs is waited for)."""

    def weight(item: BucketFile) -> int:
        return (item.size or 0) + item.companions_size

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="moltworker-import") as pool:
        pending: deque[tuple[BucketFile, Future[_Stored | None]]] = deque()
        held = 0
        try:
            for item in files:
                while pending and (len(pending) >= WORKERS * 2 or held + weight(item) > IN_FLIGHT_BYTES):
                    first, future = pending.popleft()
                    held -= weight(first)
                    yield first, future.result()
                pending.append((item, pool.submit(work, item)))
                held += weight(item)
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _content(
    item: BucketFile, parts: Mapping[str, StoredObject], changes: list[str], warnings: list[str],
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The content ``item`` takes in the snapshot, and any further (path, content) it brings."""
    content = parts[item.key].data
    extra: list[tuple[str, bytes]] = []
    logs = {key: parts[key].data for key in item.companions if key in parts}
    if logs and content.startswith(SQLITE_MAGIC):
        try:
            content = _fold_sqlite(content, {key[len(item.key) :]: data for key, data in logs.items()})
            changes.append(f"{item.path}: its {', '.join(k[len(item.key):] for k in logs)} folded into "
                           "one consistent database")
        except sqlite3.Error as exc:
            warnings.append(f"{item.path}: SQLite could not fold its log into it ({exc}); the files are "
                            "imported as the bucket holds them")
            extra = [(item.path + key[len(item.key) :], data) for key, data in logs.items()]
    elif logs:
        warnings.append(f"{item.path} is not a SQLite database, but has files named like its logs; "
                        "they are imported as they are")
        extra = [(item.path + key[len(item.key) :], data) for key, data in logs.items()]
    if item.path == CONFIG_FILE:
        content = _fix_config(content, changes, warnings)
    return content, extra


def _fold_sqlite(database: bytes, logs: Mapping[str, bytes]) -> bytes:
    """One self-contained image of a database copied with its -wal or -journal: SQLite replays
    the log (or rolls back a hot journal) in a private copy, and the backup API writes it out."""
    with tempfile.TemporaryDirectory(prefix="mc-import-") as tmp:
        source_path = Path(tmp) / "db"
        source_path.write_bytes(database)
        for suffix, data in logs.items():
            Path(f"{source_path}{suffix}").write_bytes(data)
        copy = Path(tmp) / "image"
        source = sqlite3.connect(source_path)
        try:
            source.execute("PRAGMA quick_check").fetchall()
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
        return copy.read_bytes()


def _fix_config(content: bytes, changes: list[str], warnings: list[str]) -> bytes:
    """The config with Moltworker's workspace path taken out (OpenClaw then uses
    ``<state>/workspace``); other paths into Moltworker's container are warned about."""
    try:
        config = json.loads(content)
    except ValueError:
        warnings.append(f"{CONFIG_FILE} is not plain JSON, so it was imported as it is: check that "
                        "agents.defaults.workspace does not name /root/clawd")
        return content
    if not isinstance(config, dict):
        warnings.append(f"{CONFIG_FILE} does not hold an object; the sandbox's entrypoint will start "
                        "from a fresh one and keep this one as a backup")
        return content
    defaults = _dig(config, "agents", "defaults")
    workspace = defaults.get("workspace") if isinstance(defaults, dict) else None
    if isinstance(defaults, dict) and isinstance(workspace, str) and (
        workspace.rstrip("/") in BUCKET_WORKSPACE_PATHS | CONFIG_WORKSPACE_PATHS
    ):
        del defaults["workspace"]
        changes.append(f"{CONFIG_FILE}: agents.defaults.workspace ({workspace}) taken out, so the agent "
                       "uses the sandbox's workspace (<state>/workspace), where the files are")
        content = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode()
    foreign = sorted(_container_paths(config))
    if foreign:
        listed = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        warnings.append(f"{CONFIG_FILE} names paths in Moltworker's container, which the sandbox does not "
                        f"have: {listed}; edit them (the workspace is <state>/workspace)")
    return content


def _container_paths(data: object, where: str = "") -> Iterator[str]:
    """The dotted names of the config's values that are paths under /root (Moltworker's home)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _container_paths(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _container_paths(value, f"{where}[{index}]")
    elif isinstance(data, str) and (data == "/root" or data.startswith("/root/")):
        yield shown_key(where, 80)


def _mode(content: bytes) -> int:
    """Owner-only, and executable for a script (the bucket keeps no permission bits)."""
    return 0o700 if content.startswith(b"#!") else 0o600
