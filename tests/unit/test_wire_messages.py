"""The shared wire schemas hold both ends to one shape: what the backend builds (its manager, its
stats, its device list, its log batches built by hand on the fast path) reads back through the
schema the console reads with, and what does not fit is named by its field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, cast

import pytest

from moltconsole.logfilter import LogRecord as ScreenRecord
from moltconsole_backend.logs.collector import _batch
from moltconsole_backend.logs.record import Record, parse_human
from moltconsole_backend.sandbox import devices
from moltconsole_backend.sandbox.manager import OperationError, SandboxManager
from moltconsole_backend.sandbox.stats import compute_sample
from moltconsole_backend.settings import Settings
from moltconsole_shared.wire.devices import DEVICE_LIST, device_list
from moltconsole_shared.wire.events import EventFormatError, SandboxEvent
from moltconsole_shared.wire.logs import LOG_STREAM, LogBatch, LogCaughtUp
from moltconsole_shared.wire.sandbox import (
    EVENT_STREAM,
    RUNNING_STATES,
    SANDBOX_STATUS,
    STATS_SAMPLE,
    SandboxState,
    SandboxStatus,
    StatusMessage,
)
from moltconsole_shared.wire.schema import WireFormatError
from tests.unit.test_manager_events import StubEngine, memory_sample
from tests.unit.test_manager_events import settings as settings  # the fixture


# --- status, state names, stats, events ----------------------------------------------------------
def test_a_status_reads_back_with_its_state_names() -> None:
    status = SandboxStatus(state=SandboxState.CRASH_LOOP, reason="r", restarts=5, last_exit_code=137)
    data = json.loads(json.dumps(status.to_json()))
    assert data["state"] == "crash-loop" and data["desired"] == "stopped"
    assert SandboxStatus.from_json(data) == status
    assert {s.value for s in RUNNING_STATES} == {"starting", "ready", "unhealthy"}
    assert status.running is False and SandboxStatus(state=SandboxState.READY).running


@pytest.mark.parametrize(("change", "message"), [
    ({"state": "sideways"}, "status.state must be one of unknown, engine-down, absent, building, starting"),
    ({"restarts": "2"}, "status.restarts must be an integer, not '2'"),
    ({"started_at": "noon"}, "status.started_at must be a number or null, not 'noon'"),
])
def test_a_status_that_does_not_fit_names_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(WireFormatError, match=re.escape(message)):
        SANDBOX_STATUS.read({**SandboxStatus().to_json(), **change})


def test_a_computed_stats_sample_reads_back() -> None:
    sample = compute_sample(memory_sample(1800))
    assert STATS_SAMPLE.read(json.loads(json.dumps(sample.to_json()))) == sample


def test_an_event_reads_back_and_a_bad_one_is_named() -> None:
    event = SandboxEvent(seq=3, time=1.5, kind="state", level="error", message="m", state="crashed")
    assert SandboxEvent.from_json(event.to_json()) == event
    with pytest.raises(EventFormatError, match=re.escape("event.level must be one of info, warning, error")):
        SandboxEvent.from_json({**event.to_json(), "level": "loud"})
    with pytest.raises(EventFormatError, match=re.escape("event.seq must be an integer, not '3'")):
        SandboxEvent.from_json({**event.to_json(), "seq": "3"})


async def test_every_message_the_manager_broadcasts_fits_the_event_stream(settings: Settings) -> None:
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    messages = manager.subscribe()
    await manager.open()
    try:
        engine.stats_fed.put(memory_sample(1850))  # a memory warning: a status and an event
        await manager.wait_for(lambda s: s.memory_warning is not None, timeout=5)
        manager.notice("a notice for whoever watches")
    finally:
        await manager.close()
    seen = []
    while not messages.empty():
        message = messages.get_nowait()
        assert EVENT_STREAM.dump(EVENT_STREAM.read(message)) == message
        seen.append(message["type"])
    assert {"status", "event", "notice"} <= set(seen)
    with pytest.raises(WireFormatError, match=re.escape("event stream message.type must be one of status")):
        EVENT_STREAM.read({"type": "weather"})
    first = StatusMessage(SandboxStatus())
    assert EVENT_STREAM.read(EVENT_STREAM.dump(first)) == first


# --- devices ---------------------------------------------------------------------------------------
class ListingManager:
    """A manager whose exec prints ``out`` as ``openclaw devices list --json`` would."""

    def __init__(self, out: str) -> None:
        self.out = out

    async def exec(self, cmd: list[str]) -> tuple[int, str, str]:
        return 0, self.out, ""


async def test_devices_keep_every_field_openclaw_sent() -> None:
    entry = {"requestId": "r-1", "displayName": "laptop", "publicKey": "k", "createdAtMs": 5, "scopes": ["a"]}
    out = "banner line\n" + json.dumps({"pending": [entry], "paired": None})
    listed = await devices.list_devices(cast(SandboxManager, ListingManager(out)))
    assert listed.pending[0].request_id == "r-1" and listed.pending[0].name == "laptop"
    assert DEVICE_LIST.dump(listed) == {"pending": [entry], "paired": []}  # nothing added, nothing lost
    assert DEVICE_LIST.read(DEVICE_LIST.dump(listed)) == listed


@pytest.mark.parametrize(("out", "message"), [
    (json.dumps({"pending": [{"requestId": 7}]}),
     "device list.pending[0].requestId must be a string or null, not 7"),
    (json.dumps({"pending": {"requestId": "r"}}), "device list.pending must be a list, not dict"),
    (json.dumps(["not", "an", "object"]), "printed no JSON object"),
])
async def test_a_device_list_moltconsole_cannot_read_is_an_operation_error(out: str, message: str) -> None:
    with pytest.raises(OperationError, match=re.escape(message)):
        await devices.list_devices(cast(SandboxManager, ListingManager(out)))


def test_device_list_of_nothing() -> None:
    assert device_list(None, None) == device_list([], [])


# --- logs -----------------------------------------------------------------------------------------
def test_the_hand_built_batch_is_what_the_schema_describes() -> None:
    records = [parse_human(line, source="stdout", received=1_800_000_000.25) for line in (
        "2026-12-03T06:52:24.106+00:00 [gateway] listening on ws://0.0.0.0:18789",
        'quotes " and \\ backslashes, tabs\tand ünïcödé',
    )]
    for seq, record in enumerate(records, 1):
        record.seq = seq
    text = _batch([r.encode() for r in records], dropped=3, disk_full=1)
    assert LOG_STREAM.read_json(text) == LogBatch(records=records, dropped=3, disk_full=1)
    assert LOG_STREAM.read_json('{"type":"caught_up"}') == LogCaughtUp()
    assert Record.from_json(json.loads(records[1].encode())) == records[1]


def test_a_log_record_that_does_not_fit_names_the_field() -> None:
    bad_time = "log stream message.records[0].time must be a number, not 'x'"
    with pytest.raises(WireFormatError, match=re.escape(bad_time)):
        LOG_STREAM.read({"type": "batch", "records": [{"time": "x"}], "dropped": 0})


def test_the_screens_record_has_the_wire_records_fields() -> None:
    # The Logs screen's record is the wire record made inert (plus the body it matches on): the
    # same fields, so the two cannot drift apart.
    wire = [f.name for f in dataclasses.fields(Record)]
    screen = [f.name for f in dataclasses.fields(ScreenRecord) if f.init]
    assert sorted(screen) == sorted(wire)
    record = parse_human("[gateway] ready", source="stdout", received=5.0)
    shown = ScreenRecord.from_wire(record.to_json())
    assert {name: getattr(shown, name) for name in wire} == record.to_json()



def test_the_status_bar_styles_the_wire_state_names() -> None:
    from moltconsole.widgets.status_bar import STATE_STYLES

    assert set(STATE_STYLES) == set(SandboxState) - {SandboxState.UNKNOWN}
    assert STATE_STYLES.get("crash-loop") == "bold red"  # looked up by the name on the wire
