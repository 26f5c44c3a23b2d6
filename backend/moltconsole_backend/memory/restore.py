"""Putting files of a snapshot back, never outside the state directory.

A manifest's paths are untrusted (anyone who can write the bucket can write a manifest), so
every path is checked before it names a file: relative, '/'-separated, no empty, '.' or '..'
part, no NUL; and on the way down every directory that exists must be a real directory, not a
symbolic link (a link planted in the state directory could lead a write elsewhere). A file is
written next to its place and renamed over it, so a reader sees the old or the new content.

A whole snapshot is restored into a staging directory beside the state directory, which then
takes the state directory's place by two renames; an interruption before the swap leaves the
state directory as it was (and the staging directory, removed on the next restore), never
half-restored. The caller takes a safety snapshot first and stops the sandbox around it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from moltconsole_backend.memory.repo import FileEntry, Repository, Snapshot, Where

Progress = Callable[[int, int], None]  # bytes done, bytes in all
FETCHERS = 16
FETCH_AHEAD = 64  # objects asked for before their files are written
AHEAD_BYTES = 64 * 1024 * 1024  # and at most about this many stored bytes (memory stays bounded)
GUESS_BYTES = 64 * 1024  # a blob stored alone counts as this much (its size is not listed)


class UnsafePath(Exception):
    """A path from a manifest that would lead outside the state directory."""


def safe_parts(path: str) -> list[str]:
    """The parts of a manifest path, or UnsafePath if it is not a plain relative path."""
    if not path or "\x00" in path or path.startswith("/") or "\\" in path:
        raise UnsafePath(f"refusing the path {path!r}: not a relative path")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(f"refusing the path {path!r}: it has an empty, '.' or '..' part")
    return parts


def _prepare_parent(root: Path, parts: Sequence[str], checked: set[Path] | None = None) -> Path:
    """Create the directories above a file under ``root``, refusing any that is a link;
    ``checked`` holds directories this restore made or checked already (not looked at again:
    6 stats a file were a quarter of a 10,000-file restore)."""
    current = root
    for part in parts[:-1]:
        current = current / part
        if checked is not None:
            if current in checked:
                continue
            checked.add(current)
        try:
            info = current.lstat()
        except FileNotFoundError:
            current.mkdir(mode=0o700)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"refusing to write under {current}: it is not a directory (a link?)")
    return current


def write_file(
    root: Path, entry: FileEntry, content: bytes, *, sync: bool = True, checked: set[Path] | None = None,
) -> Path:
    """Write ``content`` as ``entry`` under ``root``. Into the live state directory (``sync``)
    the file is written and synced beside its place and renamed over it, so a reader sees the
    old or the new content. Into a staging directory of the backend's own (``checked`` given,
    ``sync`` False: synced once, at the end, before the swap that makes it count) it is
    written in its place at once, a rename less a file; a name written before (a manifest
    naming a path twice) is refused."""
    parts = safe_parts(entry.path)
    parent = _prepare_parent(root, parts, checked)
    target = parent / parts[-1]
    if checked is not None and not sync:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise UnsafePath(f"refusing the path {entry.path!r}: the snapshot names it twice") from None
        _fill(fd, entry, content, sync=False)
        return target
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(target.lstat().st_mode):
            raise UnsafePath(f"refusing to replace the directory {target} with a file")
    tmp = parent / f".restore-{os.getpid()}-{parts[-1][:40]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        _fill(fd, entry, content, sync=sync)
        os.replace(tmp, target)  # a link at target is replaced, not followed
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _fill(fd: int, entry: FileEntry, content: bytes, *, sync: bool) -> None:
    """Write ``content`` into the open file ``fd`` with ``entry``'s mode and time; close it."""
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
        os.fchmod(fd, entry.mode & 0o777)
        if entry.mtime_ns:
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    finally:
        os.close(fd)


def restore_files(
    repo: Repository, entries: Sequence[FileEntry], root: Path, progress: Progress | None = None,
    *, sync: bool = True,
) -> int:
    """Put ``entries`` back under ``root``; the bytes written. ``sync`` False: ``root`` is a
    staging directory of the backend's own, synced once by the caller.

    The blobs are read one object at a time (a pack's span of needed blobs in one request),
    by ``FETCHERS`` threads that also decompress and check them, in the order the files need
    them and at most ``AHEAD_BYTES`` ahead of the files written; each blob is let go once the
    last file that needs it is written."""
    for entry in entries:
        safe_parts(entry.path)  # before any read of the bucket
    total = sum(e.size for e in entries)
    uses: dict[str, int] = {}
    groups: dict[str, list[tuple[str, Where]]] = {}  # object key -> its blobs to read
    unit_of: dict[str, int] = {}  # blob -> its object's place in ``order``
    order: list[str] = []
    places: dict[str, int] = {}
    for entry in entries:
        for blob in entry.blobs:
            uses[blob] = uses.get(blob, 0) + 1
            if blob in unit_of:
                continue
            place = repo.where(blob)
            if place.key not in groups:
                groups[place.key] = []
                places[place.key] = len(order)
                order.append(place.key)
            groups[place.key].append((blob, place))
            unit_of[blob] = places[place.key]
    # Into a private staging directory the agent cannot reach, a directory checked once stays
    # checked; into the live state directory every file checks its way down again.
    checked: set[Path] | None = None if sync else set()
    have: dict[str, bytes] = {}
    done = 0
    with ThreadPoolExecutor(FETCHERS, thread_name_prefix="mc-restore") as pool:
        inflight: dict[int, tuple[Future[dict[str, bytes]], int]] = {}
        submitted = 0
        ahead = 0

        def fill(needed: int) -> None:
            nonlocal submitted, ahead
            while submitted < len(order) and (
                submitted <= needed or (ahead < AHEAD_BYTES and len(inflight) < FETCH_AHEAD)
            ):
                key = order[submitted]
                size = sum(place.length or GUESS_BYTES for _, place in groups[key])
                inflight[submitted] = (pool.submit(repo.fetch, key, groups[key]), size)
                ahead += size
                submitted += 1

        try:
            for entry in entries:
                units = sorted({unit_of[blob] for blob in entry.blobs})
                fill(units[-1])
                for unit in units:
                    if unit in inflight:
                        fetched, size = inflight.pop(unit)
                        have.update(fetched.result())
                        ahead -= size
                parts = [have[blob] for blob in entry.blobs]
                content = repo.join(entry, parts) if entry.chunks else parts[0]
                write_file(root, entry, content, sync=sync, checked=checked)
                for blob in entry.blobs:
                    uses[blob] -= 1
                    if not uses[blob]:
                        del have[blob]
                done += entry.size
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for fetched, _ in inflight.values():
                fetched.cancel()
            raise
    return done


def staging_dir(root: Path) -> Path:
    return root.parent / f".{root.name}.restoring"


def restore_snapshot(
    repo: Repository, snapshot: Snapshot, root: Path, progress: Progress | None = None,
) -> Path | None:
    """Make ``root`` hold exactly ``snapshot``'s files; the previous directory is moved aside
    and returned (the caller removes it once the restore is known good), or None if there
    was none."""
    for entry in snapshot.files:
        safe_parts(entry.path)  # refuse a bad manifest before anything changes
    staging = staging_dir(root)
    if staging.exists():
        shutil.rmtree(staging)  # an earlier restore cut short
    staging.mkdir(mode=0o700, parents=True)
    restore_files(repo, snapshot.files, staging, progress, sync=False)
    os.sync()  # every file durable at once, before the swap makes them the state
    previous: Path | None = None
    if root.exists():
        previous = root.parent / f".{root.name}.before-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.replace(root, previous)
    os.replace(staging, root)
    return previous
