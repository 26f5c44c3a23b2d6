"""The collector's subscriber streams, fed directly (no container): history, tail, filters,
live batches, and a follower that falls behind being told how much it lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from moltconsole_backend.logs import collector as collector_module
from moltconsole_backend.logs.collector import LogCollector, LogQuery
from moltconsole_backend.logs.record import Record, parse_file_line, parse_human
from moltconsole_backend.sandbox.state import SandboxState, SandboxStatus
from moltconsole_backend.settings import LogSettings, Settings
from moltconsole_shared.paths import PathSettings


class StoppedSandbox:
    """Just enough of SandboxManager: a sandbox that is not running."""

    status = SandboxStatus(state=SandboxState.STOPPED)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return asyncio.Queue()

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        pass


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[LogCollector]:
    # A short wait for a console line's file twin: the tests that need it end sooner.
    settings = Settings(paths=PathSettings(data_dir=tmp_path, cache_dir=tmp_path,
                                           runtime_dir=tmp_path / "run"),
                        logs=LogSettings(twin_wait=0.2))
    logs = LogCollector(settings, StoppedSandbox())  # type: ignore[arg-type]
    await logs.start()
    yield logs
    await logs.stop()


def feed(logs: LogCollector, count: int, level: str = "info", start: int = 0) -> None:
    logs.ingest([Record(time=1000.0 + start + i, level=level, subsystem="t",
                        message=f"line {start + i}", source="stdout", raw="r")
                 for i in range(count)], {})


async def messages(logs: LogCollector, query: LogQuery, until_caught_up: bool = True) -> list[Any]:
    out = []
    async for text in logs.stream(query):
        out.append(json.loads(text))
        if until_caught_up and out[-1]["type"] == "caught_up":
            break
    return out


def records(msgs: list[Any]) -> list[dict[str, Any]]:
    return [r for m in msgs if m["type"] == "batch" for r in m["records"]]


async def test_history_tail_and_filters(collector: LogCollector) -> None:
    feed(collector, 50, "info")
    feed(collector, 10, "error", start=50)
    everything = await messages(collector, LogQuery(follow=False))
    assert [r["seq"] for r in records(everything)] == list(range(1, 61))
    assert everything[-1] == {"type": "caught_up"}
    tail = records(await messages(collector, LogQuery(tail=5, follow=False)))
    assert [r["seq"] for r in tail] == [56, 57, 58, 59, 60]
    errors = records(await messages(collector, LogQuery.from_json(
        {"levels": ["error"], "tail": 3, "follow": False})))
    assert [r["message"] for r in errors] == ["line 57", "line 58", "line 59"]
    grep = records(await messages(collector, LogQuery.from_json({"grep": r"line 1\d$", "follow": False})))
    assert len(grep) == 10
    since = records(await messages(collector, LogQuery(since_seq=59, follow=False)))
    assert [r["seq"] for r in since] == [59, 60]
    recent = records(await messages(collector, LogQuery(since_time=1055.0, follow=False)))
    assert [r["message"] for r in recent] == [f"line {i}" for i in range(55, 60)]


async def test_history_is_read_from_disk_after_a_restart(tmp_path: Path, collector: LogCollector) -> None:
    feed(collector, 30)
    await collector.stop()
    again = LogCollector(collector.settings, StoppedSandbox())  # type: ignore[arg-type]
    await again.start()
    try:
        feed(again, 5, start=30)
        got = records(await messages(again, LogQuery(follow=False)))
        assert [r["seq"] for r in got] == list(range(1, 36))
    finally:
        await again.stop()


async def test_live_batches_follow_caught_up(collector: LogCollector) -> None:
    feed(collector, 3)
    stream = collector.stream(LogQuery(tail=1))
    assert json.loads(await anext(stream))["records"][0]["seq"] == 3
    assert json.loads(await anext(stream)) == {"type": "caught_up"}
    later = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    feed(collector, 2, start=3)
    batch = json.loads(await asyncio.wait_for(later, 5))
    assert [r["seq"] for r in batch["records"]] == [4, 5] and batch["dropped"] == 0
    await stream.aclose()


async def test_a_follower_lagging_past_the_ring_reads_from_disk(
    collector: LogCollector, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector_module, "RING_RECORDS", 100)
    stream = collector.stream(LogQuery(tail=0))
    assert json.loads(await anext(stream)) == {"type": "caught_up"}
    feed(collector, 1000)  # far more than the ring holds, far less than the lag limit
    seqs: list[int] = []
    while len(seqs) < 1000:
        message = json.loads(await asyncio.wait_for(anext(stream), 5))
        assert message["dropped"] == 0
        seqs.extend(r["seq"] for r in message["records"])
    assert seqs == list(range(1, 1001))
    await stream.aclose()


async def test_a_follower_that_falls_behind_is_told_what_it_lost(
    collector: LogCollector, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector_module, "RING_RECORDS", 100)
    monkeypatch.setattr(collector_module, "LIVE_LAG_LIMIT", 200)
    stream = collector.stream(LogQuery(tail=0))
    assert json.loads(await anext(stream)) == {"type": "caught_up"}
    feed(collector, 1000)  # the ring keeps ~100: the follower has not read anything yet
    got = 0
    dropped = 0
    while got + dropped < 1000:
        message = json.loads(await asyncio.wait_for(anext(stream), 5))
        got += len(message["records"])
        dropped += message["dropped"]
    assert dropped > 0 and got + dropped == 1000
    await stream.aclose()


# Real lines of one event from the OpenClaw 2026.9.6 image: its log file's record and the
# console line Docker stamped 2 ms later.
FILE_READY = '{"0":"{\\"subsystem\\":\\"gateway\\"}","1":"gateway ready","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"molt-t6d0f1d7a6c","date":"2026-12-03T06:52:24.105Z","logLevelId":3,"logLevelName":"INFO","name":"{\\"subsystem\\":\\"gateway\\"}","parentNames":["openclaw"]},"time":"2026-12-03T06:52:24.105+00:00","hostname":"molt-t6d0f1d7a6c","message":"gateway ready"}'  # noqa: E501
CONSOLE_READY = "2026-12-03T06:52:24.106+00:00 [gateway] ready"


def ready_pair() -> tuple[Record, Record]:
    file = parse_file_line(FILE_READY, received=0.0)
    return file, parse_human(CONSOLE_READY, source="stdout", received=file.time + 0.002)


def saved_cursors(logs: LogCollector) -> dict[str, Any]:
    """The cursors as a restart would read them (the journal's last line)."""
    last = (logs.directory / "sources.cursor").read_text().splitlines()[-1]
    return dict(json.loads(last))


async def test_an_event_both_sources_carry_is_kept_once(collector: LogCollector) -> None:
    file, console = ready_pair()
    collector.offer([console], {"docker": {"1": 1}})
    collector.offer([file], {"file": {"dev": 1, "ino": 2, "offset": 600}})
    got = records(await messages(collector, LogQuery(follow=False)))
    assert [(r["source"], r["message"]) for r in got] == [("file", "gateway ready")]
    assert saved_cursors(collector) == {"docker": {"1": 1}, "file": {"dev": 1, "ino": 2, "offset": 600}}


async def test_a_console_line_without_a_twin_is_kept_after_the_wait(collector: LogCollector) -> None:
    _, console = ready_pair()
    stream = collector.stream(LogQuery(tail=0))
    assert json.loads(await anext(stream)) == {"type": "caught_up"}
    collector.offer([console], {"docker": {"1": 7}})
    # It waits for a twin that never comes: its cursor is not saved while it waits ...
    assert "docker" not in saved_cursors(collector)
    batch = json.loads(await asyncio.wait_for(anext(stream), 5))
    # ... and then it is kept alone, not lost, and its cursor saved with it.
    assert [(r["source"], r["message"]) for r in batch["records"]] == [("stdout", "ready")]
    assert saved_cursors(collector)["docker"] == {"1": 7}
    await stream.aclose()


async def test_a_stop_keeps_what_still_waits(collector: LogCollector) -> None:
    _, console = ready_pair()
    collector.offer([console], {"docker": {"1": 7}})
    await collector.stop()
    again = LogCollector(collector.settings, StoppedSandbox())  # type: ignore[arg-type]
    await again.start()
    try:
        got = records(await messages(again, LogQuery(follow=False)))
        assert [r["message"] for r in got] == ["ready"]
        assert saved_cursors(again)["docker"] == {"1": 7}
    finally:
        await again.stop()


class RunningSandbox(StoppedSandbox):
    """A sandbox that runs; each ``restart()`` tells the collector, as the manager would."""

    status = SandboxStatus(state=SandboxState.READY, container_id="c1")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return self.queue

    def restart(self) -> None:
        self.queue.put_nowait({"type": "status"})


async def test_a_reattached_reader_starts_after_what_was_read_not_what_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A container restart while a console line still waits for its twin must not read it
    again: its cursor is not saved yet, but it was read."""
    attached: list[dict[int, int]] = []
    reading = asyncio.Queue[None]()

    class OneLineReader:
        """Stands for ContainerLogReader: delivers one line per attach, then the stream ends."""

        def __init__(self, api: Any, container_id: str, *, last_ns: dict[int, int], **options: Any) -> None:
            self.last_ns = dict(last_ns)
            self.sink = options["sink"]
            attached.append(dict(last_ns))

        def run(self) -> None:
            ns = max(self.last_ns.values(), default=0) + 1_000_000_000
            line = parse_human(f"2026-12-03T06:52:24.106+00:00 [gateway] line {len(attached)}",
                               source="stdout", received=ns / 1e9)
            self.last_ns[1] = ns
            self.sink([line], {"docker": {"1": ns}})
            loop.call_soon_threadsafe(reading.put_nowait, None)

        def stop(self) -> None:
            pass

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(collector_module, "ContainerLogReader", OneLineReader)
    paths = PathSettings(data_dir=tmp_path, cache_dir=tmp_path, runtime_dir=tmp_path / "run")
    settings = Settings(paths=paths, logs=LogSettings(twin_wait=30))  # nothing leaves meanwhile
    sandbox = RunningSandbox()
    engine = SimpleNamespace(api=None, close=lambda: None)  # what a DockerClient gives the reader
    logs = LogCollector(settings, sandbox, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    await logs.start()
    try:
        await asyncio.wait_for(reading.get(), 5)
        sandbox.restart()
        await asyncio.wait_for(reading.get(), 5)
        assert attached[0] == {} and attached[1] == {1: 1_000_000_000}
    finally:
        await logs.stop()
    got = records(await messages_after_restart(logs))
    assert [r["message"] for r in got] == ["line 1", "line 2"]


async def messages_after_restart(logs: LogCollector) -> list[Any]:
    again = LogCollector(logs.settings, StoppedSandbox())  # type: ignore[arg-type]
    await again.start()
    try:
        return await messages(again, LogQuery(follow=False))
    finally:
        await again.stop()
