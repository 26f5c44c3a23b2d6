"""The agent owns its state directory and may swap a file or a directory for a link to the
host while a snapshot runs: nothing outside the state directory may end up in a snapshot (a
restore would hand it to the agent)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from moltconsole_backend.memory import capture
from moltconsole_backend.memory.capture import Capture, Walked
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.store import LocalStore

SECRET = b"host secret: the backend's keys\n"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalStore(tmp_path / "repo")).open()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory of the host, outside the state directory, holding a secret and a database."""
    root = tmp_path / "host"
    root.mkdir()
    (root / "MEMORY.md").write_bytes(SECRET)
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute("CREATE TABLE secrets (value TEXT)")
        db.execute("INSERT INTO secrets VALUES ('host database row')")
    return root


def swapping(monkeypatch: pytest.MonkeyPatch, when: str, swap: Callable[[], None]) -> list[str]:
    """Make the walk run ``swap`` right after it finds ``when`` and before the snapshot reads
    it (the race an agent would try to win); the paths the walk found are returned."""
    walk = capture._walk
    seen: list[str] = []

    def racing(root: Path, patterns: Sequence[str]) -> Iterator[Walked]:
        for found in walk(root, patterns):
            seen.append(found.rel)
            if found.rel == when:
                swap()
            yield found

    monkeypatch.setattr(capture, "_walk", racing)
    return seen


def contents(repo: Repository, snap_files: Sequence[object]) -> list[bytes]:
    return [repo.read_file(entry) for entry in snap_files]  # type: ignore[arg-type]


def test_a_file_swapped_for_a_link_after_the_walk_is_not_read_through_it(
    repo: Repository, outside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    (state / "workspace").mkdir(parents=True)
    memory = state / "workspace" / "MEMORY.md"
    memory.write_text("the agent's own memory\n")

    def swap() -> None:
        memory.unlink()
        memory.symlink_to(outside / "MEMORY.md")

    swapping(monkeypatch, "workspace/MEMORY.md", swap)
    snap = Capture(repo, "main", state).take("manual").snapshot
    assert SECRET not in contents(repo, snap.files)
    assert [f.path for f in snap.files] == []  # the file the walk saw is gone: left out, said in the log


def test_a_file_replaced_by_another_after_the_walk_is_not_taken_for_it(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "a.md").write_text("first\n")

    def swap() -> None:
        (state / "b.md").write_text("another file\n")
        os.replace(state / "b.md", state / "a.md")  # a hard swap: a new inode under the name

    swapping(monkeypatch, "a.md", swap)
    snap = Capture(repo, "main", state).take("manual").snapshot
    assert snap.files == []  # not the file the walk saw; the next snapshot takes the new one
    monkeypatch.undo()
    again = Capture(repo, "main", state).take("manual").snapshot
    assert contents(repo, again.files) == [b"another file\n"]


def test_a_directory_swapped_for_a_link_during_the_walk_leads_nowhere(
    repo: Repository, outside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    (state / "workspace").mkdir(parents=True)
    (state / "a.md").write_text("listed before workspace/\n")
    (state / "workspace" / "MEMORY.md").write_text("the agent's own memory\n")

    def swap() -> None:  # after the walk listed the top directory, before it goes into workspace/
        (state / "workspace" / "MEMORY.md").unlink()
        (state / "workspace").rmdir()
        (state / "workspace").symlink_to(outside, target_is_directory=True)

    seen = swapping(monkeypatch, "a.md", swap)
    snap = Capture(repo, "main", state).take("manual").snapshot
    assert seen == ["a.md"]
    assert [f.path for f in snap.files] == ["a.md"]
    assert SECRET not in contents(repo, snap.files)


def test_a_database_swapped_for_a_link_is_not_copied_through_it(
    repo: Repository, outside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    agent_db = state / "openclaw.sqlite"
    with sqlite3.connect(agent_db) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('the agent''s row')")

    def swap() -> None:
        agent_db.unlink()
        agent_db.symlink_to(outside / "ledger.sqlite")

    swapping(monkeypatch, "openclaw.sqlite", swap)
    snap = Capture(repo, "main", state).take("manual").snapshot
    assert all(b"host database row" not in content for content in contents(repo, snap.files))
    assert snap.files == []


def test_a_file_now_is_not_read_through_a_link_on_its_way(outside: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "workspace").symlink_to(outside, target_is_directory=True)
    (state / "MEMORY.md").symlink_to(outside / "MEMORY.md")
    (state / "notes.md").write_text("the agent's own\n")
    assert capture.read_state_file(state, "notes.md") == b"the agent's own\n"
    with pytest.raises(OSError, match=r"workspace/MEMORY\.md lies under a symbolic link"):
        capture.read_state_file(state, "workspace/MEMORY.md")
    with pytest.raises(OSError, match=r"MEMORY\.md is a symbolic link"):
        capture.read_state_file(state, "MEMORY.md")
