"""A state directory with real SQLite databases, served by the backend's real API, for the tests
of the database and conversation views.

The state holds the real OpenClaw fixture (``tests/unit/fixtures/openclaw_state``: its global
and agent databases, a deleted session's archive), a database of the test's own with values a
view must show safely (markup, an escape sequence, long text, a blob, a secret column, a
virtual table of a module the backend lacks, 250 rows for three pages), and an older
OpenClaw's JSONL transcript of thousands of turns. The API (the real app, a real keeper) runs
on a unix socket from a thread with its own event loop, since ``snap_compare`` runs the
console in a loop of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moltconsole_backend.api.service import create_app
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import MemorySettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings
from tests.unit.test_client import serve_asgi

FIXTURE = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "openclaw_state"
AGENT_DB = "agents/main/agent/openclaw-agent.sqlite"
NOTES_DB = "workspace/notes.sqlite"
NOTES_ROWS = 250
LONG_SESSION = "5e55105e-0000-4000-8000-000000000001"
LONG_TURNS = 3000  # entries in the long transcript: more than the backend sends (2,000)
MARKUP = "[bold red]not markup[/] [link=file:///etc/passwd]x[/link]"
ESCAPE = "\x1b[31mred\x1b[0m\nsecond line"


def _notes_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, score REAL, "
            "data BLOB, api_token TEXT)"
        )
        rows: list[tuple[Any, ...]] = [
            (1, MARKUP, ESCAPE, 0.5, bytes(range(40)), "sk-not-a-real-key-0123456789"),
            (2, "long", "teal " * 200, None, None, None),
        ]
        rows += [(n, f"note {n}", f"body of note {n}", n / 4, None, None) for n in range(3, NOTES_ROWS + 1)]
        db.executemany("INSERT INTO notes VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("CREATE TABLE empty (x)")
        db.execute("CREATE VIEW recent AS SELECT id, title FROM notes ORDER BY id DESC LIMIT 5")
        db.execute("PRAGMA writable_schema=ON")
        db.execute(
            "INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES ('table', "
            "'embeddings', 'embeddings', 0, 'CREATE VIRTUAL TABLE embeddings USING vec0(v float[4])')"
        )
        db.commit()


def _long_transcript(path: Path) -> None:
    """An older OpenClaw's live transcript (``<id>.jsonl``): user and assistant turns by turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"type": "session", "id": LONG_SESSION, "timestamp": "2026-12-01T09:00:00.000Z", "cwd": "/w"}]
    for n in range(LONG_TURNS):
        stamp = f"2026-12-01T{9 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
        if n % 2 == 0:
            message: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": f"question {n}"}]}
        else:
            message = {
                "role": "assistant", "content": [{"type": "text", "text": f"answer {n}: " + "words " * 30}],
                "usage": {"input": 100, "output": 20, "cacheRead": 0, "cacheWrite": 0,
                          "cost": {"total": 0.0001}},
            }
        lines.append({"type": "message", "id": f"e{n}", "parentId": f"e{n - 1}" if n else None,
                      "timestamp": stamp, "message": message})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def write_state(state: Path, *, long_session: bool = False) -> None:
    """The OpenClaw fixture, the notes database and (with ``long_session``) the long transcript."""
    shutil.copytree(FIXTURE / "agents", state / "agents")
    shutil.copytree(FIXTURE / "state", state / "state")
    _notes_database(state / NOTES_DB)
    if long_session:
        _long_transcript(state / "agents" / "main" / "sessions" / f"{LONG_SESSION}.jsonl")


@dataclass
class World:
    """A served state directory: where it is and the socket its API answers on."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def socket(self) -> Path:
        return self.root / "api.sock"


def _settings(root: Path) -> Settings:
    return Settings(
        sandbox=SandboxSettings(name="unit", gateway_port=9, restart_backoff_initial=0.05,
                                readyz_interval=0.05, health_interval=0.05),
        paths=PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run"),
    )


@contextlib.contextmanager
def served(*, long_session: bool = False) -> Iterator[World]:
    """A fresh state directory and the backend's API over it, until the block ends."""
    from tests.unit.test_manager_events import StubEngine
    from tests.unit.test_memory_api import Stoppable

    world = World(Path(tempfile.mkdtemp(prefix="mc-db-", dir="/tmp")))
    write_state(world.state, long_session=long_session)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        engine = StubEngine()
        engine.container = Stoppable(engine)
        manager = SandboxManager(_settings(world.root), client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
        app: Any = create_app(manager)
        repo = Repository(LocalStore(world.root / "repo")).open()
        # No snapshots of its own while a test runs: the views read the state as it is now.
        keeper = MemoryKeeper("unit", world.state, repo, None, MemorySettings(enabled=True, interval=0))
        manager.memory = keeper
        app.fleet.default.memory = keeper
        await manager.open()
        stop = asyncio.Event()
        loop_box.append((asyncio.get_running_loop(), stop))
        try:
            async with serve_asgi(app, world.socket):
                ready.set()
                await stop.wait()
        finally:
            await manager.close()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # the test says what broke instead of hanging
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="database-api", daemon=True)
    thread.start()
    ready.wait(30)
    try:
        if failure:
            raise failure[0]
        yield world
    finally:
        if loop_box:
            loop, stop = loop_box[0]
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        shutil.rmtree(world.root, ignore_errors=True)
