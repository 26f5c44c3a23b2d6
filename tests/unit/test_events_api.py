"""``/v1/events?history=N``: the recorded history first, then each new event, with nothing missed
and nothing twice, through the real app on a unix socket and the console's own client.

The manager runs against the stand-in engine of test_manager_events (no container needed).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import create_app
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import Settings
from tests.unit.test_client import serve_asgi
from tests.unit.test_manager_events import StubEngine
from tests.unit.test_manager_events import settings as settings  # the fixture

NOTICES = 300


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[SandboxManager, BackendClient]]:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    await manager.open()
    try:
        async with serve_asgi(create_app(manager), root / "s.sock"), BackendClient(root / "s.sock") as client:
            yield manager, client
    finally:
        await manager.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_history_then_live_events_without_a_gap_or_a_duplicate(
    served: tuple[SandboxManager, BackendClient],
) -> None:
    manager, client = served
    for i in range(5):
        manager.notice(f"before {i}")

    async def record_while_clients_connect() -> None:
        for i in range(NOTICES):
            manager.notice(f"during {i}")
            await asyncio.sleep(0)  # let the connection's handler run between any two

    seqs: list[int] = []
    messages: list[str] = []
    recording = asyncio.ensure_future(record_while_clients_connect())
    async for message in client.events(history=3):
        if message["type"] == "history":
            assert messages == []  # the first message
            seqs += [e["seq"] for e in message["events"]]
            messages += [e["message"] for e in message["events"]]
        elif message["type"] == "event":
            seqs.append(message["event"]["seq"])
            messages.append(message["event"]["message"])
            if message["event"]["message"] == f"during {NOTICES - 1}":
                break
    await recording
    assert len(seqs) >= 3 + 1
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive: no gap, no repeat
    assert messages[-1] == f"during {NOTICES - 1}"


async def test_without_history_the_stream_is_as_before(served: tuple[SandboxManager, BackendClient]) -> None:
    _, client = served
    first: dict[str, Any] = await anext(client.events())
    assert first["type"] == "status"


async def test_a_bad_history_count_is_refused_with_what_to_send(
    served: tuple[SandboxManager, BackendClient],
) -> None:
    _, client = served
    stream = client._ws("/v1/events?history=lots")  # the client only sends numbers
    ws = await stream
    try:
        reply = await ws.recv()
    finally:
        await ws.close()
    assert "history must be a whole number of events, not 'lots'" in str(reply)
