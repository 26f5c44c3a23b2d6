"""A sandbox's memory for the Memory screen's tests and bench: a state directory shaped like
OpenClaw's, a local repository holding snapshots taken at fixed times, and the backend's real
API over them (the real app, a real keeper) on a unix socket served from a thread.

The snapshots are written with fixed ids and times (what the keeper writes, but dated), so the
screens' snapshots are the same on every run; the sandbox manager runs against the stand-in
engine of the manager tests (no container), which is enough for a whole-sandbox restore to
stop and start it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from moltconsole_backend.api.service import create_app
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.repo import FileEntry, Repository, Snapshot
from moltconsole_backend.memory.service import MemoryService
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import MemorySettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings

# The console's frozen clock (2026-05-28 20:26 UTC): before any snapshot a test takes for real,
# so those sort newest, as they would.
T0 = 1_780_000_000.0
SANDBOX = "unit"

AGENTS = """# AGENTS.md - your workspace

This folder is home. Treat it that way.

## Every session

1. Read `SOUL.md`: this is who you are.
2. Read `USER.md`: this is who you are helping.
3. Read `memory/` for recent context, and **MEMORY.md** for the long term.

## Memory

- Write it down. *Mental notes* do not survive a restart.
- When someone says "remember this", update `memory/YYYY-MM-DD.md`.

```sh
openclaw memory search "tea"
```
"""
SOUL = "# SOUL.md\n\nBe genuinely helpful, not performatively helpful.\nHave opinions.\n"
USER = "# USER.md\n\n- Name: Sam\n- Timezone: Europe/Lisbon\n- Likes: tea, long walks\n"
MEMORY_V1 = "# Memory\n\n- The user likes tea.\n"
MEMORY_V2 = "# Memory\n\n- The user likes green tea.\n- Ana is the user's sister.\n"
MEMORY_NOW = (
    "# Memory\n\n- The user likes green tea, no sugar.\n- Ana is the user's sister.\n"
    "- Lunch with Ana on Friday at 13:00.\n"
)
DAY_NOTE = (
    "# 2026-05-27\n\n- Sam asked for a tea shop near the office.\n"
    "- Found three; Sam liked the second.\n"
)
CONFIG = (
    '{"gateway": {"port": 18789, "bind": "lan"}, '
    '"agents": {"defaults": {"model": "anthropic/claude-sonnet-4-6"}}}\n'
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4

FILES_NOW: dict[str, bytes] = {
    "workspace/AGENTS.md": AGENTS.encode(),
    "workspace/SOUL.md": SOUL.encode(),
    "workspace/USER.md": USER.encode(),
    "workspace/MEMORY.md": MEMORY_NOW.encode(),
    "workspace/memory/2026-05-27.md": DAY_NOTE.encode(),
    "workspace/skills/tea-timer/SKILL.md": b"# tea-timer\n\nStarts a timer for the steeping time of a tea.\n",
    "workspace/avatar.png": PNG,
    "openclaw.json": CONFIG.encode(),
    "credentials/oauth.json": b'{"anthropic": {"mode": "api_key"}}\n',
}
# (id, seconds before T0, reason, MEMORY.md then)
SNAPSHOTS = [
    ("20260528T182640000Z-a1b2c3", 7200, "schedule", MEMORY_V1),
    ("20260528T195640000Z-d4e5f6", 1800, "change", MEMORY_V2),
]


@dataclass
class World:
    """One memory world: where its state and repository are, and its socket once served."""

    root: Path
    files: dict[str, bytes] = field(default_factory=lambda: dict(FILES_NOW))
    memory_on: bool = True
    keeper: MemoryKeeper | None = None  # once served with memory on (its loop is the server's thread)
    env: dict[str, str] = field(default_factory=dict)  # the backend's keys (a Moltworker bucket's)

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def socket(self) -> Path:
        return self.root / "api.sock"

    def write_state(self) -> None:
        """The state directory now, with a real SQLite database among the files."""
        for path, content in self.files.items():
            target = self.state / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
        database = self.state / "state" / "openclaw.sqlite"
        database.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(database)) as db:
            db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, title TEXT)")
            db.execute("INSERT OR REPLACE INTO sessions VALUES ('s1', 'tea shops')")
            db.commit()

    def seed_snapshots(self, repo: Repository) -> None:
        """The snapshots, as the keeper writes them, at fixed times."""
        for snapshot_id, before, reason, memory in SNAPSHOTS:
            entries = []
            for path, content in {**self.files, "workspace/MEMORY.md": memory.encode()}.items():
                blob, _ = repo.put_blob(content)
                entries.append(FileEntry(path, blob, len(content), 0o600, int((T0 - before) * 1e9)))
            repo.write_snapshot(Snapshot(id=snapshot_id, sandbox=SANDBOX, time=T0 - before, reason=reason,
                                         files=sorted(entries, key=lambda e: e.path)))


def settings_for(root: Path) -> Settings:
    return Settings(
        sandbox=SandboxSettings(name=SANDBOX, gateway_port=9, restart_backoff_initial=0.05,
                                readyz_interval=0.05, health_interval=0.05),
        paths=PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run"),
    )


@contextlib.contextmanager
def served(world: World) -> Iterator[World]:
    """The backend's API over ``world`` on its socket, from a thread with its own event loop
    (``snap_compare`` runs the console in a loop of its own)."""
    from tests.unit.test_manager_events import StubEngine
    from tests.unit.test_memory_api import Stoppable

    world.write_state()
    repo = Repository(LocalStore(world.root / "repo")).open()
    world.seed_snapshots(repo)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(world.socket))
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(
        None, log_level="warning", access_log=False, lifespan="off", ws="websockets-sansio",  # type: ignore[arg-type]
        ws_ping_interval=None, timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    ready = threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        engine = StubEngine()
        engine.container = Stoppable(engine)
        manager = SandboxManager(settings_for(world.root), client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
        app: Any = create_app(manager)
        if world.env:  # what reads a Moltworker bucket takes its credentials from the service
            app.fleet.memory = MemoryService(settings_for(world.root), world.env)
        if world.memory_on:
            # No snapshot of its own while a test runs (a restore changes files): the times stay fixed.
            quiet = MemorySettings(enabled=True, interval=0, debounce=60, max_delay=600)
            keeper = MemoryKeeper(SANDBOX, world.state, repo, None, quiet)
            await keeper.start()
            world.keeper = keeper
            manager.memory = keeper
            app.fleet.default.memory = keeper
        else:
            keeper = None
            app.fleet.default.memory = None
        config.app = app
        await manager.open()
        try:
            ready.set()
            await server.serve(sockets=[sock])
        finally:
            if keeper is not None:
                await keeper.close()
            await manager.close()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # the test says what broke instead of hanging
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="memory-api", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    try:
        yield world
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
