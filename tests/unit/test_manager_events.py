"""The manager's reactions to engine events that are hard to provoke on a shared engine.

A small stand-in for docker-py's client plays the engine here: an engine restart that kills the
container while the backend is not listening, and a death event that arrives late. Everything
else about the manager is tested against the real engine in tests/integration.
"""

from __future__ import annotations

import asyncio
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
            "State": {"Running": True, "StartedAt": "2026-11-25T10:00:00.5Z", "ExitCode": 0,
                      "FinishedAt": "0001-01-01T00:00:00Z"},
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

    def events(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        def stream() -> Iterator[dict[str, Any]]:
            while (item := self.events_fed.get()) is not END:
                assert isinstance(item, dict)
                yield item

        return _Closable(stream())

    def close(self) -> None:
        self.events_fed.put(END)


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
    assert (settings.sandbox_dir / "desired").read_text().strip() == "running"
