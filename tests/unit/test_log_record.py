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
    stated_level,
    strip_ansi,
)

# Copied from a real gateway's /data/logs/openclaw.log (OpenClaw 2026.9.6).
FILE_INFO = '{"0":"{\\"subsystem\\":\\"gateway\\"}","1":"loading configuration…","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"6f40cb1651ec","date":"2026-11-25T12:52:51.543Z","logLevelId":3,"logLevelName":"INFO","name":"{\\"subsystem\\":\\"gateway\\"}","parentNames":["openclaw"]},"time":"2026-11-25T12:52:51.543+00:00","hostname":"6f40cb1651ec","message":"loading configuration…"}'
FILE_WARN = '{"0":"{\\"subsystem\\":\\"gateway\\"}","1":"⚠️  Gateway is binding to a non-loopback address. Ensure authentication is configured before exposing to public networks.","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"6f40cb1651ec","date":"2026-11-25T12:52:54.384Z","logLevelId":4,"logLevelName":"WARN","name":"{\\"subsystem\\":\\"gateway\\"}","parentNames":["openclaw"]},"time":"2026-11-25T12:52:54.384+00:00","hostname":"6f40cb1651ec","message":"⚠️  Gateway is binding to a non-loopback address. Ensure authentication is configured before exposing to public networks."}'
FILE_CRON = '{"0":"{\\"module\\":\\"cron\\",\\"storeKey\\":\\"/data/state/cron/jobs.json\\"}","1":{"jobId":"073c58d6-d8b2-406d-86fb-b47114c6c84a","jobName":"Memory Dreaming Promotion","nextRunAtMs":1795662000000,"schedulerNextWakeAtMs":1795662000000,"timerArmed":true,"cronEnabled":true},"2":"cron: job added","_meta":{"runtime":"node","runtimeVersion":"24.21.0","hostname":"6f40cb1651ec","date":"2026-11-25T12:52:56.662Z","logLevelId":3,"logLevelName":"INFO","name":"{\\"module\\":\\"cron\\",\\"storeKey\\":\\"/data/state/cron/jobs.json\\"}","parentNames":["openclaw"],"path":{"fullFilePath":"file:///usr/local/lib/node_modules/openclaw/dist/logger--ALOusOG.mjs:892:29","fileName":"logger--ALOusOG.mjs","fileNameWithLine":"logger--ALOusOG.mjs:892","fileColumn":"29","fileLine":"892","filePath":"/usr/local/lib/node_modules/openclaw/dist/logger--ALOusOG.mjs","filePathWithLine":"/usr/local/lib/node_modules/openclaw/dist/logger--ALOusOG.mjs:892","method":"Object.info"}},"time":"2026-11-25T12:52:56.662+00:00","hostname":"6f40cb1651ec","message":"cron: job added"}'
# The gateway's console as Docker stores it (docker logs of the real image; no colours, the
# default: the container has no terminal). OpenClaw's file log had the level in the comment.
STDOUT = "2026-11-25T12:38:02.764+00:00 [gateway] loading configuration\u2026"
STDOUT_READY = "2026-11-25T15:36:27.107+00:00 [gateway] ready"  # INFO
STDERR_WARN = "2026-11-25T15:36:24.206+00:00 [gateway] \u26a0\ufe0f  Gateway is binding to a non-loopback address. Ensure authentication is configured before exposing to public networks."  # WARN
STDERR_WARN_SAYING_ERROR = "2026-11-25T15:36:37.028+00:00 [provider-transport-fetch] [model-fetch] error provider=molt api=anthropic-messages model=claude-sonnet-4-6 elapsedMs=19 name=TypeError code=undefined causeName=Error causeCode=undefined message=fetch failed"  # WARN
STDERR_ERROR = '2026-11-25T15:37:31.163+00:00 [diagnostic] lane task error: lane=main durationMs=56198 error="aborted | This operation was aborted | 20" errorName=AbortError'  # ERROR
# The same gateway with FORCE_COLOR=1: the message's colour is its level.
COLOR_INFO = "\x1b[90m2026-11-25T15:38:20.399+00:00\x1b[39m \x1b[36m[gateway]\x1b[39m \x1b[36mready\x1b[39m"
COLOR_WARN = "\x1b[90m2026-11-25T15:39:46.385+00:00\x1b[39m \x1b[34m[model-fallback/decision]\x1b[39m \x1b[33mmodel fallback chain stopped: reason=caller_signal_aborted candidate=molt/claude-sonnet-4-6 errorName=AbortError\x1b[39m"
COLOR_ERROR = '\x1b[90m2026-11-25T15:39:46.382+00:00\x1b[39m \x1b[31m[diagnostic]\x1b[39m \x1b[31mlane task error: lane=main durationMs=8480 error="aborted | This operation was aborted | 20" errorName=AbortError\x1b[39m'
COLOR_WARN_SAYING_ERROR = "\x1b[90m2026-11-25T15:39:39.872+00:00\x1b[39m \x1b[33m[provider-transport-fetch]\x1b[39m \x1b[33m[model-fetch] error provider=molt api=anthropic-messages model=claude-sonnet-4-6 elapsedMs=13 name=TypeError code=undefined causeName=Error causeCode=undefined message=fetch failed\x1b[39m"
# OPENCLAW_LOG_LEVEL=debug; printed before the gateway turns on its timestamp prefix.
COLOR_DEBUG = "\x1b[36m[state/sqlite]\x1b[39m \x1b[90mSQLite read-only snapshot for /data/state/state/openclaw.sqlite: 1.4 MiB, budget 302 seconds\x1b[39m"
COLOR_NESTED = "\x1b[90m2026-11-25T15:39:35.489+00:00\x1b[39m \x1b[36m[ws]\x1b[39m \x1b[36m\x1b[93m\u21c4\x1b[39m\x1b[36m \x1b[1mres\x1b[22m \x1b[92m\u2713\x1b[39m\x1b[36m \x1b[1magent\x1b[22m \x1b[2m198ms\x1b[22m \x1b[2mrunId\x1b[22m=fa465434-d79a-4b13-8893-80a7a5145cb6 \x1b[2mconn\x1b[22m=\x1b[90mdcde8373\u2026f846\x1b[39m\x1b[36m \x1b[2mid\x1b[22m=\x1b[90m2:82e60ccc-8\u20265a1d\x1b[39m\x1b[36m\x1b[39m"
# With "logging": {"consoleStyle": "json"} in openclaw.json.
JSON_INFO = '{"enabled":false,"time":"2026-11-25T15:41:05.021+00:00","level":"info","subsystem":"gateway/heartbeat","message":"heartbeat: disabled"}'
JSON_WARN = '{"time":"2026-11-25T15:41:03.051+00:00","level":"warn","subsystem":"gateway","message":"\u26a0\ufe0f  Gateway is binding to a non-loopback address. Ensure authentication is configured before exposing to public networks."}'


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
    assert (record.subsystem, record.message, record.level) == ("gateway", "loading configuration\u2026", "info")
    assert record.time == 7.5 and record.raw == STDOUT


def test_without_colours_the_stream_gives_the_level() -> None:
    # OpenClaw prints info on stdout and warn/error/fatal on stderr, with no level word.
    ready = parse_human(STDOUT_READY, source="stdout", received=1.0)
    assert (ready.level, ready.subsystem, ready.message) == ("info", "gateway", "ready")
    warn = parse_human(STDERR_WARN, source="stderr", received=1.0)
    assert (warn.level, warn.subsystem) == ("warn", "gateway")
    assert warn.message.startswith("\u26a0\ufe0f  Gateway is binding")
    # "error" in the text is no level: OpenClaw logged this one as a warning.
    fetch = parse_human(STDERR_WARN_SAYING_ERROR, source="stderr", received=1.0)
    assert (fetch.level, fetch.subsystem) == ("warn", "provider-transport-fetch")
    assert fetch.message.startswith("[model-fetch] error provider=molt")
    # Logged as ERROR, but on stderr without colours it cannot be told from a warning.
    error = parse_human(STDERR_ERROR, source="stderr", received=1.0)
    assert (error.level, error.subsystem) == ("warn", "diagnostic")


def test_colours_give_the_exact_level() -> None:
    cases = [(COLOR_INFO, "stdout", "info", "gateway", "ready"),
             (COLOR_WARN, "stderr", "warn", "model-fallback/decision", "model fallback chain stopped"),
             (COLOR_ERROR, "stderr", "error", "diagnostic", "lane task error: lane=main"),
             (COLOR_WARN_SAYING_ERROR, "stderr", "warn", "provider-transport-fetch", "[model-fetch] error"),
             (COLOR_DEBUG, "stdout", "debug", "state/sqlite", "SQLite read-only snapshot"),
             (COLOR_NESTED, "stdout", "info", "ws", "\u21c4 res \u2713 agent 198ms runId=")]
    for line, source, level, subsystem, start in cases:
        record = parse_human(line, source=source, received=1.0)
        assert (record.level, record.subsystem) == (level, subsystem), line
        assert record.message.startswith(start) and "\x1b" not in record.message
        assert record.raw == line


def test_json_console_style() -> None:
    info = parse_human(JSON_INFO, source="stdout", received=3.0)
    assert (info.level, info.subsystem, info.message) == ("info", "gateway/heartbeat", "heartbeat: disabled")
    assert info.time == 3.0 and info.raw == JSON_INFO  # Docker's time orders the two streams
    warn = parse_human(JSON_WARN, source="stderr", received=3.0)
    assert (warn.level, warn.subsystem) == ("warn", "gateway")
    # Another JSON logger (pino numbers its levels); JSON without a level is just text.
    pino = parse_human('{"level":50,"time":1,"msg":"boom"}', source="stdout", received=1.0)
    assert (pino.level, pino.message) == ("error", "boom")
    other = parse_human('{"a": 1}', source="stdout", received=1.0)
    assert (other.level, other.message) == ("info", '{"a": 1}')


def test_other_writers_in_the_container() -> None:
    """Real lines from the image's other programs: Node, V8, tini, the entrypoint."""
    def level_and_subsystem(line: str, source: str = "stderr") -> tuple[str, str]:
        record = parse_human(line, source=source, received=1.0)
        return record.level, record.subsystem

    # MOLT_NODE_MAX_OLD_SPACE_MB=16: V8 runs out of heap.
    assert level_and_subsystem("FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory") == ("fatal", "")
    assert level_and_subsystem("[8:0x99d3000]      377 ms: Mark-Compact 21.2 (30.2) -> 15.6 (33.0) MB, pooled: 0 MB, 6.43 / 0.00 ms  (+ 0.2 ms in 32 steps since start of marking, biggest step 0.0 ms, walltime since start of marking 21 ms) (average mu = 0.915, current mu = 0.913) allocat") == ("warn", "")
    assert level_and_subsystem(" 1: 0x931db0  [openclaw]") == ("warn", "")
    # An uncaught exception in node.
    assert level_and_subsystem("[eval]:1") == ("warn", "")
    assert level_and_subsystem("TypeError: boom") == ("error", "")
    assert level_and_subsystem("    at [eval]:1:7") == ("warn", "")
    assert level_and_subsystem("(node:1) [DEP0040] DeprecationWarning: The `punycode` module is deprecated. Please use a userland alternative instead.") == ("warn", "")
    # tini, not running as PID 1.
    assert level_and_subsystem("[WARN  tini (8)] Tini is not running as PID 1 and isn't registered as a child subreaper.") == ("warn", "")
    # The entrypoint and render-config refusing to start; a bad option and level for OpenClaw.
    assert level_and_subsystem("moltconsole-entrypoint: OPENCLAW_GATEWAY_TOKEN is empty: the gateway listens beyond loopback and needs a token") == ("error", "")
    assert level_and_subsystem('render-config: MOLT_MODEL_BASE_URL="notaurl" is not an http(s) URL') == ("warn", "")
    assert level_and_subsystem('[openclaw] Ignoring invalid OPENCLAW_LOG_LEVEL="loud" (allowed: silent|fatal|error|warn|info|debug|trace).') == ("warn", "openclaw")
    record = parse_human("2026-11-25T15:40:18.476+00:00 Invalid --port. Use a port number from 1 to 65535, for example 18789.", source="stderr", received=1.0)
    assert (record.level, record.subsystem, record.message) == ("warn", "", "Invalid --port. Use a port number from 1 to 65535, for example 18789.")
    # A shell echo on stdout is info, like everything OpenClaw prints there.
    assert level_and_subsystem("TAILMARK line 8", source="stdout") == ("info", "")


def test_stated_levels() -> None:
    assert [stated_level(text) for text in (
        "FATAL unhandled rejection: x", "CONFIGURATION ERROR - requires fix: x", "ERROR x",
        "error: unknown option '--x'", "Error [ERR_MODULE_NOT_FOUND]: Cannot find package",
        "Unhandled promise rejection: x", "WARNING: x", "warning: x", "INFO x", "DEBUG x",
        "TRACE x", "[ERROR] x",
    )] == ["fatal", "error", "error", "error", "error", "error", "warn", "warn", "info", "debug",
           "trace", "error"]
    for text in ("INFORMATION x", "errors: 0", "lane task error: x", "Errorless", "warned", ""):
        assert stated_level(text) == "", text
    # "[WARN] x" is a level, not a subsystem.
    record = parse_human("[WARN] disk almost full", source="stdout", received=1.0)
    assert (record.level, record.subsystem, record.message) == ("warn", "", "disk almost full")


def test_console_levels_work_with_the_logs_screen_floors() -> None:
    """Every console line has a level the Logs screen knows, so a floor never hides it unseen."""
    from moltconsole.logfilter import LEVELS as SCREEN_LEVELS
    from moltconsole.logfilter import LogFilter, LogRecord

    lines = [(STDOUT_READY, "stdout"), (STDERR_WARN, "stderr"), (COLOR_ERROR, "stderr"),
             (COLOR_DEBUG, "stdout"), (JSON_INFO, "stdout"), ("plain text", "stdout")]
    records = [LogRecord.from_wire(parse_human(line, source=source, received=1.0).to_json())
               for line, source in lines]
    assert all(r.level in SCREEN_LEVELS for r in records)

    def shown(floor: str) -> list[int]:
        keep = LogFilter.parse("", level_floor=floor)
        return [index for index, record in enumerate(records) if keep.matches(record)]

    assert shown("info") == [0, 1, 2, 4, 5]
    assert shown("warn") == [1, 2]
    assert shown("error") == [2]
    assert shown("debug") == [0, 1, 2, 3, 4, 5]


def test_ansi_is_stripped_from_fields_but_raw_is_verbatim() -> None:
    hostile = "\x1b]52;c;aGk=\x07\x1b]0;title\x1b\\plain\x1b[2J"
    assert strip_ansi(hostile) == "plain"
    record = parse_human("\x1b[31m[evil] ESCMARK\x1b]0;pwned\x07 done\x1b[0m", source="stdout", received=1.0)
    assert (record.subsystem, record.message) == ("evil", "ESCMARK done")
    assert record.raw.startswith("\x1b[31m[evil]")


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
