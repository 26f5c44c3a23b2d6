"""The manager's reactions to engine events that are hard to provoke on a shared engine.

A small stand-in for docker-py's client plays the engine here: an engine restart that kills the
container while the backend is not listening, a death event that arrives late, memory samples
near the limit, and backend restarts (a second manager on the same directories) that must keep
the restart count and the event history. Everything else about the manager is tested against
the real engine in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.sandbox.state import Desired, SandboxState
from moltconsole_backend.settings import SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings

CONTAINER_ID = "c" * 64
END = object()


class StubContainer:
    """Just enough of docker-py's Container."""

    def __init__(self, engine: StubEngine) -> None:
        self.id = CONTAINER_ID
        self.engine = engine
        self.attrs: dict[str, Any] = {
            # Started just now: one started long ago that does not answer /readyz is unhealthy.
            "State": {"Running": True, "ExitCode": 0, "FinishedAt": "0001-01-01T00:00:00Z",
                      "StartedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))},
            "Config": {"Labels": {"moltconsole.openclaw_version": "2026.9.6"}, "Image": "img:1"},
        }

    def start(self) -> None:  # called on a worker thread, like docker-py
        self.attrs["State"]["Running"] = True
        self.engine.starts += 1
        self.engine.loop.call_soon_threadsafe(self.engine.started.set)


class StubEngine:
    """Just enough of docker-py's DockerClient; events are fed through ``feed``."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.container = StubContainer(self)
        self.events_fed: queue.Queue[object] = queue.Queue()
        self.stats_fed: queue.Queue[object] = queue.Queue()
        self.starts = 0
        self.started = asyncio.Event()
        self.containers = self
        self.api = self

    # containers.get
    def get(self, name: str) -> StubContainer:
        return self.container

    # api.logs
    def logs(self, *args: Any, **kwargs: Any) -> bytes:
        return b"FATAL: something broke\n"

    def events(self, **kwargs: Any) -> _Closable:
        def stream() -> Iterator[dict[str, Any]]:
            while (item := self.events_fed.get()) is not END:
                assert isinstance(item, dict)
                yield item

        return _Closable(stream())

    def stats(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while (item := self.stats_fed.get()) is not END:
            assert isinstance(item, dict)
            yield item

    def close(self) -> None:
        self.events_fed.put(END)
        self.stats_fed.put(END)


class _Closable:
    def __init__(self, inner: Iterator[dict[str, Any]]) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.inner

    def close(self) -> None:
        pass


@pytest.fixture
def settings() -> Iterator[Settings]:
    root = Path(tempfile.mkdtemp(prefix="mc-unit-", dir="/tmp"))
    yield Settings(
        sandbox=SandboxSettings(name="unit", gateway_port=9, restart_backoff_initial=0.05,
                                readyz_interval=0.05, health_interval=0.05),
        paths=PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run"),
    )


async def test_engine_restart_that_killed_the_container_leads_to_a_restart(settings: Settings) -> None:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    try:
        assert manager.status.state == SandboxState.STARTING  # adopted the running container
        assert manager.status.desired == Desired.RUNNING
        # The engine goes away (its event stream ends) and takes the container with it.
        engine.container.attrs["State"].update(
            Running=False, ExitCode=137, FinishedAt="2026-11-25T10:05:00Z"
        )
        engine.events_fed.put(END)
        await manager.wait_for(lambda s: s.state == SandboxState.ENGINE_DOWN, timeout=5)
        # When it is back, the dead container counts as a crash, and is started again.
        crashed = await manager.wait_for(lambda s: s.state == SandboxState.CRASHED, timeout=10)
        assert crashed.last_exit_code == 137
        assert "FATAL: something broke" in crashed.reason
        await asyncio.wait_for(engine.started.wait(), timeout=10)
        assert engine.starts == 1
        back = await manager.wait_for(lambda s: s.state == SandboxState.STARTING, timeout=5)
        assert back.restarts == 1
    finally:
        await manager.close()


async def test_a_late_death_event_of_an_earlier_run_is_ignored(settings: Settings) -> None:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    try:
        status = manager.status
        assert status.state == SandboxState.STARTING and status.started_at is not None
        before_start = status.started_at - 5
        engine.events_fed.put({
            "Type": "container", "Action": "die", "timeNano": int(before_start * 1e9),
            "Actor": {"ID": CONTAINER_ID, "Attributes": {"name": "moltconsole-unit", "exitCode": "143"}},
        })
        # A current death, for contrast, is taken seriously.
        engine.events_fed.put({
            "Type": "container", "Action": "die", "timeNano": int(time.time() * 1e9),
            "Actor": {"ID": CONTAINER_ID, "Attributes": {"name": "moltconsole-unit", "exitCode": "1"}},
        })
        crashed = await manager.wait_for(lambda s: s.state == SandboxState.CRASHED, timeout=5)
        assert crashed.last_exit_code == 1  # not 143: the stale event changed nothing
    finally:
        await manager.close()


async def test_wanted_state_survives_the_manager(settings: Settings) -> None:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    await manager.close()
    kept = json.loads((settings.sandbox_dir / "supervision.json").read_text())
    assert kept == {"desired": "running", "restarts": 0, "last_exit_code": None}


def test_the_wanted_state_of_an_earlier_version_is_honoured(settings: Settings) -> None:
    settings.sandbox_dir.mkdir(parents=True)
    (settings.sandbox_dir / "desired").write_text("running\n")  # what earlier versions wrote
    manager = SandboxManager(settings, client_factory=StubEngine)  # type: ignore[arg-type]
    assert manager.status.desired == Desired.RUNNING


MIB = 2**20


def memory_sample(working_set_mib: int, cache_mib: int = 100, limit_mib: int = 2048) -> dict[str, Any]:
    """A stats document as the engine sends it on cgroup v1 (the page cache on the file lists)."""
    return {
        "read": "2026-11-25T10:00:05Z",
        "memory_stats": {
            "usage": (working_set_mib + cache_mib) * MIB,
            "limit": limit_mib * MIB,
            "stats": {"total_active_file": cache_mib // 2 * MIB,
                      "total_inactive_file": (cache_mib - cache_mib // 2) * MIB},
        },
    }


def die_now(code: int) -> dict[str, Any]:
    return {
        "Type": "container", "Action": "die", "timeNano": int(time.time() * 1e9),
        "Actor": {"ID": CONTAINER_ID, "Attributes": {"name": "moltconsole-unit", "exitCode": str(code)}},
    }


def kill_container(engine: StubEngine, code: int) -> None:
    engine.container.attrs["State"].update(Running=False, ExitCode=code)
    engine.events_fed.put(die_now(code))


async def test_restart_count_and_history_survive_a_backend_restart(settings: Settings) -> None:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    try:
        assert manager.history.last() == []  # adopting a running container is no news
        before = time.time()
        kill_container(engine, 137)
        await asyncio.wait_for(engine.started.wait(), timeout=10)
        await manager.wait_for(lambda s: s.state == SandboxState.STARTING and s.restarts == 1, timeout=5)
        recorded = manager.history.last()
        assert [(e.kind, e.state, e.level) for e in recorded] == [
            ("state", "crashed", "error"), ("state", "starting", "info"),
        ]
        assert "exited with code 137" in recorded[0].message
        assert before <= recorded[0].time <= recorded[1].time <= time.time()
    finally:
        await manager.close()

    # The backend restarts; the container kept running.
    engine = StubEngine()
    again = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    assert (again.status.restarts, again.status.last_exit_code) == (1, 137)  # the container may be gone
    await again.open()
    try:
        assert again.status.state == SandboxState.STARTING and again.status.restarts == 1
        assert again.history.last() == recorded  # nothing new: the same run, adopted
        kill_container(engine, 1)
        crashed = await again.wait_for(lambda s: s.state == SandboxState.CRASHED, timeout=5)
        assert crashed.restarts == 1
        latest = again.history.latest
        assert latest is not None and latest.seq == recorded[-1].seq + 1, again.history.last()
    finally:
        await again.close()


async def test_a_working_set_near_the_limit_warns_once_and_says_when_it_is_over(settings: Settings) -> None:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await manager.open()
    events = manager.subscribe()
    samples = manager.stats()
    try:
        engine.stats_fed.put(memory_sample(1800))  # 88 % of the limit: the cache is not counted
        engine.stats_fed.put(memory_sample(1850))  # 90 %
        warned = await manager.wait_for(lambda s: s.memory_warning is not None, timeout=5)
        assert "reached 1,850 of 2,048 MiB (90%, cache not counted)" in str(warned.memory_warning)
        # A stats reader gets the latest sample at once, then each new one.
        sample = await asyncio.wait_for(anext(samples), 5)
        assert (sample.memory_bytes, sample.cache_bytes) == (1850 * MIB, 100 * MIB)
        engine.stats_fed.put(memory_sample(1800))  # still above 85 %: the same warning
        sample = await asyncio.wait_for(anext(samples), 5)
        assert sample.memory_bytes == 1800 * MIB and manager.status.memory_warning == warned.memory_warning
        engine.stats_fed.put(memory_sample(1600))  # 78 %: over
        await manager.wait_for(lambda s: s.memory_warning is None, timeout=5)

        memory = [e for e in manager.history.last() if e.kind == "memory"]
        assert [e.level for e in memory] == ["warning", "info"]
        assert memory[0].message == "memory: the sandbox reached 1,850 of 2,048 MiB (90%, cache not counted)"
        assert "back under 85%" in memory[1].message
        sent = []
        while not events.empty():
            message = events.get_nowait()
            if message["type"] == "event" and message["event"]["kind"] == "memory":
                sent.append(message["event"])
        assert [e["seq"] for e in sent] == [e.seq for e in memory]  # live, as recorded
    finally:
        await samples.aclose()
        await manager.close()


async def test_routine_probes_are_logged_at_debug_and_changes_at_info(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    probes = 0
    enough = asyncio.Event()

    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """OpenClaw's /readyz as the probe sees it: 200 with a small JSON body."""
        nonlocal probes
        while await reader.readuntil(b"\r\n\r\n"):
            probes += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n"
                         b"\r\n{\"ok\":true}")
            await writer.drain()
            if probes >= 6:
                enough.set()

    server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sandbox = settings.sandbox.model_copy(update={"gateway_port": port})
    settings = settings.model_copy(update={"sandbox": sandbox})
    caplog.set_level(logging.DEBUG)
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    try:
        await manager.open()
        await manager.wait_for(lambda s: s.state == SandboxState.READY, timeout=5)
        await asyncio.wait_for(enough.wait(), 5)  # several probes after ready: routine
    finally:
        await manager.close()
        server.close()
    about_readyz = [r for r in caplog.records if "readyz" in r.getMessage()]
    assert len(about_readyz) >= 5
    assert {r.levelno for r in about_readyz} == {logging.DEBUG}, [r.getMessage() for r in about_readyz]
    changes = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert changes == ["sandbox ready"]


async def test_a_probe_that_changes_nothing_sends_no_status(settings: Settings) -> None:
    probes = 0

    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Not ready for the first five probes (OpenClaw's 503 while it starts), then ready."""
        nonlocal probes
        while await reader.readuntil(b"\r\n\r\n"):
            probes += 1
            status = b"200 OK" if probes > 5 else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()

    server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    sandbox = settings.sandbox.model_copy(update={"gateway_port": server.sockets[0].getsockname()[1]})
    engine = StubEngine()
    manager = SandboxManager(settings.model_copy(update={"sandbox": sandbox}),
                             client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    messages = manager.subscribe()
    try:
        await manager.open()
        await manager.wait_for(lambda s: s.state == SandboxState.READY, timeout=5)
    finally:
        await manager.close()
        server.close()
    states = []
    while not messages.empty():
        message = messages.get_nowait()
        if message["type"] == "status":
            states.append(message["status"]["state"])
    assert probes > 5
    assert states == ["starting", "ready"]  # not a "starting" for each of the five refusals
