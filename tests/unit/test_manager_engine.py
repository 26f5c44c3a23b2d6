"""The engine interface (sandbox/engine.py): the manager needs nothing of an engine but
``ContainerEngine``, and the Docker driver turns docker-py's shapes and errors into its own.

A second engine (another Docker host, Kubernetes) would be another ``ContainerEngine``; the
first test drives the manager with one that has nothing of docker-py about it.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import queue
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from moltconsole_backend.sandbox import engine as engine_module
from moltconsole_backend.sandbox.engine import (
    ContainerEvent,
    ContainerInfo,
    ContainerNotFound,
    DockerEngine,
    EngineRefused,
    EngineUnavailable,
    SandboxImage,
)
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.sandbox.state import SandboxState
from moltconsole_backend.sandbox.stats import StatsSample
from moltconsole_backend.settings import Settings
from tests.unit.test_manager_events import settings as settings  # the fixture

CONTAINER_ID = "e" * 64
END = object()
SANDBOX_PACKAGE = Path(engine_module.__file__).parent


class QueueStream:
    """A blocking stream fed from the test; ``close`` ends it."""

    def __init__(self) -> None:
        self.items: queue.Queue[object] = queue.Queue()

    def __iter__(self) -> Iterator[Any]:
        while (item := self.items.get()) is not END:
            yield item

    def close(self) -> None:
        self.items.put(END)


class PlainEngine:
    """A ``ContainerEngine`` that is no Docker at all: one container, events from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.container = ContainerInfo(id=CONTAINER_ID, running=True, started_at=time.time() - 1)
        self.event_stream = QueueStream()
        self.stats_stream = QueueStream()
        self.started = asyncio.Event()

    def inspect(self, name: str) -> ContainerInfo | None:
        return self.container

    def create(self, spec: Mapping[str, Any]) -> ContainerInfo:
        raise AssertionError("the container exists: nothing to create")

    def start(self, container_id: str) -> None:
        self.container = dataclasses.replace(self.container, running=True)
        self.loop.call_soon_threadsafe(self.started.set)

    def stop(self, container_id: str, timeout: float) -> None:
        self.container = dataclasses.replace(self.container, running=False, exit_code=0)

    def remove(self, container_id: str) -> None:
        raise AssertionError("nothing is removed here")

    def events(self, label: str, since: int) -> QueueStream:
        return self.event_stream

    def stats(self, container_id: str) -> QueueStream:
        return self.stats_stream

    def exec_create(self, container_id: str, cmd: list[str], user: str) -> str:
        return "exec-1"

    def exec_start(self, exec_id: str) -> QueueStream:
        stream = QueueStream()
        stream.items.put((b"hello\n", None))
        stream.items.put(END)
        return stream

    def exec_exit_code(self, exec_id: str) -> int | None:
        return 3

    def top(self, container_id: str, ps_args: str | None) -> dict[str, Any]:
        return {"Titles": ["PID"], "Processes": [["1"]]}

    def logs_tail(self, container_id: str, lines: int) -> bytes:
        return b"Error: the gateway gave up\n"

    def image(self, **kwargs: Any) -> SandboxImage:
        raise AssertionError("no image is needed here")

    def close(self) -> None:
        self.event_stream.close()
        self.stats_stream.close()


async def test_the_manager_runs_on_any_container_engine(settings: Settings) -> None:
    engine = PlainEngine()
    manager = SandboxManager(settings, engine_factory=lambda: engine)
    await manager.open()
    try:
        assert manager.status.state == SandboxState.STARTING  # adopted the running container
        assert await manager.exec(["true"]) == (3, "hello\n", "")
        assert (await manager.processes())["processes"] == [["1"]]
        sample = StatsSample(time="t", cpu_percent=1.0, memory_bytes=95, memory_limit=100,
                             memory_percent=95.0, pids=3)
        engine.stats_stream.items.put(sample)
        warned = await manager.wait_for(lambda s: s.memory_warning is not None, timeout=5)
        assert warned.memory_warning
        # It dies: supervision reads the reason from its log and starts it again.
        engine.container = dataclasses.replace(engine.container, running=False, exit_code=1)
        engine.event_stream.items.put(
            ContainerEvent("die", CONTAINER_ID, name=manager.name, exit_code=1, time=time.time())
        )
        crashed = await manager.wait_for(lambda s: s.state == SandboxState.CRASHED, timeout=5)
        assert crashed.last_exit_code == 1
        assert "the gateway gave up" in crashed.reason
        await asyncio.wait_for(engine.started.wait(), timeout=5)
    finally:
        await manager.close()


class RaisingContainers:
    """docker-py's ``client.containers``, failing the way the engine does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get(self, name: str) -> Any:
        raise self.error


class RaisingClient:
    def __init__(self, error: Exception) -> None:
        self.containers = RaisingContainers(error)


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (docker.errors.NotFound("404", explanation="No such container: x"), ContainerNotFound,
         "No such container: x"),
        (docker.errors.APIError("500", explanation="driver failed"), EngineRefused, "driver failed"),
        (requests.ConnectionError("Connection refused"), EngineUnavailable,
         "Docker engine not reachable at"),
    ],
)
def test_the_docker_driver_raises_the_interfaces_errors(
    error: Exception, expected: type[Exception], text: str
) -> None:
    engine = DockerEngine(RaisingClient(error))  # type: ignore[arg-type]
    with pytest.raises(expected) as caught:
        engine.start("x")
    assert text in str(caught.value)


def test_the_docker_driver_says_none_for_a_missing_container() -> None:
    engine = DockerEngine(RaisingClient(docker.errors.NotFound("404")))  # type: ignore[arg-type]
    assert engine.inspect("x") is None


class EventsClient:
    def __init__(self, events: list[Any]) -> None:
        self._events = events

    def events(self, **kwargs: Any) -> Iterator[Any]:
        for item in self._events:
            if isinstance(item, Exception):
                raise item
            yield item


def test_the_docker_driver_reads_events_and_a_broken_stream_is_a_lost_engine() -> None:
    die = {"Action": "die", "timeNano": 1_700_000_000_500_000_000,
           "Actor": {"ID": CONTAINER_ID, "Attributes": {"name": "moltconsole-unit", "exitCode": "137"}}}
    client = EventsClient([die, requests.ConnectionError("Connection aborted")])
    stream = iter(DockerEngine(client).events("moltconsole.sandbox=unit", 0))  # type: ignore[arg-type]
    assert next(stream) == ContainerEvent("die", CONTAINER_ID, "moltconsole-unit", 137, 1_700_000_000.5)
    with pytest.raises(EngineUnavailable):
        next(stream)


def test_only_the_docker_driver_and_the_image_builder_import_docker() -> None:
    """The interface stays narrow: everything else speaks to ``ContainerEngine``."""
    importers = set()
    for module in SANDBOX_PACKAGE.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in tree.body:  # module level: imports for type checking only are nested
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            if any(name == "docker" or name.startswith("docker.") for name in names):
                importers.add(module.name)
    assert importers == {"engine.py", "image.py"}
