"""Taking a snapshot of a state directory into a repository.

Every regular file under the directory is captured, except what the excludes name (caches,
locks, temporary files, logs, and SQLite's own -wal/-shm/-journal files). Symbolic links are
left out (a restored link could point anywhere) and said so in the log.

A live SQLite database is never copied as a file: it is captured with SQLite's online backup
API (``sqlite3.Connection.backup``), from the host, which copies a consistent image of the
database including what is still in its write-ahead log while the agent keeps writing. That
is why the -wal and -shm files are left out: the backup already holds their content.

A file whose size and modification time are those of the previous snapshot is not read
again: its blob is taken from that snapshot (restic does the same). A database is looked at
with its -wal file's size and time too, since a write may change only the log. Such a blob is
taken only while the repository still has it: a prune may have removed it since (the snapshot
that named it forgotten), and then the file is read again.

New blobs go into packs (``PackWriter``); a file over ``CHUNK_SIZE`` is stored as chunks of
that size, so a database whose agent changed one row stores the few chunks that changed.

A snapshot holds the repository ``shared()`` from its first blob to its manifest, so a prune
never deletes a blob it found already stored before its manifest names it (repo.py).
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import logging
import os
import re
import socket
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from moltconsole_backend.memory.repo import (
    CHUNK_SIZE,
    FileEntry,
    PackWriter,
    Repository,
    Snapshot,
    new_snapshot_id,
)
from moltconsole_backend.settings import DEFAULT_MEMORY_EXCLUDES

log = logging.getLogger(__name__)
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_BUSY_LIMIT = 2.0  # seconds a database held by a writer may delay a snapshot
SQLITE_BUSY, SQLITE_LOCKED = 5, 6  # a backup step's status when the source is held
# Automatic snapshots that find nothing changed write no manifest (history is not crowded
# with copies); one asked for by name (manual, before-stop, safety...) is always written.
QUIET_REASONS = frozenset({"change", "schedule"})
DEFAULT_EXCLUDES: tuple[str, ...] = tuple(DEFAULT_MEMORY_EXCLUDES)  # memory.excludes


@dataclass(frozen=True)
class CaptureReport:
    """What one snapshot took: the snapshot, how many files were read and how many bytes
    were uploaded (0 for files the repository had)."""

    snapshot: Snapshot
    read_files: int
    new_blobs: int
    uploaded_bytes: int
    seconds: float
    unchanged: bool = False  # nothing changed since ``snapshot``, which was not written again


def excluded(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` (relative, '/'-separated) matches one of ``patterns`` (fnmatch, where
    ``*`` also crosses '/'), or lies under a directory that does."""
    return _excludes(tuple(patterns)).match(path) is not None


@functools.lru_cache(maxsize=16)
def _excludes(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One expression for all ``patterns``: a pattern matching the path, or the path up to one
    of its '/' (a directory it lies under)."""
    if not patterns:
        return re.compile(r"(?!)")
    cores = [fnmatch.translate(p).removesuffix(r"\Z") for p in patterns]
    return re.compile(f"(?:{'|'.join(cores)})(?:/.*)?\\Z", re.DOTALL)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64  # directories deeper than this are left out (and said so)


class FileChanged(Exception):
    """A walked file is no longer the regular file the walk saw (replaced, or now a link)."""


@dataclass(frozen=True)
class Walked:
    """A regular file found by ``_walk``: its path, its lstat, and the open directory that
    holds it (valid until the walk goes on)."""

    rel: str
    info: os.stat_result
    dir_fd: int

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


def _walk(root: Path, patterns: Sequence[str]) -> Iterator[Walked]:
    """Each regular file under ``root``, not following links. Every directory is opened by
    name inside the one above it, never through a link: a link the agent puts in place of a
    directory, even while the walk runs, leads nowhere outside the state directory."""
    try:
        top = os.open(root, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return
    yield from _walk_dir(top, "", patterns, 0)


def _walk_dir(fd: int, rel_dir: str, patterns: Sequence[str], depth: int) -> Iterator[Walked]:
    try:
        with os.scandir(fd) as entries:
            items = sorted(entries, key=lambda e: e.name)
        for entry in items:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if excluded(rel, patterns):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if depth >= MAX_DEPTH:
                    log.warning("memory snapshot leaves out %s: deeper than %d directories", rel, MAX_DEPTH)
                    continue
                try:
                    sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # removed, or replaced by a link, since it was listed
                yield from _walk_dir(sub, rel, patterns, depth + 1)
            elif stat.S_ISREG(info.st_mode):
                yield Walked(rel, info, fd)
            elif stat.S_ISLNK(info.st_mode):
                log.debug("memory snapshot leaves out the symbolic link %s", rel)
    finally:
        os.close(fd)


def _open_walked(found: Walked) -> int:
    """The walked file, opened without following a link, and checked to be the very file the
    walk saw (FileChanged if not: replaced since, by a link or another file)."""
    try:
        fd = os.open(found.name, _FILE_FLAGS, dir_fd=found.dir_fd)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileChanged(f"{found.rel} is no longer a regular file ({exc.strerror})") from None
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (found.info.st_dev, found.info.st_ino):
        os.close(fd)
        raise FileChanged(f"{found.rel} was replaced while the snapshot read it")
    return fd


def _read_walked(found: Walked) -> tuple[bytes, bool]:
    """The content of a walked file, and whether it is a SQLite database (then its content is
    not used: the database is copied by ``sqlite_image``)."""
    fd = _open_walked(found)
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            head = fh.read(len(SQLITE_MAGIC))
            if head == SQLITE_MAGIC:
                return b"", True
            return head + fh.read(), False
    finally:
        os.close(fd)


def _database_image(root: Path, found: Walked) -> bytes:
    """A consistent copy of a walked SQLite database. SQLite opens it by path (the backup API
    has no other way), so the path is checked before and after: every directory on the way a
    real directory, and the file the one the walk saw; a link swapped in meanwhile makes the
    copy refused (FileChanged), not kept."""
    _check_path(root, found)
    image = sqlite_image(root / found.rel)
    _check_path(root, found)
    return image


def _check_path(root: Path, found: Walked) -> None:
    current = root
    for part in found.rel.split("/")[:-1]:
        current = current / part
        if not stat.S_ISDIR(os.lstat(current).st_mode):
            raise FileChanged(f"{found.rel}: {current} is no longer a directory")
    info = os.lstat(root / found.rel)
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (found.info.st_dev, found.info.st_ino):
        raise FileChanged(f"{found.rel} was replaced while the snapshot read it")


def read_state_file(root: Path, rel: str) -> bytes:
    """A file of the state directory as it is now (a database as a consistent copy), reached
    without following a link on the way or at the end: the agent may have put one there.
    OSError when it cannot be read, with a message that says why."""
    parts = rel.split("/")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _not_followed(exc, rel) from None
            os.close(fd)
            fd = sub
        info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link (not followed)" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise OSError(errno.EINVAL, f"{rel} is {kind}")
        found = Walked(rel, info, fd)
        try:
            content, database = _read_walked(found)
            return _database_image(root, found) if database else content
        except FileChanged as exc:
            raise OSError(errno.EAGAIN, f"{exc}; try again") from None
    finally:
        os.close(fd)


def _not_followed(exc: OSError, rel: str) -> OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return OSError(exc.errno, f"{rel} lies under a symbolic link or a file (links are not followed)")
    return exc


def _wal_signature(path: Path, dir_fd: int | None = None) -> tuple[int, int]:
    try:
        info = os.stat(f"{path}-wal", dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return (0, 0)
    return (info.st_size, info.st_mtime_ns)


def sqlite_image(path: Path) -> bytes:
    """A consistent copy of the live database at ``path`` (the online backup API).

    With a write-ahead log beside it, the database is opened read-only (a reader never
    checkpoints or removes the log, and does not block the agent's writer). Without one, it is
    opened as immutable: a read-only open would create the ``-wal`` and ``-shm`` files, owned
    by the backend's user, which could lock the sandbox's user out of its own database. Should
    a log appear meanwhile (the agent opened it), the copy is taken again the first way.
    """
    wal = Path(f"{path}-wal")
    for attempt in range(2):
        log_there = wal.exists() or Path(f"{path}-journal").exists()
        image = _backup_copy(path, "mode=ro" if log_there or attempt else "immutable=1")
        if log_there or attempt or not (wal.exists() or Path(f"{path}-journal").exists()):
            return image
    raise AssertionError("unreachable")


def _backup_copy(path: Path, how: str) -> bytes:
    deadline = time.monotonic() + SQLITE_BUSY_LIMIT

    def give_up_when_late(status: int, _remaining: int, _total: int) -> None:
        # Called after every step, busy ones included (the backup API retries a busy source
        # without end): a database a writer holds this long is left for the next snapshot.
        if status in (SQLITE_BUSY, SQLITE_LOCKED) and time.monotonic() > deadline:
            raise sqlite3.OperationalError(
                f"busy for more than {SQLITE_BUSY_LIMIT:g} s (the agent holds it in a write); "
                "the last snapshot's copy is kept"
            )

    source = sqlite3.connect(f"{path.absolute().as_uri()}?{how}", uri=True, timeout=SQLITE_BUSY_LIMIT)
    try:
        target = sqlite3.connect(":memory:")  # no temporary file written and read back
        try:
            # One step: a copy in steps starts over whenever the agent commits between two of
            # them (a large database under a busy agent was never copied). One step holds a read
            # lock, which in WAL mode never blocks the agent's writer.
            source.backup(target, pages=-1, progress=give_up_when_late, sleep=0.05)
            image = bytearray(target.serialize())
        finally:
            target.close()
    finally:
        source.close()
    if image[18:20] == b"\x02\x02":
        # The source's WAL mode, in the header: its log is folded in, so the copy is one file in
        # rollback mode, as PRAGMA journal_mode=DELETE would mark it.
        image[18:20] = b"\x01\x01"
    return bytes(image)


class Capture:
    """Snapshots of one sandbox's state directory into ``repo``."""

    def __init__(
        self, repo: Repository, sandbox: str, root: Path, excludes: Sequence[str] = DEFAULT_EXCLUDES,
    ) -> None:
        self.repo = repo
        self.sandbox = sandbox
        self.root = root
        self.excludes = tuple(excludes)
        # path -> (size, mtime_ns, wal signature) as last captured, and its entry
        self._seen: dict[str, tuple[tuple[int, int, tuple[int, int]], FileEntry]] = {}
        self._last: Snapshot | None = None

    def remember(self, snapshot: Snapshot) -> None:
        """Take ``snapshot`` as what the directory last looked like (at startup)."""
        self._last = snapshot
        self._seen = {
            e.path: ((e.size, e.mtime_ns, _wal_signature(self.root / e.path)), e) for e in snapshot.files
        }

    def _store(
        self, packer: PackWriter, rel: str, content: bytes, info: os.stat_result, before: FileEntry | None,
    ) -> FileEntry:
        """The entry of a file read whole: its content stored (in chunks when large)."""
        mode, mtime = stat.S_IMODE(info.st_mode), info.st_mtime_ns
        name = None
        if len(content) > CHUNK_SIZE and before is not None and before.chunks:
            name = self.repo.blob_name(content)
            if before.blob == name and self.repo.has_blobs(before.chunks):  # a database touched, not changed
                return FileEntry(rel, name, len(content), mode, mtime, before.chunks)
        name, chunks = packer.add_file(content, name)
        return FileEntry(rel, name, len(content), mode, mtime, chunks)

    def take(self, reason: str, parent: str | None = None) -> CaptureReport:
        """Snapshot the directory now (blobs first, the manifest last; no prune meanwhile)."""
        with self.repo.shared():
            return self._take(reason, parent)

    def _take(self, reason: str, parent: str | None) -> CaptureReport:
        started = time.monotonic()
        files: list[FileEntry] = []
        seen: dict[str, tuple[tuple[int, int, tuple[int, int]], FileEntry]] = {}
        packer = self.repo.packer()
        read = 0
        for found in _walk(self.root, self.excludes):
            rel, info = found.rel, found.info
            signature = (info.st_size, info.st_mtime_ns, _wal_signature(Path(found.name), found.dir_fd))
            before = self._seen.get(rel)
            if before is not None and before[0] == signature and self.repo.has_blobs(before[1].blobs):
                entry = before[1]
            else:
                try:
                    content, database = _read_walked(found)
                    if database:
                        content = _database_image(self.root, found)
                except FileNotFoundError:
                    continue  # removed since the walk saw it
                except (OSError, sqlite3.Error, FileChanged) as exc:
                    log.warning("memory snapshot could not read %s: %s", rel, exc)
                    if before is not None and self.repo.has_blobs(before[1].blobs):  # what the last one had
                        files.append(before[1])
                        seen[rel] = before
                    continue
                read += 1
                entry = self._store(packer, rel, content, info, before[1] if before else None)
            files.append(entry)
            seen[rel] = (signature, entry)
        packer.finish()  # the packs and their index, before the manifest that needs them
        new, uploaded = packer.new_blobs, packer.stored_bytes
        last = self._last
        if (
            reason in QUIET_REASONS and last is not None and last.files == files
            and self.repo.snapshot_exists(last)
        ):
            self._seen = seen
            return CaptureReport(last, read, new, uploaded, time.monotonic() - started, unchanged=True)
        snapshot = Snapshot(
            id=new_snapshot_id(), sandbox=self.sandbox, time=time.time(), reason=reason,
            files=files, parent=parent, host=socket.gethostname(),
        )
        self.repo.write_snapshot(snapshot)
        self._seen = seen
        self._last = snapshot
        return CaptureReport(snapshot, read, new, uploaded, time.monotonic() - started)

