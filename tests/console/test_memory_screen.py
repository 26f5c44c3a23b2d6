"""The Memory screen against the backend's real memory API over a real keeper and repository.

The API runs on a unix socket from a thread (``memory_world``); the screen talks to it through
the real client. The state directory is shaped like OpenClaw's (workspace markdown, config,
credentials, a SQLite database, a picture) and the repository holds two snapshots taken at
fixed times, so the snapshots of the screen are the same on every run: the console's clock
says T0 and local time is UTC.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Static

from moltconsole.client import BackendClient
from moltconsole.memory_client import MemoryClient
from moltconsole.resources import styles_dir
from moltconsole.screens.confirm import ConfirmScreen
from moltconsole.screens.memory import MemoryScreen
from moltconsole.screens.memory_snapshots import SnapshotPickerScreen
from moltconsole.screens.memory_timeline import TimelineScreen
from moltconsole.widgets.memory_tree import Folder
from tests.console.memory_world import SNAPSHOTS, T0, World, served
from tests.unit.test_cost_routes import local_time_utc

GUARD = 10.0  # a hang fails the test after this long
OLDEST, NEWER = SNAPSHOTS[0][0], SNAPSHOTS[1][0]


class MemoryApp(App[None]):
    """The smallest app that hosts the Memory screen, as the console's app does: the base and
    Memory stylesheets, a connected backend, the sandbox's name and a frozen clock."""

    CSS_PATH = [str(styles_dir() / "app.tcss"), str(styles_dir() / "memory.tcss")]

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
    return str(screen.query_one(selector, Static).render())


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
