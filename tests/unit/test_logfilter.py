"""The Logs screen's pure logic: records, patterns, filters, search and time windows."""

from __future__ import annotations

import re

import pytest

from moltconsole.logfilter import (
    LEVEL_FLOORS,
    MATCH_LIMIT,
    LogFilter,
    LogRecord,
    PatternError,
    TextPattern,
    count_matches,
    find_match,
    format_time,
    level_rank,
    next_in_cycle,
    window_start,
)


def rec(seq: int, message: str, level: str = "info", subsystem: str = "gateway",
        time: float = 1_800_000_000.0, source: str = "file") -> LogRecord:
    return LogRecord.from_wire({"seq": seq, "time": time, "level": level, "subsystem": subsystem,
                                "message": message, "source": source, "raw": message, "cut": False})


def test_from_wire_sanitises_every_agent_field() -> None:
    record = LogRecord.from_wire({
        "seq": 7, "time": 1.5, "level": "WARNING", "subsystem": "a\x1b[2Jb",
        "message": "x\x1b]52;c;ZXZpbA==\x07y\x9b", "source": "std\x00err",
        "raw": "{\"m\": \"\x1b\"}", "cut": 1,
    })
    assert record.level == "warn"
    assert record.subsystem == "a\u241b[2Jb"
    assert record.message == "x\u241b]52;c;ZXZpbA==\u2407y\ufffd"
    assert record.source == "std\u2400err"
    assert "\x1b" not in record.raw
    assert record.cut is True
    assert record.body == record.message


def test_from_wire_tolerates_missing_and_odd_fields() -> None:
    record = LogRecord.from_wire({"seq": "x", "level": "loud", "message": None})
    assert (record.seq, record.time, record.level, record.message, record.raw) == (0, 0.0, "", "", "")


def test_body_is_the_message_cut_before_matching() -> None:
    record = rec(1, "a" * (MATCH_LIMIT + 500) + "needle")
    assert len(record.body) == MATCH_LIMIT
    assert not TextPattern.parse("needle").search(record.message)  # type: ignore[union-attr]


def test_plain_and_time_are_utc() -> None:
    record = rec(1, "hello", level="error", subsystem="agent", time=1_800_000_000.25)
    assert format_time(record.time) == "08:00:00.250"
    assert record.plain() == "2027-01-15T08:00:00.250Z ERROR agent hello"
    assert rec(2, "bare", level="", subsystem="").plain().endswith(" - bare")


def test_text_pattern_plain_regex_and_smart_case() -> None:
    plain = TextPattern.parse("a.b")
    assert plain is not None and not plain.is_regex
    assert plain.search("xA.Bx") and not plain.search("axb")
    regex = TextPattern.parse("/a.b/")
    assert regex is not None and regex.is_regex and regex.search("AXB")
    upper = TextPattern.parse("Error")
    assert upper is not None and upper.search("Error 1") and not upper.search("error 1")
    assert TextPattern.parse("") is None and TextPattern.parse("//") is None
    assert TextPattern.parse("/") is not None  # a lone slash is text


def test_bad_regex_raises_a_readable_error() -> None:
    with pytest.raises(PatternError, match=r"bad regex /a\(/: missing \)"):
        TextPattern.parse("/a(/")


def test_spans_skip_empty_matches() -> None:
    pattern = TextPattern.parse("/x*/")
    assert pattern is not None
    assert pattern.spans("axxbx") == [(1, 3), (4, 5)]


def test_filter_parse_subsystems_and_text() -> None:
    query = LogFilter.parse("sub:Agent timeout  sub:cron")
    assert query.subsystems == ("agent", "cron")
    assert query.pattern is not None and query.pattern.source == "timeout"
    assert query.matches(rec(1, "Timeout reached", subsystem="agent"))
    assert query.matches(rec(2, "timeout", subsystem="cron/heartbeat"))
    assert not query.matches(rec(3, "timeout", subsystem="gateway"))
    assert not query.matches(rec(4, "fine", subsystem="agent"))


def test_filter_by_source() -> None:
    lines = [rec(1, "gateway ready"), rec(2, "[WARN  tini (7)] Tini is not PID 1", source="stderr"),
             rec(3, "ONCEMARK plain", source="stdout")]
    assert [r.seq for r in LogFilter.parse("source:file").apply(lines)] == [1]
    console = LogFilter.parse("source:console")
    assert console.sources == ("stdout", "stderr") and console.narrows
    assert [r.seq for r in console.apply(lines)] == [2, 3]
    assert [r.seq for r in LogFilter.parse("src:stderr tini").apply(lines)] == [2]
    assert LogFilter.parse("Source:FILE source:file").sources == ("file",)
    assert LogFilter.parse("source:").sources == LogFilter.parse("source:con").sources == ()  # typing
    assert console.history_request()["sources"] == ["stdout", "stderr"]
    assert "sources" not in LogFilter.parse("ready").history_request()
    with pytest.raises(PatternError, match="source:journal is not a log source: use source:file"):
        LogFilter.parse("source:journal")


def test_filter_level_floor_and_unlevelled_lines() -> None:
    warn_up = LogFilter(level_floor="warn")
    assert [warn_up.matches(rec(i, "m", level=lv)) for i, lv in enumerate(
        ["trace", "debug", "info", "warn", "error", "fatal", ""])] == [
        False, False, False, True, True, True, False]
    assert LogFilter().matches(rec(1, "m", level=""))
    assert level_rank("") == -1 < level_rank("trace")


def test_filter_since_and_apply() -> None:
    records = [rec(1, "old", time=100.0), rec(2, "new", time=200.0)]
    assert [r.seq for r in LogFilter(since=150.0).apply(records)] == [2]
    assert not LogFilter().active and LogFilter(since=0.0).active
    assert LogFilter().apply(records) == records


def test_find_match_wraps_both_ways() -> None:
    records = [rec(i, "hit" if i in (1, 3) else "miss") for i in range(5)]
    pattern = TextPattern.parse("hit")
    assert pattern is not None
    assert find_match(records, pattern, 4) == 1
    assert find_match(records, pattern, 1) == 3
    assert find_match(records, pattern, 3) == 1
    assert find_match(records, pattern, 1, forward=False) == 3
    assert find_match(records, pattern, 3, forward=False) == 1
    assert find_match([], pattern, 0) is None
    assert find_match(records[:1], pattern, 0) is None
    assert count_matches(records, pattern) == 2


def test_windows_and_cycles() -> None:
    assert window_start("all", 1000.0) is None
    assert window_start("5m", 1000.0) == 700.0
    assert window_start("1h", 4000.0) == 400.0
    with pytest.raises(ValueError):
        window_start("2d", 0.0)
    assert next_in_cycle(LEVEL_FLOORS, None) == "debug"
    assert next_in_cycle(LEVEL_FLOORS, "error") is None


def test_backend_regex_carries_smart_case_and_escapes_text() -> None:
    def grep(source: str) -> str:
        pattern = TextPattern.parse(source)
        assert pattern is not None
        return pattern.backend_regex()

    assert grep("a.b") == "(?i)a\\.b"
    assert grep("Error") == "Error"
    assert grep("/^(model|tool) /") == "(?i)^(model|tool) "
    # The user's own global flags still come first, where Python accepts them.
    assert grep("/(?s)a.b/") == "(?i)(?s)a.b"
    for source in ("a.b", "Error", "/^(model|tool) /", "/(?s)a.b/"):
        assert re.compile(grep(source)).pattern == grep(source)
    assert re.search(grep("/(?s)a.b/"), "A\nB")


def test_history_request_for_text_subsystems_levels_and_window() -> None:
    assert not LogFilter(since=5.0).narrows  # the window alone is the stream's business
    assert LogFilter.parse("x").narrows and LogFilter(level_floor="warn").narrows
    assert LogFilter.parse("sub:agent").narrows
    assert LogFilter.parse("timeout sub:agent", level_floor="warn", since=5.0).history_request() == {
        "grep": "(?i)timeout", "levels": ["warn", "error", "fatal"], "since_time": 5.0}
    assert LogFilter.parse("sub:agent sub:a.b").history_request() == {
        "grep": "(?i)agent|a\\.b", "levels": None, "since_time": None}
    assert LogFilter(level_floor="debug").history_request()["levels"] == [
        "debug", "info", "warn", "error", "fatal"]


def test_what_the_backend_sends_for_a_request_is_a_superset_of_the_matches() -> None:
    """The backend greps message or subsystem; every line the filter passes is among them."""
    query = LogFilter.parse("sub:agent retry", level_floor="info")
    request = query.history_request()
    grep = re.compile(request["grep"])
    records = [rec(1, "Retry now", subsystem="agent"), rec(2, "retry", subsystem="cron"),
               rec(3, "no", subsystem="retry-agent"), rec(4, "retry", level="debug", subsystem="agent")]
    sent = [r for r in records if r.level in request["levels"]
            and (grep.search(r.message) or grep.search(r.subsystem))]
    assert [r.seq for r in sent] == [1, 2, 3]
    assert [r.seq for r in query.apply(sent)] == [1]
    assert query.apply(records) == query.apply(sent)


def test_the_shown_body_has_no_code_points_on_whose_width_terminals_disagree() -> None:
    # Rich counts "⚠️" (with U+FE0F) as 2 cells, tmux as 1: the line ended a cell short and kept
    # stray characters at 160 columns. The body drawn and matched drops the selector; the copy keeps it.
    record = LogRecord.from_wire({"message": "⚠️ disk almost full 👨‍👩‍👧", "level": "warn", "seq": 1})
    assert "\ufe0f" not in record.body and "\u200d" not in record.body
    assert record.body.startswith("⚠ disk almost full")
    assert "⚠️" in record.plain()
