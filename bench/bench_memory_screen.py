"""The Memory screen's first frame with a 10,000-file state directory (issue 11: under 200 ms).

Each run opens the screen in a headless app at 160x48 and times, from the moment the screen is
pushed, until the frame that shows the tree of the files and the first workspace file has been
drawn (the screen's ``listed`` event, set after that refresh). Each way, in the same run:

``screen``     the files come from a stand-in memory client that answers at once with the
               10,000-file listing (the screen's own cost: index, tree, first file, frame);
``end to end`` the real backend API and keeper, in a process of their own as in use, over a
               real state directory of 10,000 files on a unix socket: the listing the keeper
               keeps up to date from its watcher, its answer encoded and compressed once (adds
               the request, the JSON and its validation, and the first file's read);
``walked``     the old yardstick, end to end as above but with the listing forgotten before
               each run, so every request walks the directory and builds and encodes its
               answer again (what the API did before the listing was kept: 672 ms then);
``eager``      the yardstick: Textual's Tree given all 10,000 nodes at once, as a screen that
               did not build folders when opened would (its first frame after adding them);
``empty``      the screen with an empty listing: the floor of mounting and drawing it;
``bare``       a screen of a status bar, one line of text and the footer: the floor of any
               screen on this machine now (a loaded machine shows here first);
``logs``       the yardstick among the console's screens: the Logs screen's first frame with
               its tests' lines (a screen of about the same weight, already accepted);
``GET files``  the listing alone through the client (request, JSON, validation), as kept, and
``GET walked`` with the listing forgotten before it (a walk, as every request did before).

The shape is a large workspace: the workspace's own markdown, 2,000 daily notes, 100 topics of
50 notes, 200 skills of 5 files, 1,989 session transcripts and the two SQLite databases.

A full collection of Python's garbage collector walks the whole heap (100-200 ms in this
process, more as it grows) and the 10,000 files' objects often set one off in the first frame:
``--freeze-gc`` freezes the heap once the app is up (``gc.freeze()``), as a console that froze its
start-up heap would run, to show what that collection costs.

Usage: .venv/bin/python bench/bench_memory_screen.py [--runs N] [--verbose] [--freeze-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Static, Tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moltconsole.client import BackendClient
from moltconsole.resources import styles_dir
from moltconsole.screens.memory import MemoryScreen
from moltconsole.widgets.fitting_footer import FittingFooter
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.wire.memory import (
    BackupResult,
    FileDiff,
    FileHistory,
    FileInfo,
    FileList,
    MemoryStatus,
    RestoreResult,
    SearchResult,
    SnapshotList,
)
from tests.console.memory_world import World, served

SIZE = (160, 48)
FREEZE_GC = False  # --freeze-gc


def large_workspace() -> dict[str, bytes]:
    """10,000 files shaped like a large OpenClaw state directory."""
    files: dict[str, bytes] = {}
    for name in ("AGENTS", "SOUL", "USER", "IDENTITY", "MEMORY", "DREAMS", "TOOLS", "HEARTBEAT"):
        files[f"workspace/{name}.md"] = f"# {name}\n\nNotes of the agent.\n".encode()
    for day in range(2000):
        files[f"workspace/memory/day-{day:04d}.md"] = f"# day {day}\n\n- something remembered\n".encode()
    for topic in range(100):
        for note in range(50):
            note_path = f"workspace/notes/topic-{topic:03d}/note-{note:02d}.md"
            files[note_path] = f"topic {topic} note {note}\n".encode()
    for skill in range(200):
        files[f"workspace/skills/skill-{skill:03d}/SKILL.md"] = f"# skill {skill}\n".encode()
        for extra in range(4):
            files[f"workspace/skills/skill-{skill:03d}/part-{extra}.txt"] = b"step\n"
    for session in range(1989):
        files[f"agents/main/sessions/session-{session:04d}.jsonl"] = b'{"type": "message"}\n'
    files["openclaw.json"] = b'{"gateway": {"port": 18789}}\n'
    files["credentials/oauth.json"] = b"{}\n"
    assert len(files) == 9_999, len(files)  # and the database the world adds: 10,000
    return files


class InstantMemory:
    """A memory client that answers at once from a listing in memory (the screen's own cost)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.contents = files
        self.listing = FileList(files=[FileInfo(path=p, size=len(c)) for p, c in sorted(files.items())])

    async def status(self) -> MemoryStatus:
        return MemoryStatus(enabled=True, watching=True)

    async def snapshots(self) -> SnapshotList:
        return SnapshotList()

    async def files(self, snapshot: str | None = None) -> FileList:
        return self.listing

    async def read(self, path: str, snapshot: str | None = None) -> bytes:
        return self.contents[path]

    async def write(self, path: str, content: bytes) -> BackupResult:
        raise NotImplementedError

    async def log(self, path: str) -> FileHistory:
        raise NotImplementedError

    async def diff(self, path: str, old: str, new: str = "now") -> FileDiff:
        raise NotImplementedError

    async def search(self, query: str, snapshot: str | None = None, limit: int = 200) -> SearchResult:
        raise NotImplementedError

    async def backup(self) -> BackupResult:
        raise NotImplementedError

    async def restore(self, snapshot: str, path: str | None = None) -> RestoreResult:
        raise NotImplementedError


class Host(App[None]):
    """The Memory screen alone, with the console's stylesheets, and when it was pushed."""

    CSS_PATH = [str(styles_dir() / "app.tcss"), str(styles_dir() / "memory.tcss")]

    def __init__(self, source: object) -> None:
        super().__init__()
        self.source = source
        self.pushed = 0.0

    def show_memory(self) -> MemoryScreen:
        """Push the screen, as the console does when 4 is pressed."""
        screen = MemoryScreen(self.source, clock=time.time, sandbox="bench")  # type: ignore[arg-type]
        self.pushed = time.perf_counter()
        self.push_screen(screen)
        return screen


async def first_frame(source: object) -> float:
    """Milliseconds from the screen pushed to its first frame with the files."""
    app = Host(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # the app is up, as the console is when 4 is pressed
        if FREEZE_GC:
            gc.freeze()
        screen = app.show_memory()
        await asyncio.wait_for(screen.listed.wait(), 60)
        shown = time.perf_counter()
        assert screen.listing is not None, screen.list_problem
        await pilot.pause()
    return (shown - app.pushed) * 1000


class Bare(Screen[None]):
    """The least a screen of the console has."""

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static("nothing here")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self.call_after_refresh(self.app.shown.set)  # type: ignore[attr-defined]


class BareHost(App[None]):
    CSS_PATH = [str(styles_dir() / "app.tcss")]

    def __init__(self) -> None:
        super().__init__()
        self.shown = asyncio.Event()


async def bare_frame() -> float:
    app = BareHost()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        app.push_screen(Bare())
        await asyncio.wait_for(app.shown.wait(), 60)
        return (time.perf_counter() - started) * 1000


class LogsHost(App[None]):
    CSS_PATH = [str(styles_dir() / "app.tcss"), str(styles_dir() / "logs.tcss")]


async def logs_frame() -> float:
    """The Logs screen, pushed the same way, until its first frame with its lines."""
    from moltconsole.screens.logs import LogsScreen
    from tests.console.test_logs_screen import FIXED, FakeLogs

    app = LogsHost()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = LogsScreen(FakeLogs(FIXED))
        started = time.perf_counter()
        app.push_screen(screen)
        await asyncio.wait_for(screen.caught_up.wait(), 60)
        drawn = asyncio.Event()
        screen.call_after_refresh(drawn.set)
        await asyncio.wait_for(drawn.wait(), 60)
        return (time.perf_counter() - started) * 1000


class EagerTree(App[None]):
    def compose(self) -> ComposeResult:
        yield Tree("files")


async def eager_frame(paths: list[str]) -> float:
    """The yardstick: every file a node of one Tree, then its first frame."""
    app = EagerTree()
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one(Tree)
        started = time.perf_counter()
        folders: dict[str, object] = {"": tree.root}
        for path in paths:
            parent = ""
            for part in path.split("/")[:-1]:
                here = f"{parent}/{part}" if parent else part
                if here not in folders:
                    folders[here] = folders[parent].add(Text(part), expand=True)  # type: ignore[attr-defined]
                parent = here
            folders[parent].add_leaf(Text(path.rsplit("/", 1)[-1]))  # type: ignore[attr-defined]
        tree.root.expand()
        await pilot.pause()
        return (time.perf_counter() - started) * 1000


def _serve(root: Path, files: dict[str, bytes], commands: Connection) -> None:
    """The backend's side, in a process of its own as in use: serve the world, and answer the
    bench's commands (forget the kept listing; how many walks so far) until told to stop."""
    with served(World(root, files=files)) as world:
        keeper = world.keeper
        assert keeper is not None
        commands.send(str(world.socket))
        while True:
            command = commands.recv()
            if command == "forget":
                keeper.listing.forget()
                commands.send(0)
            elif command == "walks":
                commands.send(keeper.listing.walks)
            else:
                return


@contextlib.contextmanager
def backend_process(root: Path, files: dict[str, bytes]) -> Iterator[tuple[Path, Callable[[str], int]]]:
    """The real API over a 10,000-file world, served by another process (the console and the
    backend do not share an interpreter, so they do not share its lock either)."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(root, files, theirs))
    process.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the backend process did not start within 60 s")
        socket = Path(ours.recv())

        def ask(command: str) -> int:
            ours.send(command)
            answer: int = ours.recv()
            return answer

        yield socket, ask
    finally:
        ours.send("stop")
        process.join(30)
        if process.is_alive():
            process.kill()


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{name:<12} median {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms   ({len(values)} runs)"


async def main(runs: int, verbose: bool = False) -> None:
    files = large_workspace()
    results: dict[str, list[float]] = {
        "screen": [], "end to end": [], "walked": [], "eager": [], "empty": [], "bare": [], "logs": [],
        "GET files": [], "GET walked": [],
    }
    instant = InstantMemory({**files, "state/openclaw.sqlite": b"SQLite format 3\x00"})
    empty = InstantMemory({})
    for _ in range(runs):
        results["screen"].append(await first_frame(instant))
        results["empty"].append(await first_frame(empty))
        results["eager"].append(await eager_frame(sorted(instant.contents)))
        results["bare"].append(await bare_frame())
        results["logs"].append(await logs_frame())
    root = Path(tempfile.mkdtemp(prefix="mc-bench-", dir="/tmp"))
    try:
        with backend_process(root, files) as (socket, ask):
            async with BackendClient(socket) as client:
                assert len((await client.memory.files()).files) == 10_000
                for _ in range(runs):
                    results["end to end"].append(await first_frame(client.memory))
                    ask("forget")  # the next request walks, as every one did before
                    results["walked"].append(await first_frame(client.memory))
                walks_before = ask("walks")
                for _ in range(runs):
                    await first_frame(client.memory)
                kept = ask("walks") == walks_before
                for _ in range(runs):  # the listing alone, through the client, kept and walked
                    started = time.perf_counter()
                    await client.memory.files()
                    results["GET files"].append((time.perf_counter() - started) * 1000)
                    ask("forget")
                    started = time.perf_counter()
                    await client.memory.files()
                    results["GET walked"].append((time.perf_counter() - started) * 1000)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Memory screen, first frame with a 10,000-file state directory at {SIZE[0]}x{SIZE[1]} "
          f"(target: under 200 ms){'; the heap frozen once the app is up' if FREEZE_GC else ''}")
    for name in results:
        print(summary(name, results[name]))
    if verbose:
        for name, values in results.items():
            print(f"{name:<12}", " ".join(f"{v:.0f}" for v in values))
    print(f"end to end without a walk of the directory: {'yes' if kept else 'NO, it walked'}")
    old, new = statistics.median(results["walked"]), statistics.median(results["end to end"])
    print(f"old yardstick (a walk at each request): {old:.0f} ms; now {new:.0f} ms end to end, "
          f"{old / new:.1f}x faster; the screen alone {statistics.median(results['screen']):.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--verbose", action="store_true", help="every run's time, in order")
    parser.add_argument("--freeze-gc", action="store_true", help="gc.freeze() once the app is up")
    arguments = parser.parse_args()
    FREEZE_GC = arguments.freeze_gc
    asyncio.run(main(arguments.runs, arguments.verbose))
