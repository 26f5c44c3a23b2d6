"""The files of a sandbox's state directory now, as the next snapshot would keep them, kept up to
date from the keeper's watcher instead of walked at every request.

Walking a 10,000-file state directory takes 120-330 ms (a scandir and an lstat a file, and the
exclude patterns on each path); the Memory screen and ``moltconsole memory ls`` ask for it each
time they open, and the screen again after every snapshot. So the listing is walked once, then
kept: the keeper's watcher (inotify, through watchfiles) hands every batch of changed paths to
:meth:`StateListing.changed`, which looks at those paths alone (a file: one lstat; a folder
that appeared or changed: a walk of that folder; a path gone: it and what was under it leave).

The kept listing is trusted only while the watcher runs (:meth:`watched`): before it starts,
after it stops (the directory went away, or was swapped by a whole restore), and after the
keeper's own writes (:meth:`forget`), the next call walks again. A walk that overlaps a batch
of changes applies that batch to what it found before it is kept, so no change is lost between
the two. ``version`` names one state of the listing, so an answer built from it (the API's
encoded file list) can be kept as long as the version is the same.

The rules are those of a snapshot: regular files only (links are left out), nothing that
``memory.excludes`` matches or that lies under a folder it matches.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from moltconsole_backend.memory.capture import excluded

Found = list[tuple[str, os.stat_result]]
_versions = itertools.count(1)  # versions are unique across listings, so a cache never mixes two


class StateListing:
    """The regular files under ``root`` (relative '/'-separated path -> lstat), kept."""

    def __init__(self, root: Path, excludes: Sequence[str]) -> None:
        self.root = root
        self.excludes = tuple(excludes)
        self._lock = threading.Lock()  # guards the fields below
        self._walk_lock = threading.Lock()  # one walk at a time; the next one reuses its result
        self._files: dict[str, os.stat_result] | None = None
        self._dirs: set[str] = set()
        self._sorted: Found | None = None
        self._watched = False
        self._changed_while_walking: set[str] | None = None
        self._walk_spoiled = False  # forgotten while a walk ran: its result is not kept
        self.version = next(_versions)
        self.walks = 0  # full walks done (tests and the bench read it)

    # --- the watcher's side -----------------------------------------------------------------
    def watched(self, on: bool) -> None:
        """The watcher started (``on``) or stopped: only a watched listing is kept."""
        with self._lock:
            self._watched = on
            if not on:
                self._drop()

    def forget(self) -> None:
        """Walk again at the next call (the keeper wrote to the directory itself)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._files, self._sorted = None, None
        self._dirs = set()
        if self._changed_while_walking is not None:
            self._walk_spoiled = True
        self.version = next(_versions)

    def changed(self, paths: Iterable[str]) -> None:
        """The watcher saw these paths (absolute, under ``root``) change: look at them again.
        Call in a thread (a folder that appeared is walked)."""
        relative = []
        for path in paths:
            try:
                rel = Path(path).relative_to(self.root).as_posix()
            except ValueError:
                continue
            relative.append(rel)
        if not relative:
            return
        with self._lock:
            if self._changed_while_walking is not None:
                self._changed_while_walking.update(relative)
            if self._files is None:
                return
            if any(rel in ("", ".") for rel in relative):
                self._drop()  # the directory itself: walk it all again
                return
            for rel in sorted(relative, key=lambda p: p.count("/")):  # a folder before its files
                self._apply(self._files, self._dirs, rel)
            self._sorted = None
            self.version = next(_versions)

    def _apply(self, files: dict[str, os.stat_result], dirs: set[str], rel: str) -> None:
        """Bring ``rel`` (and, for a folder, what is under it) up to date in ``files``."""
        info: os.stat_result | None
        if excluded(rel, self.excludes):
            info = None
        else:
            try:
                info = os.lstat(self.root / rel)
            except (FileNotFoundError, NotADirectoryError):
                info = None
        files.pop(rel, None)
        if rel in dirs or (info is not None and stat.S_ISDIR(info.st_mode)):
            # A folder gone, or one that appeared or changed (moved in whole, say): what was
            # under it goes, and what is under it now comes.
            below = rel + "/"
            for gone in [p for p in files if p.startswith(below)]:
                del files[gone]
            dirs.discard(rel)
            for gone in [d for d in dirs if d.startswith(below)]:
                dirs.discard(gone)
        if info is None:
            return
        if stat.S_ISREG(info.st_mode):
            files[rel] = info
        elif stat.S_ISDIR(info.st_mode):
            dirs.add(rel)
            for path, found in self._walk(rel, dirs):
                files[path] = found

    # --- the readers' side ------------------------------------------------------------------
    @property
    def kept(self) -> bool:
        """Whether the next call answers from the kept listing (no walk)."""
        with self._lock:
            return self._watched and self._files is not None

    def files(self) -> Found:
        """(path, lstat) of each file, by path. Call in a thread: it may walk the directory."""
        return self.current()[1]

    def current(self) -> tuple[int | None, Found]:
        """The listing and its version (None when it is not kept: each call walks again)."""
        with self._lock:
            if self._watched and self._files is not None:
                return self.version, self._ordered()
        with self._walk_lock:
            with self._lock:
                if self._watched and self._files is not None:  # walked while this one waited
                    return self.version, self._ordered()
                self._changed_while_walking = set()
                self._walk_spoiled = False
            dirs: set[str] = set()
            try:
                found = dict(self._walk("", dirs)) if self.root.is_dir() else {}
            except BaseException:
                with self._lock:
                    self._changed_while_walking = None
                raise
            with self._lock:
                self.walks += 1
                late, self._changed_while_walking = self._changed_while_walking or set(), None
                for rel in sorted(late, key=lambda p: p.count("/")):
                    if rel not in ("", "."):
                        self._apply(found, dirs, rel)
                if not self._watched or self._walk_spoiled:
                    return None, sorted(found.items())
                self._files, self._dirs, self._sorted = found, dirs, None
                self.version = next(_versions)
                return self.version, self._ordered()

    def _ordered(self) -> Found:
        if self._sorted is None:
            assert self._files is not None
            self._sorted = sorted(self._files.items())
        return self._sorted

    def _walk(self, start: str, dirs: set[str]) -> Iterable[tuple[str, os.stat_result]]:
        """(relative path, lstat) of each regular file under ``start`` ("" for the top), not
        following links; the folders met are added to ``dirs``."""
        stack = [start]
        while stack:
            rel_dir = stack.pop()
            try:
                with os.scandir(self.root / rel_dir if rel_dir else self.root) as entries:
                    items = list(entries)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            for entry in items:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if excluded(rel, self.excludes):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    dirs.add(rel)
                    stack.append(rel)
                elif stat.S_ISREG(info.st_mode):
                    yield rel, info
