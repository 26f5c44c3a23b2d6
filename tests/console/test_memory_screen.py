"""The Memory screen against the backend's real memory API over a real keeper and repository.

The API runs on a unix socket from a thread (``memory_world``); the screen talks to it through
the real client. The state directory is shaped like OpenClaw's (workspace markdown, config,
credentials, a SQLite database, a picture) and the repository holds two snapshots taken at
fixed times, so the snapshots of the screen are the same on every run: the console's clock
says T0 and local time is UTC.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Markdown, OptionList, Static

from moltconsole.client import BackendClient
from moltconsole.memory_client import MemoryClient
from moltconsole.resources import styles_dir
from moltconsole.screens.confirm import ConfirmScreen
from moltconsole.screens.memory import MemoryScreen
from moltconsole.screens.memory_snapshots import SnapshotPickerScreen
from moltconsole.screens.memory_timeline import TimelineScreen
from moltconsole.widgets.database_view import DatabaseView
from moltconsole.widgets.memory_tree import PAGE, Folder, More
from moltconsole_shared.wire.memory import FileInfo
from tests.console.memory_world import (
    FILES_NOW,
    MEMORY_NOW,
    MEMORY_V1,
    SNAPSHOTS,
    T0,
    World,
    served,
)
from tests.unit.test_cost_routes import local_time_utc

GUARD = 10.0  # a hang fails the test after this long
OLDEST, NEWER = SNAPSHOTS[0][0], SNAPSHOTS[1][0]


class MemoryApp(App[None]):
    """The smallest app that hosts the Memory screen, as the console's app does: the base and
    Memory stylesheets, a connected backend, the sandbox's name and a frozen clock."""

    CSS_PATH = [str(styles_dir() / name) for name in ("app.tcss", "memory.tcss", "database.tcss")]

    def __init__(self, socket: Path, source: MemoryClient | None = None) -> None:
        super().__init__()
        self.client = BackendClient(socket)
        self.source = source or self.client.memory
        # What the status bar reads from the console's app.
        self.connected = True
        self.status = {"state": "ready", "openclaw_version": "2026.9.6"}
        self.sandbox_name = "unit"
        self.clock = lambda: T0

    def link_text(self) -> None:
        return None

    def on_mount(self) -> None:
        self.push_screen(MemoryScreen(self.source, clock=lambda: T0, sandbox="unit"))

    async def on_unmount(self) -> None:
        await self.client.aclose()


@pytest.fixture(scope="module")
def shared() -> Iterator[World]:
    """A world the tests that only read share."""
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    try:
        with local_time_utc(), served(World(root)) as world:
            yield world
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _world(**options: Any) -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    try:
        with local_time_utc(), served(World(root, **options)) as world:
            yield world
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh() -> Iterator[World]:
    """A world of this test's own (it restores, backs up or edits)."""
    yield from _world()


@pytest.fixture
def memory_off() -> Iterator[World]:
    yield from _world(memory_on=False)


def memory(pilot: Pilot[None]) -> MemoryScreen:
    for screen in pilot.app.screen_stack:
        if isinstance(screen, MemoryScreen):
            return screen
    raise AssertionError("no Memory screen")


async def settled(pilot: Pilot[None]) -> MemoryScreen:
    """Until the files, the first file and the sync status are on screen."""
    await pilot.pause()
    screen = memory(pilot)
    await asyncio.wait_for(screen.listed.wait(), GUARD)
    await asyncio.wait_for(screen.file_shown.wait(), GUARD)
    await asyncio.wait_for(screen.status_seen.wait(), GUARD)
    await pilot.pause()
    return screen


async def cursor_to(pilot: Pilot[None], path: str) -> None:
    """Put the tree's cursor on ``path`` and wait until the file (or folder) shows."""
    screen = memory(pilot)
    chosen = screen.file_tree.chosen
    if chosen is not None and chosen.path == path:
        return  # there already
    screen.file_shown.clear()
    assert screen.file_tree.reveal(path)
    await pilot.pause()
    if not isinstance(screen.file_tree.chosen, Folder):
        await asyncio.wait_for(screen.file_shown.wait(), GUARD)
    await pilot.pause()


async def open_timeline(pilot: Pilot[None], path: str) -> TimelineScreen:
    await settled(pilot)
    await cursor_to(pilot, path)
    await pilot.press("t")
    timeline = pilot.app.screen
    assert isinstance(timeline, TimelineScreen)
    await asyncio.wait_for(timeline.loaded.wait(), GUARD)
    await asyncio.wait_for(timeline.diffed.wait(), GUARD)
    await pilot.pause()
    return timeline


async def search_for(pilot: Pilot[None], text: str) -> MemoryScreen:
    screen = await settled(pilot)
    await pilot.press("slash", *text, "enter")
    await asyncio.wait_for(screen.searched.wait(), GUARD)
    await asyncio.wait_for(screen.file_shown.wait(), GUARD)
    await pilot.pause()
    return screen


async def ask_restore(pilot: Pilot[None], path: str) -> ConfirmScreen:
    """R on ``path`` now: the picker, the older snapshot chosen, then the confirmation."""
    await settled(pilot)
    await cursor_to(pilot, path)
    await pilot.press("R")
    picker = pilot.app.screen
    assert isinstance(picker, SnapshotPickerScreen)
    await asyncio.wait_for(picker.listed.wait(), GUARD)
    await pilot.press("down", "enter")  # newest first: the second is the oldest
    await pilot.pause()
    confirm = pilot.app.screen
    assert isinstance(confirm, ConfirmScreen)
    return confirm


def static_text(screen: Any, selector: str) -> str:
    """What a Static shows, as plain text (Rich renderables too)."""
    content = screen.query_one(selector, Static).content
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


# --- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_tree_snapshot(shared: World, snap_compare: Any, size: tuple[int, int]) -> None:
    # The workspace's markdown first, AGENTS.md open and rendered.
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_timeline_snapshot(shared: World, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await open_timeline(pilot, "workspace/MEMORY.md")

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_search_snapshot(shared: World, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await search_for(pilot, "tea")

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_off_snapshot(memory_off: World, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.pause()
        await asyncio.wait_for(memory(pilot).status_seen.wait(), GUARD)
        await pilot.pause()

    assert snap_compare(MemoryApp(memory_off.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_restore_confirmation_snapshot(
    shared: World, snap_compare: Any, size: tuple[int, int],
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await ask_restore(pilot, "workspace/MEMORY.md")
        await pilot.pause()

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_whole_restore_confirmation_snapshot(
    shared: World, snap_compare: Any, size: tuple[int, int],
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)
        await pilot.press("W")
        picker = pilot.app.screen
        assert isinstance(picker, SnapshotPickerScreen)
        await asyncio.wait_for(picker.listed.wait(), GUARD)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


# --- the tree ---------------------------------------------------------------------------------
def labels(nodes: Any) -> list[str]:
    return [node.label.plain.split("  ")[0] for node in nodes]


async def test_the_tree_puts_workspace_markdown_first_and_builds_folders_when_opened(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        tree = screen.file_tree
        top = ["workspace/ (7)", "openclaw.json", "credentials/ (1)", "state/ (1)"]
        assert labels(tree.root.children) == top
        workspace = tree.root.children[0]
        assert labels(workspace.children) == [
            "AGENTS.md", "MEMORY.md", "SOUL.md", "USER.md", "memory/ (1)", "skills/ (1)", "avatar.png",
        ]
        # The first markdown of the workspace is open; the folders not opened have no nodes yet.
        assert screen.current is not None and screen.current.path == "workspace/AGENTS.md"
        assert screen.view.mode == "markdown"
        credentials = tree.root.children[2]
        assert not credentials.children
        credentials.expand()
        await pilot.pause()
        assert labels(credentials.children) == ["oauth.json"]


@pytest.fixture
def long_folder() -> Iterator[World]:
    days = {f"workspace/memory/2026-{n:04d}.md": f"day {n}\n".encode() for n in range(1200)}
    yield from _world(files={**FILES_NOW, **days})


async def test_a_long_folder_comes_a_page_at_a_time_and_a_file_far_down_can_be_reached(
    long_folder: World,
) -> None:
    async with MemoryApp(long_folder.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        tree = screen.file_tree
        days = next(n for n in tree.root.children[0].children if str(n.label).startswith("memory/"))
        days.expand()
        await pilot.pause()
        assert len(days.children) == PAGE + 1 and isinstance(days.children[-1].data, More)
        assert "701 more" in str(days.children[-1].label)  # 1,201 files with the day note
        tree.move_cursor(days.children[-1])
        await pilot.press("enter")
        await pilot.pause()
        assert len(days.children) == 2 * PAGE + 1
        await cursor_to(pilot, "workspace/memory/2026-1150.md")  # on the third page
        assert screen.current is not None and screen.current.path == "workspace/memory/2026-1150.md"
        assert screen.view.mode == "markdown" and screen.view.border_title == "workspace/memory/2026-1150.md"


async def test_now_follows_each_new_snapshot_keeping_open_folders_and_what_is_read(fresh: World) -> None:
    app = MemoryApp(fresh.socket)
    counting = CountingMemory(app.client)
    app.source = counting
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        await cursor_to(pilot, "credentials/oauth.json")  # opens credentials/
        await cursor_to(pilot, "workspace/MEMORY.md")
        reads = counting.reads.count("workspace/MEMORY.md")
        (fresh.state / "workspace" / "notes.md").write_text("# notes\n")
        screen.listed.clear()
        async with BackendClient(fresh.socket) as client:
            await client.memory.backup()  # as the keeper does when the directory changes
        await asyncio.wait_for(screen.listed.wait(), GUARD)
        await pilot.pause()
        assert "workspace/notes.md" in [f.path for f in screen.listing.files]  # type: ignore[union-attr]
        assert "credentials" in screen.file_tree.opened_folders()
        chosen = screen.file_tree.chosen
        assert isinstance(chosen, FileInfo) and chosen.path == "workspace/MEMORY.md"
        assert counting.reads.count("workspace/MEMORY.md") == reads  # unchanged: not read again


# --- a file by its kind -----------------------------------------------------------------------
class CountingMemory(MemoryClient):
    """The real memory client, recording which files it was asked to read."""

    def __init__(self, client: BackendClient) -> None:
        super().__init__(client)
        self.reads: list[str] = []

    async def read(self, path: str, snapshot: str | None = None) -> bytes:
        self.reads.append(path)
        return await super().read(path, snapshot)


async def test_the_first_frame_asks_once_for_the_files_and_once_for_the_first_file(shared: World) -> None:
    # Both asked for as the screen is made, so the frame that draws the tree draws the file too.
    app = MemoryApp(shared.socket)
    counting = CountingMemory(app.client)
    listings: list[str | None] = []
    files = counting.files

    async def counted_files(snapshot: str | None = None) -> Any:
        listings.append(snapshot)
        return await files(snapshot)

    counting.files = counted_files  # type: ignore[method-assign]
    app.source = counting
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        assert listings == [None] and counting.reads == ["workspace/AGENTS.md"]
        assert screen.view.mode == "markdown" and screen.view.border_title == "workspace/AGENTS.md"
        assert screen.query_one("#memory-body").display


async def test_each_kind_of_file_is_shown_its_way_and_a_database_is_never_fetched(shared: World) -> None:
    app = MemoryApp(shared.socket)
    counting = CountingMemory(app.client)
    app.source = counting
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await settled(pilot)
        view = screen.view
        await cursor_to(pilot, "openclaw.json")
        assert view.mode == "pretty"
        pretty = static_text(view, "#memory-pretty-body")
        assert '  "gateway": {\n    "port": 18789,' in pretty  # indented as JSON is read
        await pilot.press("r")
        assert view.mode == "text" and view.text_area.text == FILES_NOW["openclaw.json"].decode()
        await pilot.press("r")
        assert view.mode == "pretty"
        await cursor_to(pilot, "workspace/avatar.png")
        assert view.mode == "note"
        assert "PNG image, 1.0 KiB" in static_text(view, "#memory-note-text")
        await cursor_to(pilot, "state/openclaw.sqlite")
        assert view.mode == "database"
        database = view.query_one(DatabaseView)
        assert (database.path, database.snapshot) == ("state/openclaw.sqlite", None)  # tables read by name
        assert "state/openclaw.sqlite" not in counting.reads
        assert "openclaw.json" in counting.reads


async def test_what_the_agent_wrote_is_shown_inert(fresh: World) -> None:
    hostile = "# Tools\n\nred \x1b[31malert\x1b[0m and a bell \x07\n"
    (fresh.state / "workspace" / "TOOLS.md").write_text(hostile)
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        await cursor_to(pilot, "workspace/TOOLS.md")
        await pilot.press("r")
        text = memory(pilot).view.text_area.text
        assert "\x1b" not in text and "\x07" not in text
        assert "red \u241b[31malert\u241b[0m and a bell \u2407" in text


# --- search -----------------------------------------------------------------------------------
async def test_enter_on_a_match_opens_the_file_at_its_line_and_escape_goes_back(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        screen = await search_for(pilot, "sister")
        results = screen.query_one("#memory-results", OptionList)
        assert results.option_count == 1
        assert screen.query_one("#memory-left").border_title == "sister · 1 match"
        await pilot.press("enter")
        await pilot.pause()
        area = screen.view.text_area
        assert screen.current is not None and screen.current.path == "workspace/MEMORY.md"
        assert area.has_focus and area.selected_text.startswith("- Ana is the user's sister.")
        assert area.selection.start[0] == 3  # line 4
        await pilot.press("escape")  # from the file to the results
        assert results.has_focus
        await pilot.press("escape")  # from the results to the tree, on the file shown
        assert screen.file_tree.has_focus and not results.display
        chosen = screen.file_tree.chosen
        assert isinstance(chosen, FileInfo) and chosen.path == "workspace/MEMORY.md"


async def test_a_search_that_finds_nothing_says_how_much_it_looked_through(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        await pilot.press("slash", *"coffee", "enter")
        await asyncio.wait_for(screen.searched.wait(), GUARD)
        await pilot.pause()
        note = static_text(screen, "#memory-left-note")
        assert "No line holds 'coffee'" in note and "text files searched" in note


async def test_a_search_in_a_snapshot_finds_what_was_there_then(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        await pilot.press("s")
        picker = pilot.app.screen
        assert isinstance(picker, SnapshotPickerScreen)
        await asyncio.wait_for(picker.listed.wait(), GUARD)
        screen.listed.clear()
        await pilot.press("down", "down", "enter")  # below now and the newer one: the oldest
        await asyncio.wait_for(screen.listed.wait(), GUARD)
        assert screen.snapshot is not None and screen.snapshot.id == OLDEST
        assert screen.query_one("#memory-left").border_title == "snapshot 18:26 · 9 files"
        screen.searched.clear()
        await pilot.press("slash", *"likes tea", "enter")
        await asyncio.wait_for(screen.searched.wait(), GUARD)
        assert [m.path for m in screen._matches] == ["workspace/MEMORY.md"]


# --- timeline ---------------------------------------------------------------------------------
def diff_shown(timeline: TimelineScreen) -> str:
    return static_text(timeline, "#timeline-diff-body")


async def test_the_timeline_compares_a_version_with_now_or_with_a_marked_one(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        timeline = await open_timeline(pilot, "workspace/MEMORY.md")
        assert [v.snapshot for v in timeline.versions] == [NEWER, OLDEST]
        # The newest version, under the cursor: what it changed.
        assert timeline.shown == (OLDEST, NEWER)
        shown = diff_shown(timeline)
        assert "-- The user likes tea." in shown and "+- The user likes green tea." in shown
        assert "Lunch" not in shown
        timeline.diffed.clear()
        await pilot.press("up")  # now: what changed since the newest version
        await asyncio.wait_for(timeline.diffed.wait(), GUARD)
        assert timeline.shown == (NEWER, "now")
        assert "+- Lunch with Ana on Friday at 13:00." in diff_shown(timeline)
        timeline.diffed.clear()
        await pilot.press("space", "down", "down")  # now marked, the oldest under the cursor
        await asyncio.wait_for(timeline.diffed.wait(), GUARD)
        assert timeline.shown == (OLDEST, "now")
        shown = diff_shown(timeline)
        assert "-- The user likes tea." in shown and "+- Lunch with Ana on Friday at 13:00." in shown
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MemoryScreen)


# --- restore ----------------------------------------------------------------------------------
async def snapshots_of(world: World) -> list[Any]:
    async with BackendClient(world.socket) as client:
        return list((await client.memory.snapshots()).snapshots)


async def test_a_file_restored_from_its_timeline_keeps_what_was_there_in_a_safety_snapshot(
    fresh: World,
) -> None:
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        await open_timeline(pilot, "workspace/MEMORY.md")
        await pilot.press("down", "R")  # the oldest version
        confirm = pilot.app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "2026-05-28 18:26 (schedule" in confirm.question and "safety snapshot" in confirm.question
        screen = memory(pilot)
        screen.listed.clear()
        await pilot.press("y")
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
        await asyncio.wait_for(screen.listed.wait(), GUARD)
        await asyncio.wait_for(screen.file_shown.wait(), GUARD)
        assert (fresh.state / "workspace" / "MEMORY.md").read_text() == MEMORY_V1
        safety = next(s for s in await snapshots_of(fresh) if s.reason == "safety")
        async with BackendClient(fresh.socket) as client:
            kept = await client.memory.read("workspace/MEMORY.md", safety.id)
        assert kept.decode() == MEMORY_NOW
        # The file shown is read again: the view says what is on disk now.
        await pilot.press("r")
        assert screen.view.text_area.text == MEMORY_V1


async def test_no_keeps_the_file_as_it_is(fresh: World) -> None:
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        await ask_restore(pilot, "workspace/MEMORY.md")
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(pilot.app.screen, MemoryScreen)
    assert (fresh.state / "workspace" / "MEMORY.md").read_text() == MEMORY_NOW
    assert len(await snapshots_of(fresh)) == len(SNAPSHOTS)


async def test_a_folder_restored_from_a_snapshot_view_gets_its_files_back_and_keeps_new_ones(
    fresh: World,
) -> None:
    (fresh.state / "workspace" / "memory" / "2026-05-27.md").unlink()
    (fresh.state / "workspace" / "memory" / "2026-05-28.md").write_text("# today\n")
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        await pilot.press("s")
        picker = pilot.app.screen
        assert isinstance(picker, SnapshotPickerScreen)
        await asyncio.wait_for(picker.listed.wait(), GUARD)
        screen.listed.clear()
        await pilot.press("down", "enter")  # below "now": the newer snapshot
        await asyncio.wait_for(screen.listed.wait(), GUARD)
        await cursor_to(pilot, "workspace/memory")
        await pilot.press("R")
        confirm = pilot.app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "the folder workspace/memory/" in confirm.question
        assert "files added to it since stay as they are" in confirm.question
        screen.operation_done.clear()
        await pilot.press("y")
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
    days = sorted(p.name for p in (fresh.state / "workspace" / "memory").iterdir())
    assert days == ["2026-05-27.md", "2026-05-28.md"]


async def test_the_whole_sandbox_restored_is_stopped_and_started_and_the_rest_kept_aside(
    fresh: World,
) -> None:
    (fresh.state / "workspace" / "notes.md").write_text("written since\n")
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        await pilot.press("W")
        picker = pilot.app.screen
        assert isinstance(picker, SnapshotPickerScreen)
        await asyncio.wait_for(picker.listed.wait(), GUARD)
        await pilot.press("down", "enter")  # newest first: the oldest is second
        confirm = pilot.app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "stopped" in confirm.question and "started again" in confirm.question
        assert "files that are not in the chosen snapshot go" in confirm.question
        screen.listed.clear()
        notices: list[str] = []
        original = pilot.app.notify

        def record(message: str, **kwargs: Any) -> None:
            notices.append(message)
            original(message, **kwargs)

        pilot.app.notify = record  # type: ignore[method-assign]
        await pilot.press("y")
        await asyncio.wait_for(screen.operation_done.wait(), 30)
        await asyncio.wait_for(screen.listed.wait(), GUARD)
        assert any("stopped for it and started again" in n and "safety snapshot" in n for n in notices)
        assert "notes.md" not in [f.path.rsplit("/", 1)[-1] for f in screen.listing.files]  # type: ignore[union-attr]
    assert not (fresh.state / "workspace" / "notes.md").exists()
    assert (fresh.state / "workspace" / "MEMORY.md").read_text() == MEMORY_V1
    safety = next(s for s in await snapshots_of(fresh) if s.reason == "safety")
    async with BackendClient(fresh.socket) as client:
        assert await client.memory.read("workspace/notes.md", safety.id) == b"written since\n"


# --- back up and edit -------------------------------------------------------------------------
async def test_back_up_now_takes_a_snapshot_and_says_what_it_cost(fresh: World) -> None:
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        screen = await settled(pilot)
        notices: list[str] = []
        pilot.app.notify = lambda message, **kwargs: notices.append(message)  # type: ignore[method-assign]
        await pilot.press("b")
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
        assert notices and "taken: 10 files" in notices[0] and "read" in notices[0]
    newest = (await snapshots_of(fresh))[0]
    assert newest.reason == "manual" and newest.files == 10


def editor_script(root: Path, body: str) -> str:
    script = root / "editor.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


async def edit_memory_file(pilot: Pilot[None], path: str = "workspace/MEMORY.md") -> MemoryScreen:
    screen = await settled(pilot)
    screen.run_editor = lambda command: subprocess.call(command)  # headless: no terminal to hand over
    await cursor_to(pilot, path)
    screen.operation_done.clear()
    await pilot.press("e")
    await pilot.pause()
    return screen


async def test_edit_writes_the_edited_file_back_with_a_snapshot_of_it_before(
    fresh: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", editor_script(fresh.root, "sed -i 's/no sugar/one sugar/' \"$1\""))
    notices: list[str] = []
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        pilot.app.notify = lambda message, **kwargs: notices.append(message)  # type: ignore[method-assign]
        screen = await edit_memory_file(pilot)
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
        await asyncio.wait_for(screen.file_shown.wait(), GUARD)
        assert "one sugar" in screen.view.query_one("#memory-markdown-body", Markdown).source  # read again
    edited = MEMORY_NOW.replace("no sugar", "one sugar")
    assert (fresh.state / "workspace" / "MEMORY.md").read_text() == edited
    before = next(s for s in await snapshots_of(fresh) if s.reason == "before-edit")
    assert f"as it was before is in snapshot {before.id}" in notices[-1]
    async with BackendClient(fresh.socket) as client:
        assert (await client.memory.read("workspace/MEMORY.md", before.id)).decode() == MEMORY_NOW


async def test_an_edit_of_a_file_the_agent_changed_meanwhile_is_kept_aside_not_written(
    fresh: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = fresh.state / "workspace" / "MEMORY.md"
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", editor_script(
        fresh.root, f"sed -i 's/no sugar/one sugar/' \"$1\"\necho '- the agent wrote this' >> '{target}'"))
    notices: list[str] = []
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        pilot.app.notify = lambda message, **kwargs: notices.append(message)  # type: ignore[method-assign]
        screen = await edit_memory_file(pilot)
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
    assert target.read_text() == MEMORY_NOW + "- the agent wrote this\n"
    assert "changed while it was being edited" in notices[-1]
    kept = Path(notices[-1].split("it is kept in ")[1].rstrip("."))
    assert "one sugar" in (kept / "MEMORY.md").read_text()
    assert stat.S_IMODE(os.lstat(kept).st_mode) == 0o700  # it may hold what the agent keeps secret
    shutil.rmtree(kept)
    assert len(await snapshots_of(fresh)) == len(SNAPSHOTS)


async def test_edit_says_what_it_needs_and_changes_nothing_without_it(
    fresh: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", editor_script(fresh.root, "exit 0"))
    notices: list[str] = []
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        pilot.app.notify = lambda message, **kwargs: notices.append(message)  # type: ignore[method-assign]
        await edit_memory_file(pilot)
        assert notices[-1] == "workspace/MEMORY.md unchanged; nothing was written."
        await edit_memory_file(pilot, "openclaw.json")
        assert "e edits a file of the workspace" in notices[-1]
        monkeypatch.setenv("EDITOR", editor_script(fresh.root, "exit 3"))
        await edit_memory_file(pilot)
        assert notices[-1] == "the editor exited with code 3; nothing was written."
        monkeypatch.delenv("EDITOR")
        await edit_memory_file(pilot)
        assert "Set $EDITOR" in notices[-1]
    assert len(await snapshots_of(fresh)) == len(SNAPSHOTS)  # no snapshot was taken for nothing
    assert (fresh.state / "workspace" / "MEMORY.md").read_text() == MEMORY_NOW


# --- memory off, and the backend away ---------------------------------------------------------
async def test_memory_off_says_how_to_turn_it_on_and_takes_the_keys_away(memory_off: World) -> None:
    async with MemoryApp(memory_off.socket).run_test(size=(80, 24)) as pilot:
        screen = memory(pilot)
        await asyncio.wait_for(screen.status_seen.wait(), GUARD)
        await pilot.pause()
        shown = static_text(screen, "#memory-off-text")
        assert "[memory] enabled = true" in shown and "MOLTCONSOLE_MEMORY__ENABLED=true" in shown
        assert not screen.query_one("#memory-body").display
        keys = [b.binding.id for b in screen.active_bindings.values() if b.enabled and b.node is screen]
        assert not any(key and key.startswith("memory.") and key != "memory.back" for key in keys)
        await pilot.press("slash")
        assert not screen.query_one("#memory-search-input").display


async def test_the_backend_away_is_said_and_its_return_brings_the_files(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    world = World(root)
    try:
        async with MemoryApp(world.socket).run_test(size=(80, 24)) as pilot:
            screen = memory(pilot)
            await asyncio.wait_for(screen.status_lost.wait(), GUARD)
            await asyncio.wait_for(screen.listed.wait(), GUARD)
            await pilot.pause()
            assert "unreachable since" in static_text(screen, "#memory-sync-line")
            assert "no moltconsole backend answers" in static_text(screen, "#memory-left-note")
            with local_time_utc(), served(world):
                screen.listed.clear()
                await asyncio.wait_for(screen.status_seen.wait(), GUARD)
                await asyncio.wait_for(screen.listed.wait(), GUARD)
                assert screen.listing is not None and len(screen.listing.files) == 10
                assert "last snapshot 30m00s ago" in static_text(screen, "#memory-sync-line")
            await asyncio.wait_for(screen.status_lost.wait(), GUARD)  # and gone again
            await pilot.pause()
            assert "unreachable since" in static_text(screen, "#memory-sync-line")
            assert screen.file_tree.display  # what was listed stays to be read
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- in the console, against a real backend --------------------------------------------------
@pytest.fixture(scope="module")
def real_backend() -> Iterator[Path]:
    """A real ``moltconsole serve`` (memory on, as by default) whose sandbox has a workspace
    but no container."""
    from tests.conftest import free_port
    from tests.console.test_dashboard import _backend_environ, _serve_fixed

    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    workspace = root / "data" / "sandboxes" / "memscreen" / "state" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "MEMORY.md").write_text(MEMORY_NOW)
    yield from _serve_fixed(
        root,
        f'[sandbox]\nname = "memscreen"\ngateway_port = {free_port()}\n'
        f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n'
        f'[gateway]\nport = {free_port()}\nbind_address = "127.0.0.1"\n',
        _backend_environ(ANTHROPIC_API_KEY="sk-ant-memory-screen-not-real-0000"),
    )


async def test_4_shows_memory_in_the_console_and_the_dashboard_line_follows_a_backup(
    real_backend: Path,
) -> None:
    from moltconsole.screens.dashboard import DashboardScreen, SandboxPanel
    from tests.console.test_dashboard import make_app, wait_for_status

    app = make_app(real_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        await pilot.press("4")
        screen = await settled(pilot)
        assert screen.sandbox == "memscreen"
        assert [f.path for f in screen.listing.files] == ["workspace/MEMORY.md"]  # type: ignore[union-attr]
        await pilot.press("b")
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
        await pilot.press("1")
        dashboard = pilot.app.screen
        assert isinstance(dashboard, DashboardScreen)
        dashboard.memory_seen.clear()
        dashboard.fetch_memory()
        await asyncio.wait_for(dashboard.memory_seen.wait(), GUARD)
        await pilot.pause()
        facts = static_text(dashboard, "#sandbox-panel")
        assert "snapshots" in facts and "1 file · 113 B" in facts
        assert isinstance(dashboard.query_one(SandboxPanel), SandboxPanel)


async def test_another_sandbox_gets_a_memory_screen_of_its_own(real_backend: Path) -> None:
    from tests.conftest import free_port
    from tests.console.test_dashboard import make_app, wait_for_status

    app = make_app(real_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        await app.client.create_sandbox("second", gateway_port=free_port(), start=False)
        try:
            await pilot.press("4")
            first = await settled(pilot)
            app.select_sandbox("second")  # as the picker does
            await pilot.press("4")
            await pilot.pause()
            other = memory(pilot)
            assert other is not first and other.sandbox == "second"
            await asyncio.wait_for(other.listed.wait(), GUARD)
            await pilot.pause()
            assert "the state directory is empty" in static_text(other, "#memory-left-note")
        finally:
            await app.client.remove_sandbox("second")
