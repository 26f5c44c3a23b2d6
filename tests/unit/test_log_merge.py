"""Each event once: the real OpenClaw 2026.9.6 console lines and file records merged.

The fixtures (tests/unit/fixtures/openclaw_logs/) are what both sources carried in real runs
of the sandbox image; see their README. The merger is fed as the collector feeds it: console
lines as Docker delivers them, file records in the batches the tailer reads every 0.1 s, and
the clock driven by hand.
"""
# ruff: noqa: E501 - the sample lines are real ones, kept whole

from __future__ import annotations

from pathlib import Path

import pytest

from moltconsole_backend.logs.merge import SourceMerger, prefixed, strip_tag, tag_fits, twins
from moltconsole_backend.logs.record import Record, parse_file_line, parse_human
from moltconsole_backend.logs.sources import docker_ns

FIXTURES = Path(__file__).parent / "fixtures" / "openclaw_logs"


def console_lines(run: str) -> list[Record]:
    """Both streams of a run, parsed as the container reader parses them, in Docker's order."""
    records = []
    for stream in ("stdout", "stderr"):
        for line in (FIXTURES / run / f"{stream}.txt").read_text(encoding="utf-8").splitlines():
            stamp, _, text = line.partition(" ")
            records.append(parse_human(text, source=stream, received=docker_ns(stamp.encode()) / 1e9))
    return sorted(records, key=lambda r: r.time)


def file_records(run: str) -> list[Record]:
    path = FIXTURES / run / "openclaw.log"
    if not path.exists():
        return []
    return [parse_file_line(line, received=0.0) for line in path.read_text(encoding="utf-8").splitlines()]


def replay(console: list[Record], files: list[Record], file_lag: float, merger: SourceMerger) -> list[Record]:
    """Feed both sources in the order they reach the collector; return what is kept.

    Console lines arrive when Docker stamps them; file records in polls every 0.1 s, each
    ``file_lag`` seconds after the record's time (negative: the file is read first).
    """
    arrivals: list[tuple[float, list[Record], dict[str, int]]] = [
        (r.time, [r], {"docker": i}) for i, r in enumerate(console)]
    polls: dict[int, list[Record]] = {}
    for record in files:
        polls.setdefault(int((record.time + file_lag) * 10) + 1, []).append(record)
    arrivals += [(tick / 10, batch, {"file": tick}) for tick, batch in polls.items()]
    arrivals.sort(key=lambda a: a[0])
    kept: list[Record] = []
    for now, batch, cursor in arrivals:
        kept += merger.release(now)[0]
        kept += merger.add(batch, cursor, now)[0]
    kept += merger.drain()[0]
    return kept


@pytest.mark.parametrize("file_lag", [0.05, 0.3, 2.4, -0.5])
def test_a_real_run_shows_every_event_once(file_lag: float) -> None:
    console, files = console_lines("agent_turns"), file_records("agent_turns")
    assert len(console) == 96 and len(files) == 107
    merger = SourceMerger()
    kept = replay(console, files, file_lag, merger)
    # Every console line of this run has its twin in the file, and the file has more (the
    # cron module, the CLI's own lines, slow SQLite writes the console does not print).
    assert [r.source for r in kept] == ["file"] * len(files)
    assert sorted(r.raw for r in kept) == sorted(r.raw for r in files)
    assert merger.twins_dropped == 96 and merger.pending == 0
    times = [r.time for r in kept]
    assert times == sorted(times)


def test_a_message_of_several_lines_is_one_event() -> None:
    # "Gateway failed to start: Invalid config ..." is one file record of four lines, and four
    # console lines of which only the first has OpenClaw's timestamp.
    console, files = console_lines("config_invalid"), file_records("config_invalid")
    refusal = [r for r in console if r.source == "stderr"]
    assert [prefixed(r) for r in refusal] == [True, True, False, False, False, True]
    for lag in (0.05, 0.4, -0.3):
        kept = replay(console, files, lag, SourceMerger())
        assert [r.raw for r in kept] == [r.raw for r in sorted(files, key=lambda r: r.time)]


def test_lines_without_a_twin_are_kept_in_order() -> None:
    # V8 dies before OpenClaw opens its log file: nothing of it may go missing.
    console = console_lines("heap_crash")
    assert not any(prefixed(r) for r in console)
    merger = SourceMerger()
    kept = replay(console, [], 0.1, merger)
    assert kept == console and merger.twins_dropped == 0


def test_a_console_line_waits_for_its_twin_only_so_long() -> None:
    merger = SourceMerger(hold=0.75)
    line = parse_human("2026-12-03T06:52:24.106+00:00 [gateway] ready", source="stdout", received=100.0)
    assert merger.add([line], {"docker": 1}, now=10.0) == ([], {})
    assert merger.next_deadline() == 10.75
    assert merger.release(10.7) == ([], {})
    assert merger.release(10.75) == ([line], {"docker": 1})  # alone, not lost
    assert merger.pending == 0 and merger.next_deadline() is None


def test_a_waiting_line_leaves_once_the_file_is_past_it() -> None:
    # OpenClaw queues the file record before it prints the console line: once the file shows
    # a record from after the line, its twin would have come.
    merger = SourceMerger(hold=3.0)
    twin = parse_file_line(FILE_READY, received=0.0)
    alone = parse_human("2026-12-03T06:52:24.300+00:00 [evil] ESCMARK done", source="stdout", received=twin.time + 0.2)
    assert merger.add([alone], {"docker": 1}, now=0.0) == ([], {})
    kept, _ = merger.add([twin], {"file": 1}, now=0.1)  # older than the line: it still waits
    assert kept == [twin] and merger.pending == 1
    later = Record(time=alone.time + 0.3, level="info", subsystem="cron", message="cron: started", source="file", raw="f")
    kept, cursor = merger.add([later], {"file": 2}, now=0.2)
    assert kept == [alone, later] and cursor == {"docker": 1, "file": 2}


def test_lines_without_a_prefix_pass_at_once_but_not_ahead_of_an_earlier_line() -> None:
    merger = SourceMerger()
    twin = parse_file_line(FILE_READY, received=0.0)
    t0 = twin.time
    tini = parse_human("[WARN  tini (7)] Tini is not running as PID 1 and isn't registered as a child subreaper.", source="stderr", received=t0 - 1)
    assert merger.add([tini], {"docker": 1}, now=1.0) == ([tini], {"docker": 1})
    waiting = parse_human("2026-12-03T06:52:24.106+00:00 [gateway] ready", source="stdout", received=t0 + 0.002)
    later = parse_human("TAILMARK line 1", source="stdout", received=t0 + 0.5)
    assert merger.add([waiting], {"docker": 2}, now=2.0) == ([], {})
    # Later than the waiting line: it waits behind it, and so does the cursor.
    assert merger.add([later], {"docker": 3}, now=2.2) == ([], {})
    kept, cursor = merger.add([twin], {"file": 9}, now=2.3)
    assert kept == [twin, later] and cursor == {"docker": 3, "file": 9}


def test_a_cursor_waits_for_every_line_of_its_batch() -> None:
    merger = SourceMerger(hold=1.0)
    first = parse_human("2026-12-03T06:52:24.106+00:00 [gateway] ready", source="stdout", received=6.0)
    plain = parse_human("plain", source="stdout", received=5.0)
    kept, cursor = merger.add([plain, first], {"docker": 1}, now=0.0)
    assert kept == [plain] and cursor == {}  # "ready" of the same batch still waits
    assert merger.release(1.0) == ([first], {"docker": 1})


def test_repeated_messages_pair_oldest_first() -> None:
    stamp = "2026-12-03T06:52:{:06.3f}+00:00 [agent/embedded] tool-search: cataloged 53 tools behind compact prompt surface"
    console = [parse_human(stamp.format(35.7 + i), source="stdout", received=1000.0 + i + 0.002) for i in range(3)]
    files = [Record(time=1000.0 + i, level="info", subsystem="agent/embedded",
                    message="tool-search: cataloged 53 tools behind compact prompt surface",
                    source="file", raw=f"file {i}") for i in range(3)]
    merger = SourceMerger()
    assert merger.add(console, {"docker": 1}, now=0.0) == ([], {})
    kept, _ = merger.add(files[:2], {"file": 1}, now=0.1)
    assert [r.raw for r in kept] == ["file 0", "file 1"]
    assert merger.pending == 1  # the third console line still waits for the third record
    assert [r.raw for r in merger.add(files[2:], {"file": 2}, now=0.2)[0]] == ["file 2"]


def test_memory_is_bounded_and_nothing_is_lost() -> None:
    merger = SourceMerger(max_waiting=100)
    lines = [parse_human(f"2026-12-03T06:52:24.106+00:00 [gateway] line {i}", source="stdout", received=float(i))
             for i in range(1000)]
    kept: list[Record] = []
    for i in range(0, 1000, 50):
        kept += merger.add(lines[i : i + 50], {"docker": i}, now=0.0)[0]
        assert merger.pending <= 100 + 50
    kept += merger.drain()[0]
    assert kept == lines


FILE_READY = '{"0":"{\\"subsystem\\":\\"gateway\\"}","1":"gateway ready","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"molt-t6d0f1d7a6c","date":"2026-12-03T06:52:24.105Z","logLevelId":3,"logLevelName":"INFO","name":"{\\"subsystem\\":\\"gateway\\"}","parentNames":["openclaw"]},"time":"2026-12-03T06:52:24.105+00:00","hostname":"molt-t6d0f1d7a6c","message":"gateway ready"}'


def pair(file_line: str, console_line: str, stream: str, delay: float = 0.002) -> tuple[Record, Record]:
    file = parse_file_line(file_line, received=0.0)
    return file, parse_human(console_line, source=stream, received=file.time + delay)


def file_line(subsystem: str, level: str, message: str) -> str:
    return ('{"0":"{\\"subsystem\\":\\"' + subsystem + '\\"}","1":"' + message.replace('"', '\\"')
            + '","_meta":{"logLevelName":"' + level + '"},"time":"2026-12-03T06:52:24.105+00:00","message":"'
            + message.replace('"', '\\"') + '"}')


def test_what_makes_twins() -> None:
    # The console drops a mention of its tag where the message starts, and shortens the tag.
    assert twins(*pair(FILE_READY, "2026-12-03T06:52:24.106+00:00 [gateway] ready", "stdout"))
    assert twins(*pair(file_line("gateway/heartbeat", "INFO", "heartbeat: disabled"), "2026-12-03T06:52:24.089+00:00 [heartbeat] disabled", "stdout"))
    assert twins(*pair(file_line("gateway/admission", "INFO", "admission closed: stop (SIGTERM)"), "2026-12-03T06:54:18.400+00:00 [admission] closed: stop (SIGTERM)", "stdout"))
    assert twins(*pair(file_line("gateway/diagnostics/memory", "WARN", "memory pressure: level=warning"), "2026-12-03T06:52:50.120+00:00 [diagnostics/memory] memory pressure: level=warning", "stderr"))
    # A warning's fields follow its message on the console.
    assert twins(*pair(file_line("agent/embedded", "WARN", "embedded run agent end"), "2026-12-03T06:52:46.817+00:00 [agent/embedded] embedded run agent end: runId=ee92d908-21b1-4f2d-b1ea-222eeb756a5b isError=true", "stderr"))
    assert twins(*pair(file_line("session-sqlite", "WARN", "slow SQLite reclamation Worker operation"), "2026-12-03T06:54:37.997+00:00 [session-sqlite] slow SQLite reclamation Worker operation pid=6 threadId=0", "stderr"))
    # With "logging": {"consoleStyle": "json"} the console carries the file's own fields.
    assert twins(*pair(file_line("gateway/heartbeat", "INFO", "heartbeat: disabled"), '{"enabled":false,"time":"2026-11-25T15:41:05.021+00:00","level":"info","subsystem":"gateway/heartbeat","message":"heartbeat: disabled"}', "stdout"))


def test_what_does_not_make_twins() -> None:
    file, console = pair(FILE_READY, "2026-12-03T06:52:24.106+00:00 [gateway] ready", "stdout")
    assert not twins(file, parse_human(console.raw, source="stderr", received=console.time))  # another level
    assert not twins(file, parse_human(console.raw, source="stdout", received=file.time + 2.5))  # too far apart
    assert not twins(file, parse_human("2026-12-03T06:52:24.106+00:00 [gateway] ready now", source="stdout", received=console.time))
    assert not twins(file, parse_human("2026-12-03T06:52:24.106+00:00 [cron] ready", source="stdout", received=console.time))
    # Only warnings and errors get more text on the console.
    assert not twins(*pair(file_line("gateway", "INFO", "starting"), "2026-12-03T06:52:24.106+00:00 [gateway] starting HTTP server...", "stdout"))


def test_strip_tag_and_tag_fits() -> None:
    assert strip_tag("gateway ready", "gateway") == "ready"
    assert strip_tag("gateway: seeded gateway.controlUi.allowedOrigins", "gateway") == "seeded gateway.controlUi.allowedOrigins"
    assert strip_tag("[Gateway]   ready", "gateway") == "ready"
    assert strip_tag("[agent] run 37ee40ab ended", "agents/agent-command") == "[agent] run 37ee40ab ended"
    assert strip_tag("gateways are up", "gateway") == "gateways are up"
    assert tag_fits("heartbeat", "gateway/heartbeat") and tag_fits("diagnostics/memory", "gateway/diagnostics/memory")
    assert tag_fits("openclaw", "")  # the root logger: captured console.log with its own tag
    assert not tag_fits("beat", "gateway/heartbeat") and not tag_fits("", "gateway")
