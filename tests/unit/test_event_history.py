"""The sandbox's event history on disk: kept across restarts, bounded, and whole after a crash."""

from __future__ import annotations

import json
from pathlib import Path

from moltconsole_backend.sandbox.history import EventHistory
from moltconsole_shared.wire.events import SandboxEvent


def test_events_survive_a_new_history_object_and_seq_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = EventHistory(path)
    first.append("state", "", now=100.0, state="ready")
    first.append("state", "the gateway exited with code 137", now=200.0, level="error", state="crashed")

    again = EventHistory(path)  # the backend restarted
    assert [(e.seq, e.state, e.level) for e in again.last()] == [
        (1, "ready", "info"), (2, "crashed", "error"),
    ]
    assert again.latest_state() == again.last()[-1]
    assert again.append("notice", "OOM", now=300.0).seq == 3


def test_the_file_stays_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    history = EventHistory(path, keep=10)
    for i in range(55):
        history.append("notice", f"event {i}", now=float(i))
        # At most twice the kept events are ever on disk.
        assert len(path.read_text().splitlines()) < 20
    reloaded = EventHistory(path, keep=10)
    assert [e.message for e in reloaded.last()] == [f"event {i}" for i in range(45, 55)]
    assert [e.message for e in reloaded.last(3)] == ["event 52", "event 53", "event 54"]
    assert reloaded.last(0) == []


def test_a_torn_last_line_from_a_crash_is_dropped_and_the_file_repaired(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    history = EventHistory(path)
    history.append("state", "", now=1.0, state="ready")
    history.append("state", "", now=2.0, state="stopped")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq":3,"time":3.0,"kind":"sta')  # the backend died mid-write

    reloaded = EventHistory(path)
    assert [e.state for e in reloaded.last()] == ["ready", "stopped"]
    assert path.read_bytes() == whole  # rewritten without the torn line
    reloaded.append("state", "", now=4.0, state="ready")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]  # the next append starts a line of its own


def test_a_long_message_is_cut(tmp_path: Path) -> None:
    history = EventHistory(tmp_path / "events.jsonl")
    event = history.append("notice", "x" * 10_000, now=1.0)
    assert len(event.message) == 2000 and event.message.endswith("…")


def test_an_unwritable_directory_keeps_events_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    history = EventHistory(blocker / "events.jsonl")
    event = history.append("notice", "still shown", now=1.0)
    assert history.last() == [event]


def test_wire_form_round_trips_and_describes_itself() -> None:
    event = SandboxEvent(7, 12.5, "state", "error", "the gateway exited with code 137", "crashed")
    assert SandboxEvent.from_json(event.to_json()) == event
    assert event.describe() == "crashed: the gateway exited with code 137"
    assert SandboxEvent(8, 1.0, "state", "info", "", "ready").describe() == "ready"
    assert SandboxEvent(9, 1.0, "notice", "warning", "OOM", None).describe() == "OOM"
