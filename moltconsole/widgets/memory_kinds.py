"""What kind of file a memory file is, which decides how the Memory screen shows it.

A SQLite database is known by its name before anything is read (the screen never fetches a
database whole: its view asks the backend for tables and rows); a file too large to show is
known by its size; everything else by its first bytes and then its name. No widgets here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_NAMES = (".sqlite", ".sqlite3", ".db")
READ_LIMIT = 8 * 1024 * 1024  # a larger file is not fetched to be shown; its size is said
MARKDOWN_RENDER_LIMIT = 256 * 1024  # a longer markdown file is shown as its text, not rendered
PRETTY_LIMIT = 512 * 1024  # a longer JSON file is shown as written, not re-indented and coloured
# First bytes of kinds of binary file an agent's state may hold, to say what one is.
MAGIC_NAMES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "zip archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"RIFF", "RIFF media (WebP, WAV...)"),
)


class FileKind(StrEnum):
    """How a file is shown."""

    MARKDOWN = "markdown"
    JSON = "JSON"
    JSON5 = "JSON5"
    TEXT = "text"
    BINARY = "binary"
    SQLITE = "SQLite database"
    LARGE = "large"


def kind_by_name(path: str, size: int) -> FileKind | None:
    """The kind, where the name or the size decides it without reading the file; else None."""
    if path.lower().endswith(SQLITE_NAMES):
        return FileKind.SQLITE
    if size > READ_LIMIT:
        return FileKind.LARGE
    return None


def kind_of(path: str, content: bytes) -> FileKind:
    """The kind of a file read whole."""
    if content.startswith(SQLITE_MAGIC):
        return FileKind.SQLITE
    if as_text(content) is None:
        return FileKind.BINARY
    lower = path.lower()
    if lower.endswith((".md", ".markdown")):
        return FileKind.MARKDOWN
    if lower.endswith(".json5"):
        return FileKind.JSON5
    if lower.endswith(".json"):
        return FileKind.JSON
    return FileKind.TEXT


def as_text(content: bytes) -> str | None:
    """``content`` as text, or None when it is not (a NUL byte early on, or not UTF-8)."""
    if b"\x00" in content[:8192]:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def binary_name(content: bytes) -> str:
    """What a binary file is, by its first bytes."""
    for magic, name in MAGIC_NAMES:
        if content.startswith(magic):
            return name
    return "binary data"


def pretty_json(text: str) -> str | None:
    """``text`` re-indented, or None when it is not strict JSON (JSON5 with comments, say)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file to show: its bytes (None for a database, which its view reads itself, and for a
    file too large to show), its kind, and the line to show first (a search match)."""

    path: str
    snapshot: str | None
    size: int
    kind: FileKind
    content: bytes | None = None
    line: int | None = None
