"""A Moltworker bucket in the Memory screen: opened with m (its location as the CLI takes it,
and an endpoint), browsed read-only with the same tree and file view and said to be the bucket,
not the sandbox; imported with i after a confirmation that says what is kept, its progress in
the sync status; and the errors a user can meet (a location mistyped, a bucket that cannot be
reached, wrong credentials), each in words.

The backend is the real memory API over a real keeper (memory_world); the bucket an S3 endpoint
on loopback that speaks the wire protocol (tests/support/moltworker_bucket.py).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, ProgressBar

from moltconsole.client import BackendClient
from moltconsole.screens.confirm import ConfirmScreen
from moltconsole.screens.memory import MemoryScreen
from moltconsole.screens.memory_bucket import BucketOpenScreen
from tests.console.memory_world import SNAPSHOTS, World, served
from tests.console.test_memory_screen import GUARD, MemoryApp, cursor_to, memory, settled, static_text
from tests.support.moltworker_bucket import MoltworkerBucket, serving
from tests.unit.test_cost_routes import local_time_utc

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
TREE = {
    "openclaw/openclaw.json": (
        b'{"agents": {"defaults": {"workspace": "/root/clawd"}}, "gateway": {"port": 18789}}\n'
    ),
    "openclaw/credentials/telegram.json": b'{"token": "not a real one"}\n',
    "openclaw/state/openclaw.sqlite": b"SQLite format 3\x00" + bytes(100),
    "workspace/AGENTS.md": b"# AGENTS.md - from Cloudflare\n\nThis workspace came from **Moltworker**.\n",
    "workspace/MEMORY.md": b"# Memory\n\n- The user moved from Cloudflare.\n",
    "workspace/memory/2026-11-30.md": b"# 2026-11-30\n\n- Asked about R2.\n",
    "workspace/avatar.png": PNG,
    "skills/weather/SKILL.md": b"# Weather\n\nSays the weather.\n",
    "openclaw/workspace.partial": b"cut short\n",
}


def _world(root: Path, bucket: MoltworkerBucket, env: dict[str, str] | None = None) -> Iterator[World]:
    try:
        with local_time_utc(), served(World(root, env=env if env is not None else bucket.env)) as world:
            yield world
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def bucket() -> Iterator[MoltworkerBucket]:
    with serving(MoltworkerBucket(objects=dict(TREE))) as served_bucket:
        yield served_bucket


@pytest.fixture(scope="module")
def shared(bucket: MoltworkerBucket) -> Iterator[World]:
    """A world the tests that only read share, whose backend holds the bucket's keys."""
    yield from _world(Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp")), bucket)


@pytest.fixture
def fresh(bucket: MoltworkerBucket) -> Iterator[World]:
    """A world of this test's own (it imports)."""
    yield from _world(Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp")), bucket)


@pytest.fixture
def wrong_keys(bucket: MoltworkerBucket) -> Iterator[World]:
    yield from _world(Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp")), bucket,
                      {"R2_ACCESS_KEY_ID": "not-the-key", "R2_SECRET_ACCESS_KEY": "not-the-secret"})


async def ask_for(pilot: Pilot[None], location: str, endpoint: str = "") -> BucketOpenScreen:
    """m, then the location and the endpoint typed (not submitted)."""
    await settled(pilot)
    await pilot.press("m")
    box = pilot.app.screen
    assert isinstance(box, BucketOpenScreen)
    await pilot.pause()
    box.query_one("#bucket-location", Input).value = location
    box.query_one("#bucket-endpoint", Input).value = endpoint
    return box


async def open_bucket(pilot: Pilot[None], location: str, endpoint: str) -> MemoryScreen:
    """The bucket opened and listed, its first file shown (or its listing's problem said)."""
    screen = memory(pilot)
    await ask_for(pilot, location, endpoint)
    screen.listed.clear()
    screen.file_shown.clear()
    await pilot.press("enter")
    await asyncio.wait_for(screen.listed.wait(), GUARD)
    if screen.listing is not None:
        await asyncio.wait_for(screen.file_shown.wait(), GUARD)
    await pilot.pause()
    return screen


def _nowhere() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_bucket_snapshot(
    shared: World, bucket: MoltworkerBucket, snap_compare: Any, size: tuple[int, int],
) -> None:
    # The bucket's files where they would go, its AGENTS.md rendered, said to be the bucket.
    async def run_before(pilot: Pilot[None]) -> None:
        await open_bucket(pilot, bucket.location, bucket.endpoint_url)

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_bucket_open_snapshot(shared: World, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        box = await ask_for(pilot, "r2://moltbot-data")
        box.query_one("#bucket-endpoint", Input).focus()
        await pilot.pause()

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_memory_bucket_import_confirmation_snapshot(
    shared: World, bucket: MoltworkerBucket, snap_compare: Any, size: tuple[int, int],
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await open_bucket(pilot, bucket.location, bucket.endpoint_url)
        await pilot.press("i")
        await pilot.pause()

    assert snap_compare(MemoryApp(shared.socket), terminal_size=size, run_before=run_before)


# --- browsing -------------------------------------------------------------------------------------
async def test_a_bucket_is_browsed_read_only_as_the_files_it_would_become(
    shared: World, bucket: MoltworkerBucket,
) -> None:
    async with MemoryApp(shared.socket).run_test(size=(160, 48)) as pilot:
        screen = await open_bucket(pilot, bucket.location, bucket.endpoint_url)
        left = screen.query_one("#memory-left")
        assert left.border_title == "bucket s3://moltbot-data · 8 files"
        note = " ".join(static_text(screen, "#memory-left-note").split())
        assert "read-only: a Moltworker bucket (openclaw/, 1 key left out), not the sandbox" in note
        assert screen.has_class("-bucket")
        top = [str(node.label).split("  ")[0] for node in screen.file_tree.root.children]
        assert top == ["workspace/ (5)", "openclaw.json", "credentials/ (1)", "state/ (1)"]
        assert screen.current is not None and screen.current.path == "workspace/AGENTS.md"
        assert screen.view.mode == "markdown"
        assert str(screen.view.border_subtitle).endswith("bucket s3://moltbot-data · r raw")

        await cursor_to(pilot, "openclaw.json")  # as the bucket holds it: the import changes it
        assert screen.view.mode == "pretty"
        assert "/root/clawd" in static_text(screen.view, "#memory-pretty-body")
        await cursor_to(pilot, "workspace/skills/weather/SKILL.md")  # skills/ goes under the workspace
        assert screen.view.mode == "markdown"
        assert screen.view.border_title == "workspace/skills/weather/SKILL.md"
        await cursor_to(pilot, "state/openclaw.sqlite")
        assert "import the bucket (i)" in static_text(screen.view, "#memory-note-text")
        await cursor_to(pilot, "workspace/avatar.png")
        shown = static_text(screen.view, "#memory-note-text")
        assert "Not text, so not shown. Import the bucket (i) to keep it as a snapshot." in shown

        # What acts on the sandbox's files is not offered on a bucket; the import is.
        offered = {binding.action for _, binding, enabled, _ in screen.active_bindings.values() if enabled}
        assert {"import_bucket", "open_bucket"} <= offered
        assert not offered & {"search", "timeline", "restore", "restore_all", "edit"}
        await pilot.press("slash", "t", "R")
        assert pilot.app.screen is screen and not screen.query_one("#memory-search-input").display

        # Escape goes back to the sandbox's files as they are now.
        screen.file_tree.focus()
        screen.listed.clear()
        await pilot.press("escape")
        await asyncio.wait_for(screen.listed.wait(), GUARD)
        await pilot.pause()
        assert screen.bucket is None and not screen.has_class("-bucket")
        assert str(screen.query_one("#memory-left").border_title).startswith("now")
        assert "import_bucket" not in {
            b.action for _, b, enabled, _ in screen.active_bindings.values() if enabled
        }
    assert not [r for r in bucket.requests if not r.startswith("GET ")]  # the bucket was only read
    assert not (shared.state / "workspace" / "skills" / "weather").exists()  # nor the sandbox touched


async def test_a_mistyped_location_is_said_in_the_box(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        box = await ask_for(pilot, "moltbot-data")
        await pilot.press("enter")
        assert pilot.app.screen is box
        assert "starts with r2://" in static_text(box, "#bucket-problem")
        box.query_one("#bucket-location", Input).value = "s3://moltbot-data"
        box.query_one("#bucket-endpoint", Input).value = "127.0.0.1:8333"
        await pilot.press("enter")
        assert "http://HOST:PORT" in static_text(box, "#bucket-problem")
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MemoryScreen) and memory(pilot).bucket is None


async def test_a_bucket_that_cannot_be_reached_is_said_in_place_of_its_files(shared: World) -> None:
    async with MemoryApp(shared.socket).run_test(size=(80, 24)) as pilot:
        screen = await open_bucket(pilot, "s3://moltbot-data", _nowhere())
        assert screen.listing is None
        said = " ".join(static_text(screen, "#memory-left-note").split())
        assert "cannot be read now" in said and "check that the server is up" in said
        assert str(screen.query_one("#memory-left").border_title).startswith("bucket s3://moltbot-data")


async def test_wrong_credentials_are_said_with_the_variable_to_check(
    wrong_keys: World, bucket: MoltworkerBucket,
) -> None:
    async with MemoryApp(wrong_keys.socket).run_test(size=(160, 48)) as pilot:
        screen = await open_bucket(pilot, bucket.location, bucket.endpoint_url)
        said = " ".join(static_text(screen, "#memory-left-note").split())
        assert "does not know the access key id" in said and "R2_ACCESS_KEY_ID" in said
        assert "not-the-secret" not in said


# --- importing ------------------------------------------------------------------------------------
async def test_an_import_is_confirmed_shows_its_progress_and_becomes_the_newest_snapshot(
    fresh: World, bucket: MoltworkerBucket,
) -> None:
    before = {p: p.read_bytes() for p in fresh.state.rglob("*") if p.is_file()}
    async with MemoryApp(fresh.socket).run_test(size=(160, 48)) as pilot:
        screen = await open_bucket(pilot, bucket.location, bucket.endpoint_url)
        await pilot.press("i")
        confirm = pilot.app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "It becomes the sandbox's newest snapshot" in confirm.question
        assert "the sandbox's current state stays in its own snapshots" in confirm.question
        assert "(8 files," in confirm.question
        bucket.gate = threading.Event()  # the import's reads wait: it is seen running
        try:
            screen.operation_done.clear()
            await pilot.press("y")
            while not (screen.status is not None and screen.status.operation is not None
                       and screen.status.operation.kind == "import"):
                screen.status_seen.clear()
                await asyncio.wait_for(screen.status_seen.wait(), GUARD)
            await pilot.pause()
            assert screen.query_one(ProgressBar).display
            assert "import" in static_text(screen, "#memory-sync-line")
        finally:
            bucket.gate.set()
            bucket.gate = None
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
        await pilot.pause()
        told = [n.message for n in pilot.app._notifications]
        assert any("imported as snapshot" in m and "1 key left out" in m and "memory restore" in m
                   for m in told)
    async with BackendClient(fresh.socket) as client:
        snapshots = (await client.memory.snapshots()).snapshots
    assert len(snapshots) == len(SNAPSHOTS) + 1 and snapshots[0].reason == "import"
    # The state directory was in use: nothing in it changed.
    assert {p: p.read_bytes() for p in fresh.state.rglob("*") if p.is_file()} == before


async def test_an_import_that_fails_says_why(fresh: World, bucket: MoltworkerBucket) -> None:
    async with MemoryApp(fresh.socket).run_test(size=(80, 24)) as pilot:
        screen = await open_bucket(pilot, bucket.location, bucket.endpoint_url)
        place = screen.bucket
        assert place is not None
        screen.bucket = type(place)(place.location, _nowhere())  # the bucket went away since
        await pilot.press("i")
        screen.operation_done.clear()
        await pilot.press("y")
        await asyncio.wait_for(screen.operation_done.wait(), GUARD)
        told = [n.message for n in pilot.app._notifications]
        assert any("importing s3://moltbot-data failed" in m and "nothing was imported" in m for m in told)
    async with BackendClient(fresh.socket) as client:
        assert len((await client.memory.snapshots()).snapshots) == len(SNAPSHOTS)

