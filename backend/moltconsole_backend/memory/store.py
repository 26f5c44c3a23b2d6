"""Where a memory repository's objects live: the narrow interface the repository asks of a
storage, and the local-directory storage (the zero-config default).

An object is an immutable byte string under a key of ``/``-separated parts, each part made of
letters, digits, ``.``, ``_`` and ``-`` only (never ``.`` or ``..``): the repository never
needs more, and a key from a bucket that does not fit is refused before it can name a path.
Objects are written whole or not at all, so a crash never leaves half an object behind.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from moltconsole_shared.files import write_atomically

_PART = re.compile(r"[A-Za-z0-9_.-]{1,200}")


class StoreError(Exception):
    """The storage failed or cannot be reached; the message says which and what to do."""


class StoreUnreachable(StoreError):
    """The storage cannot be reached now (network, endpoint down); worth trying again later."""


class ObjectMissing(StoreError):
    """No object under that key."""


def check_key(key: str) -> str:
    """``key`` if it is a well-formed object key; ValueError otherwise (untrusted input)."""
    parts = key.split("/")
    if not parts or any(not _PART.fullmatch(p) or p in (".", "..") for p in parts):
        raise ValueError(f"not a repository object key: {key!r}")
    return key


class ObjectStore(Protocol):
    """What a memory repository asks of its storage."""

    @property
    def where(self) -> str:
        """Where the objects are, for messages (a path, or s3://bucket/prefix)."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing it), whole or not at all."""

    def get(self, key: str) -> bytes:
        """The object under ``key``; ObjectMissing if there is none."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object under ``key`` from ``start`` (fewer at its end)."""

    def exists(self, key: str) -> bool:
        """Whether there is an object under ``key``."""

    def list(self, prefix: str) -> Iterator[str]:
        """Every key that starts with ``prefix`` (a whole key part and "/"), in any order."""

    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (no error if there is none)."""


class LocalStore:
    """Objects as files under a directory (owner-only), written by rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def where(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"{key} is not in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                return fh.read(length)
        except FileNotFoundError:
            raise ObjectMissing(f"{key} is not in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        trimmed = prefix.strip("/")
        base = self.root.joinpath(*check_key(trimmed).split("/")) if trimmed else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith("."):
                    continue  # a write in progress or cut short
                yield name if rel == "." else f"{rel}/{name}"

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


class LocalFirst:
    """The local repository's storage with the bucket behind it, for one repository kept in
    both: writes go to the local storage (the bucket gets them by replication), reads look
    locally first and then in the bucket (a new server restoring from it), lists are the union
    (the local one alone while the bucket is away), deletes remove both copies.
    """

    def __init__(self, local: ObjectStore, remote: ObjectStore) -> None:
        self.local = local
        self.remote = remote

    @property
    def where(self) -> str:
        return f"{self.local.where} (and {self.remote.where})"

    def put(self, key: str, data: bytes) -> None:
        self.local.put(key, data)

    def get(self, key: str) -> bytes:
        try:
            return self.local.get(key)
        except ObjectMissing:
            return self.remote.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            return self.local.get_range(key, start, length)
        except ObjectMissing:
            return self.remote.get_range(key, start, length)

    def exists(self, key: str) -> bool:
        return self.local.exists(key) or self.remote.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        seen = set(self.local.list(prefix))
        yield from seen
        try:
            for key in self.remote.list(prefix):
                if key not in seen:
                    yield key
        except StoreUnreachable:
            return  # the local repository alone while the bucket is away

    def delete(self, key: str) -> None:
        # Both copies, the bucket first: if it cannot be reached nothing changes, and the
        # local copy never lacks what the bucket still holds.
        self.remote.delete(key)
        self.local.delete(key)
