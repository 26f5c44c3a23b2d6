"""The log line parser: real OpenClaw file and console lines, ANSI, garbage, long lines."""
# ruff: noqa: E501 - the sample lines are real ones, kept whole

from __future__ import annotations

import json

from moltconsole_backend.logs.record import (
    Record,
    cut_line,
    parse_file_line,
    parse_human,
    parse_time,
    strip_ansi,
)

# Copied from a real gateway's /data/logs/openclaw.log (OpenClaw 2026.9.6).
FILE_INFO = '{"0":"{\\"subsystem\\":\\"gateway\\"}","1":"loading configuration…","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"6f40cb1651ec","date":"2026-11-25T12:52:51.543Z","logLevelId":3,"logLevelName":"INFO","name":"{\\"subsystem\\":\\"gateway\\"}","parentNames":["openclaw"]},"time":"2026-11-25T12:52:51.543+00:00","hostname":"6f40cb1651ec","message":"loading configuration…"}'
FILE_WARN = '{"0":"{\\"subsystem\\":\\"gateway\\"}","1":"⚠️  Gateway is binding to a non-loopback address. Ensure authentication is configured before exposing to public networks.","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"6f40cb1651ec","date":"2026-11-25T12:52:54.384Z","logLevelId":4,"logLevelName":"WARN","name":"{\\"subsystem\\":\\"gateway\\"}","parentNames":["openclaw"]},"time":"2026-11-25T12:52:54.384+00:00","hostname":"6f40cb1651ec","message":"⚠️  Gateway is binding to a non-loopback address. Ensure authentication is configured before exposing to public networks."}'
FILE_CRON = '{"0":"{\\"module\\":\\"cron\\",\\"storeKey\\":\\"/data/state/cron/jobs.json\\"}","1":{"jobId":"073c58d6-d8b2-406d-86fb-b47114c6c84a","jobName":"Memory Dreaming Promotion","nextRunAtMs":1795662000000,"schedulerNextWakeAtMs":1795662000000,"timerArmed":true,"cronEnabled":true},"2":"cron: job added","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"6f40cb1651ec","date":"2026-11-25T12:52:56.662Z","logLevelId":3,"logLevelName":"INFO","name":"{\\"module\\":\\"cron\\",\\"storeKey\\":\\"/data/state/cron/jobs.json\\"}","parentNames":["openclaw"],"path":{"fullFilePath":"file:///usr/local/lib/node_modules/openclaw/dist/logger--ALOusOG.mjs:892:29","fileName":"logger--ALOusOG.mjs","fileNameWithLine":"logger--ALOusOG.mjs:892","fileColumn":"29","fileLine":"892","filePath":"/usr/local/lib/node_modules/openclaw/dist/logger--ALOusOG.mjs","filePathWithLine":"/usr/local/lib/node_modules/openclaw/dist/logger--ALOusOG.mjs:892","method":"Object.info"}},"time":"2026-11-25T12:52:56.662+00:00","hostname":"6f40cb1651ec","message":"cron: job added"}'
# The gateway's stdout as Docker stores it (colours on, as with FORCE_COLOR).
STDOUT = "2026-11-25T12:38:02.764+00:00 [gateway] loading configuration\u2026"
STDOUT_COLOR = "\x1b[90m2026-11-25T12:38:02.764+00:00\x1b[39m \x1b[36m[gateway/channels]\x1b[39m ok"


def test_file_line_info() -> None:
    record = parse_file_line(FILE_INFO, received=1.0)
    assert (record.level, record.subsystem) == ("info", "gateway")
    assert record.message == "loading configuration\u2026"
    assert record.source == "file" and record.raw == FILE_INFO and not record.cut
    assert abs(record.time - parse_time("2026-11-25T12:52:51.543Z")) < 1e-6  # type: ignore[operator]


def test_file_line_warn_and_module_bindings() -> None:
    warn = parse_file_line(FILE_WARN, received=1.0)
    assert warn.level == "warn" and warn.subsystem == "gateway"
    cron = parse_file_line(FILE_CRON, received=1.0)
    assert (cron.level, cron.subsystem, cron.message) == ("info", "cron", "cron: job added")


def test_file_line_without_message_joins_the_arguments() -> None:
    data = json.loads(FILE_CRON)
    del data["message"]
    record = parse_file_line(json.dumps(data), received=1.0)
    assert record.message.startswith('{"jobId"') and record.message.endswith("cron: job added")


def test_garbage_in_the_file_is_kept_as_a_message() -> None:
    for text in ("not json at all", "{broken", "[1, 2]", '"a string"', ""):
        record = parse_file_line(text, received=5.0)
        assert (record.level, record.subsystem, record.message, record.time) == ("", "", text, 5.0)


def test_stdout_line() -> None:
    record = parse_human(STDOUT, source="stdout", received=7.5)
    assert (record.subsystem, record.message, record.level) == ("gateway", "loading configuration\u2026", "")
    assert record.time == 7.5 and record.raw == STDOUT


def test_ansi_is_stripped_from_fields_but_raw_is_verbatim() -> None:
    record = parse_human(STDOUT_COLOR, source="stderr", received=1.0)
    assert (record.subsystem, record.message) == ("gateway/channels", "ok")
    assert record.raw == STDOUT_COLOR
    hostile = "\x1b]52;c;aGk=\x07\x1b]0;title\x1b\\plain\x1b[2J"
    assert strip_ansi(hostile) == "plain"


def test_untagged_stdout_line_is_all_message() -> None:
    record = parse_human("npm warn something", source="stderr", received=1.0)
    assert (record.subsystem, record.message) == ("", "npm warn something")


def test_long_lines_are_cut_before_parsing() -> None:
    line = ("x" * 100_000).encode()
    cut, was_cut = cut_line(line, 1000)
    assert len(cut) == 1000 and was_cut
    assert cut_line(b"short", 1000) == (b"short", False)
    # A cut JSON line is not parsed (its end is missing), but kept.
    record = parse_file_line(FILE_INFO[:50], received=2.0, cut=True)
    assert record.cut and record.message == FILE_INFO[:50] and record.level == ""
    # A multi-byte character split by the cut decodes without error.
    cut, _ = cut_line("\u2026\u2026".encode(), 4)
    assert cut.decode("utf-8", "replace").startswith("\u2026")


def test_times() -> None:
    assert parse_time("1970-01-01T00:01:00Z") == 60.0
    assert parse_time("1970-01-01T01:00:00.5+01:00") == 0.5
    assert parse_time("2026-11-25T12:52:51.561507456Z") == parse_time("2026-11-25T12:52:51.561507456+00:00")
    assert parse_time("nonsense") is None


def test_record_encoding_round_trips_with_seq_first() -> None:
    record = Record(time=1.5, level="info", subsystem="s", message="m\x1b", source="file", raw="r", seq=9)
    line = record.encode()
    assert line.startswith('{"seq":9,') and "\x1b" not in line
    assert Record.from_json(json.loads(line)) == record
