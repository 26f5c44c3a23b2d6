"""Reading a sandbox's memory without changing it: a file's versions across snapshots, the diff
between two versions, and a search through the files' text.

Pure functions over snapshots (oldest first) and a way to read a version's bytes; the keeper
supplies both, so the same code serves the state directory now and any snapshot.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from moltconsole_backend.memory.repo import Snapshot

MAX_TEXT = 4 * 1024 * 1024  # a file larger than this is not diffed or searched line by line
LINE_SHOWN = 300  # a search match shows at most this much of its line
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Version:
    """A version of one file: the first snapshot holding it so, or the first without it."""

    snapshot: Snapshot
    change: str  # added, changed, removed
    size: int
    blob: str | None


def history(snapshots: Sequence[Snapshot], path: str) -> list[Version]:
    """The versions of ``path`` across ``snapshots`` (oldest first): a new version each time its
    content (blob) changes, appears or goes away."""
    versions: list[Version] = []
    current: str | None = None
    for snap in snapshots:
        entry = next((f for f in snap.files if f.path == path), None)
        blob = entry.blob if entry is not None else None
        if blob == current:
            continue
        if blob is None:
            versions.append(Version(snap, "removed", 0, None))
        else:
            assert entry is not None
            versions.append(Version(snap, "added" if current is None else "changed", entry.size, blob))
        current = blob
    return versions


def under(paths: Iterable[str], folder: str) -> list[str]:
    """The paths that are ``folder`` itself or lie under it."""
    folder = folder.rstrip("/")
    return [p for p in paths if p == folder or p.startswith(folder + "/")]


def as_text(content: bytes) -> str | None:
    """``content`` as text, or None for a binary file (NUL bytes, not UTF-8, a SQLite database,
    or too large to show line by line)."""
    if len(content) > MAX_TEXT or content.startswith(SQLITE_MAGIC) or b"\x00" in content[:8192]:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class Diff:
    text: str
    binary: bool
    same: bool


def diff(path: str, old: bytes | None, new: bytes | None, old_name: str, new_name: str) -> Diff:
    """A unified diff of two versions of ``path`` (None: the file is not there)."""
    if old == new:
        return Diff("", binary=False, same=True)
    old_text = "" if old is None else as_text(old)
    new_text = "" if new is None else as_text(new)
    if old_text is None or new_text is None:
        sizes = f"{_size(old)} -> {_size(new)}"
        return Diff(f"binary file {path} differs ({sizes})", binary=True, same=False)
    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"{path} ({old_name})", tofile=f"{path} ({new_name})",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return Diff(text, binary=False, same=False)


def _size(content: bytes | None) -> str:
    return "absent" if content is None else f"{len(content):,} bytes"


@dataclass(frozen=True)
class Match:
    path: str
    line: int
    text: str


def search(
    paths: Sequence[str], read: Callable[[str], bytes | None], query: str, limit: int,
) -> tuple[list[Match], int, bool]:
    """Lines holding ``query`` (case-insensitive) in the text files among ``paths``, workspace
    markdown first; (matches, files searched, whether there were more than ``limit``)."""
    needle = query.casefold()
    matches: list[Match] = []
    searched = 0
    for path in sorted(paths, key=reading_order):
        content = read(path)
        if content is None:
            continue
        text = as_text(content)
        if text is None:
            continue
        searched += 1
        if needle not in text.casefold():
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if needle in line.casefold():
                if len(matches) == limit:
                    return matches, searched, True
                matches.append(Match(path, number, line[:LINE_SHOWN]))
    return matches, searched, False


def reading_order(path: str) -> tuple[int, str]:
    """What a person looks at first: the workspace's markdown, then other markdown, then the
    rest (config, credentials, databases), each by path."""
    if path.startswith("workspace/") and path.endswith(".md"):
        return 0, path
    if path.endswith(".md"):
        return 1, path
    return 2, path
