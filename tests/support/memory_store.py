"""Reaching into a local memory repository from tests: where a blob's bytes are, damaging one."""

from __future__ import annotations

from pathlib import Path

from moltconsole_backend.memory.repo import Repository


def blob_span(repo: Repository, root: Path, name: str) -> tuple[Path, int, int]:
    """The file under the repository ``root`` that holds blob ``name``, and the blob's offset
    and length in it."""
    repo.forget_catalog()
    place = repo.where(name)
    path = root.joinpath(*place.key.split("/"))
    length = place.length if place.length is not None else path.stat().st_size
    return path, place.offset, length


def damage_blob(repo: Repository, root: Path, name: str) -> Path:
    """Flip the last byte of blob ``name`` where it is stored; the file changed."""
    path, offset, length = blob_span(repo, root, name)
    data = bytearray(path.read_bytes())
    data[offset + length - 1] ^= 0xFF
    path.write_bytes(bytes(data))
    return path
