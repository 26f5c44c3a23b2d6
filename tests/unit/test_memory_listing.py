"""The listing of a state directory's files now: walked once while watched, then kept up to
date from batches of changed paths (a file, a folder moved in or out, what the excludes leave
out), walked again when not watched or forgotten; and, through a real keeper and its inotify
watcher, a change reaches the listing without a walk."""

from __future__ import annotations

import os
from pathlib import Path

from moltconsole_backend.memory.capture import DEFAULT_EXCLUDES
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.listing import StateListing
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.settings import MemorySettings


def _tree(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _paths(listing: StateListing) -> list[str]:
    return [path for path, _ in listing.files()]


def test_a_watched_listing_is_walked_once_and_kept(tmp_path: Path) -> None:
    _tree(tmp_path, {"workspace/MEMORY.md": "tea\n", "openclaw.json": "{}\n"})
    listing = StateListing(tmp_path, DEFAULT_EXCLUDES)
    listing.watched(True)
    first, found = listing.current()
    assert [p for p, _ in found] == ["openclaw.json", "workspace/MEMORY.md"]
    (tmp_path / "workspace" / "unseen.md").write_text("written with no watcher to tell\n")
    again, kept = listing.current()
    assert (again, kept) == (first, found) and listing.walks == 1 and listing.kept  # nothing walked again
    listing.forget()
    assert "workspace/unseen.md" in _paths(listing) and listing.walks == 2


def test_an_unwatched_listing_is_walked_at_each_call(tmp_path: Path) -> None:
    _tree(tmp_path, {"workspace/MEMORY.md": "tea\n"})
    listing = StateListing(tmp_path, DEFAULT_EXCLUDES)
    version, _ = listing.current()
    assert version is None
    (tmp_path / "workspace" / "new.md").write_text("new\n")
    assert _paths(listing) == ["workspace/MEMORY.md", "workspace/new.md"] and listing.walks == 2
    listing.watched(True)
    listing.files()
    listing.watched(False)  # the watcher stopped: what it kept can no longer be trusted
    (tmp_path / "workspace" / "later.md").write_text("later\n")
    assert "workspace/later.md" in _paths(listing)


def test_changed_paths_are_applied_without_a_walk(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "workspace/MEMORY.md": "tea\n", "workspace/memory/2026-12-01.md": "a\n",
        "workspace/memory/2026-12-02.md": "b\n", "openclaw.json": "{}\n",
    })
    listing = StateListing(tmp_path, DEFAULT_EXCLUDES)
    listing.watched(True)
    before, _ = listing.current()

    (tmp_path / "workspace" / "MEMORY.md").write_text("green tea, no sugar\n")  # changed
    (tmp_path / "openclaw.json").unlink()  # gone
    (tmp_path / "workspace" / "notes.md").write_text("new\n")  # added
    moved_in = tmp_path.parent / f"{tmp_path.name}-skill"
    _tree(moved_in, {"SKILL.md": "# skill\n", "lib/run.sh": "echo\n"})
    os.rename(moved_in, tmp_path / "workspace" / "skills")  # a folder moved in whole: one event
    (tmp_path / "workspace" / "link.md").symlink_to(tmp_path / "workspace" / "MEMORY.md")
    (tmp_path / "workspace" / "draft.tmp").write_text("left out\n")
    listing.changed(str(tmp_path / p) for p in (
        "workspace/MEMORY.md", "openclaw.json", "workspace/notes.md", "workspace/skills",
        "workspace/link.md", "workspace/draft.tmp",
    ))
    after, found = listing.current()
    sizes = dict(found)
    assert list(sizes) == [
        "workspace/MEMORY.md", "workspace/memory/2026-12-01.md", "workspace/memory/2026-12-02.md",
        "workspace/notes.md", "workspace/skills/SKILL.md", "workspace/skills/lib/run.sh",
    ]
    assert sizes["workspace/MEMORY.md"].st_size == len("green tea, no sugar\n")
    assert after != before and listing.walks == 1

    # A folder gone takes what was under it; a path outside the directory is no business of it.
    for name in ("2026-12-01.md", "2026-12-02.md"):
        (tmp_path / "workspace" / "memory" / name).unlink()
    (tmp_path / "workspace" / "memory").rmdir()
    listing.changed([str(tmp_path / "workspace" / "memory"), "/elsewhere/file.md"])
    assert not [p for p in _paths(listing) if p.startswith("workspace/memory/")] and listing.walks == 1
    # The directory itself changed (swapped by a restore, say): walked again at the next call.
    listing.changed([str(tmp_path)])
    _paths(listing)
    assert listing.walks == 2


def test_a_change_during_a_walk_is_applied_to_what_the_walk_found(tmp_path: Path) -> None:
    _tree(tmp_path, {"workspace/MEMORY.md": "tea\n"})
    listing = StateListing(tmp_path, DEFAULT_EXCLUDES)
    listing.watched(True)
    walk = listing._walk

    def walk_then_change(start: str, dirs: set[str]):  # type: ignore[no-untyped-def]
        yield from walk(start, dirs)
        if start == "":  # the top walk is done; the watcher reports a file written meanwhile
            (tmp_path / "workspace" / "late.md").write_text("late\n")
            listing.changed([str(tmp_path / "workspace" / "late.md")])

    listing._walk = walk_then_change  # type: ignore[method-assign]
    assert _paths(listing) == ["workspace/MEMORY.md", "workspace/late.md"]
    listing._walk = walk  # type: ignore[method-assign]
    assert _paths(listing) == ["workspace/MEMORY.md", "workspace/late.md"] and listing.walks == 1


async def test_a_keeper_hears_a_change_and_lists_it_without_walking(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _tree(state, {"workspace/MEMORY.md": "tea\n"})
    repo = Repository(LocalStore(tmp_path / "repo")).open()
    settings = MemorySettings(enabled=True, debounce=0.1, max_delay=0.5, interval=0)
    keeper = MemoryKeeper("main", state, repo, None, settings)
    await keeper.start()
    try:
        await keeper.wait(lambda k: k.last is not None and k.last.reason == "first", 10)
        await keeper.wait(lambda k: k.listing.kept, 10)  # walked once the watcher is on
        walks = keeper.listing.walks
        (state / "workspace" / "notes.md").write_text("new\n")
        # The watcher hands the change to the listing, then to the change snapshot.
        await keeper.wait(lambda k: k.last is not None and k.last.reason == "change", 10)
        assert [p for p, _ in keeper.files_now()] == ["workspace/MEMORY.md", "workspace/notes.md"]
        assert keeper.listing.walks == walks
    finally:
        await keeper.close()
