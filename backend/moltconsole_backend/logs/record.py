"""One parsed log line, and the parsers for the shapes OpenClaw produces.

The log file carries tslog JSON objects (``{"0": "{\\"subsystem\\":\\"gateway\\"}", "1": "...",
"_meta": {"logLevelName": "INFO", ...}, "time": "...", "message": "..."}``) with a level each.

The container's stdout/stderr carry OpenClaw's console lines, ``2026-11-25T12:38:02.764+00:00
[gateway] loading configuration…``: no level word at all. What the level is comes from, in this
order (measured against the log file's levels for the same lines, OpenClaw 2026.9.6):

1. ``logging.consoleStyle: "json"``: each line is a JSON object with its ``level``.
2. Colours (only with ``FORCE_COLOR`` or a terminal): the message after the ``[subsystem]`` tag
   is cyan for info, yellow for warn, red for error and fatal, grey for debug and trace.
3. A level the text states at the start of its message: ``FATAL ERROR:`` (V8), ``TypeError:``,
   ``ERROR``, ``[WARN  tini (7)]``, ``(node:7) DeprecationWarning:``, ``moltconsole-entrypoint:``.
4. The stream. OpenClaw writes warn, error and fatal to stderr and everything else to stdout,
   so an otherwise silent stderr line is "warn" and a stdout line "info". Errors on stderr
   look like warnings without colours, and debug lines (``--verbose``,
   ``OPENCLAW_LOG_LEVEL=debug``) like info: both mistakes show a line under a level floor
   rather than hide it. The container's other writers (the entrypoint, Node, tini) also print
   problems, and little else, to stderr.

So every console line gets a level; only a file line that is not JSON has none. Parsed fields
have ANSI sequences stripped; ``raw`` is kept verbatim (cut to the size limit) and made inert
only when displayed.
"""

from __future__ import annotations

import calendar
import json
import re
from datetime import datetime
from typing import Any

# The record, its levels and sources are the wire's, shared with the console.
from moltconsole_shared.wire.logs import LEVELS as LEVELS
from moltconsole_shared.wire.logs import SOURCES as SOURCES
from moltconsole_shared.wire.logs import LogRecord

Record = LogRecord
_LEVEL_ALIASES = {
    "silly": "trace",
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
    "fatal": "fatal",
    "critical": "fatal",
}
# CSI (colours, cursor moves), OSC (titles, clipboard; ended by BEL or ST) and 2-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# A tag starts with a letter and ends before a space: "[8:0x99d3000]" (V8's GC trace) and
# "[eval]:1" (Node's crash report) are not subsystems.
_HUMAN = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)?\s*"
    r"(?:\[(?P<subsystem>[A-Za-z][^\]\s]{0,63})\](?=\s|$)\s?)?(?P<message>.*)",
    re.DOTALL,
)
# OpenClaw's coloured console line: optional grey time, coloured "[subsystem]", then the message
# opened by its level's colour (chalk's basic codes, the same at every colour depth).
_COLOURED = re.compile(r"(?:\x1b\[90m[^\x1b]*\x1b\[39m )?\x1b\[\d+m\[[^\]\x1b]*\]\x1b\[39m \x1b\[(\d+)m")
_COLOUR_LEVELS = {"36": "info", "33": "warn", "31": "error", "90": "debug"}
# A level stated where the message starts, in the forms the container's programs use. Each
# alternative names its level; lower-case words count only with a colon.
_STATED = re.compile(
    r"(?P<fatal>FATAL\b)"  # V8 "FATAL ERROR: Reached heap limit", "[openclaw] FATAL ..."
    r"|(?P<error>(?:[A-Z]+ )*ERROR\b|error:|(?:[A-Z][A-Za-z]*)?Error(?: \[\w+\])?: "
    r"|Uncaught |Unhandled (?:promise )?rejection|moltconsole-entrypoint: )"
    r"|(?P<warn>WARN(?:ING)?\b|warn(?:ing)?:|\(node:\d+\) (?:\[\w+\] )?\w*Warning: )"
    r"|(?P<info>INFO\b)|(?P<debug>DEBUG\b)|(?P<trace>TRACE\b)"
    r"|\[(?P<tagged>TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b[^\]]{0,40}\]"  # [WARN  tini (7)]
)
_STATED_GROUPS = ("fatal", "error", "warn", "info", "debug", "trace")
_STREAM_LEVELS = {"stderr": "warn", "stdout": "info"}
# pino and bunyan number their levels.
_NUMBERED_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}
_minute_cache: dict[str, float] = {}


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (the parsed fields are plain text)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def cut_line(line: bytes, limit: int) -> tuple[bytes, bool]:
    """``line`` shortened to ``limit`` bytes, and whether it was cut.

    Done before any decoding or regex: a multi-megabyte line must cost no more than a short
    one (Toolong #55). A UTF-8 sequence split by the cut decodes to U+FFFD.
    """
    if len(line) > limit:
        return line[:limit], True
    return line, False


def parse_time(text: str) -> float | None:
    """An ISO 8601 / RFC 3339 timestamp (nanoseconds allowed) as epoch seconds, or None."""
    # Fast path for the shapes Docker and OpenClaw write: the minute is cached, seconds parsed.
    if len(text) >= 20 and text[4] == "-" and text[10] == "T" and text[16] == ":":
        end = len(text)
        offset = 0.0
        if text[-1] == "Z":
            end -= 1
        elif text[-6] in "+-" and text[-3] == ":":
            sign = -1.0 if text[-6] == "+" else 1.0
            try:
                offset = sign * (int(text[-5:-3]) * 3600 + int(text[-2:]) * 60)
            except ValueError:
                return _slow_time(text)
            end -= 6
        minute = text[:16]
        base = _minute_cache.get(minute)
        if base is None:
            try:
                base = float(calendar.timegm(datetime.strptime(minute, "%Y-%m-%dT%H:%M").timetuple()))
            except ValueError:
                return _slow_time(text)
            if len(_minute_cache) > 10_000:
                _minute_cache.clear()
            _minute_cache[minute] = base
        try:
            return base + float(text[17:end]) + offset
        except ValueError:
            return _slow_time(text)
    return _slow_time(text)


def _slow_time(text: str) -> float | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return calendar.timegm(value.timetuple()) + value.microsecond / 1e6
    return value.timestamp()


def normalize_level(name: object) -> str:
    """One of LEVELS, or "" when the name is not a level we know."""
    return _LEVEL_ALIASES.get(str(name).strip().lower(), "") if name else ""


def parse_human(text: str, *, source: str, received: float, cut: bool = False) -> Record:
    """A line of the container's stdout/stderr. ``received`` is Docker's timestamp for it.

    The line's own timestamp is only stripped from the message: Docker's is always present
    and orders stdout and stderr consistently. See the module docstring for the level.
    """
    level = ""
    if "\x1b" in text:
        coloured = _COLOURED.match(text)
        if coloured is not None:
            level = _COLOUR_LEVELS.get(coloured.group(1), "")
        plain = _ANSI.sub("", text)
    else:
        plain = text
    if plain.startswith("{") and not cut:
        record = _parse_json_console(plain, raw=text, source=source, received=received)
        if record is not None:
            return record
    match = _HUMAN.match(plain)
    subsystem = ""
    message = plain
    if match is not None and (match.group("time") or match.group("subsystem")):
        subsystem = match.group("subsystem") or ""
        message = match.group("message")
        if subsystem.isupper() and normalize_level(subsystem):  # "[WARN] ..." is no subsystem
            level = level or normalize_level(subsystem)
            subsystem = ""
    if not level:
        level = stated_level(message) or _STREAM_LEVELS.get(source, "")
    return Record(
        time=received, level=level, subsystem=subsystem, message=message, source=source, raw=text, cut=cut
    )


def stated_level(message: str) -> str:
    """The level ``message`` states where it starts (``ERROR``, ``TypeError:``, ...), or "".

    Only the start counts: ``[model-fetch] error provider=...`` is a warning that mentions an
    error, and OpenClaw logs it as one.
    """
    found = _STATED.match(message)
    if found is None:
        return ""
    for name in _STATED_GROUPS:
        if found.group(name) is not None:
            return name
    return normalize_level(found.group("tagged"))


def _parse_json_console(text: str, *, raw: str, source: str, received: float) -> Record | None:
    """A line of OpenClaw's ``json`` console style (or another JSON logger's), else None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or "level" not in data:
        return None
    raw_level = data["level"]
    if isinstance(raw_level, int) and not isinstance(raw_level, bool):
        level = _NUMBERED_LEVELS.get(raw_level, "")
    else:
        level = normalize_level(raw_level)
    subsystem = data.get("subsystem") or data.get("module") or ""
    message = data.get("message", data.get("msg", ""))
    return Record(
        time=received,
        level=level or _STREAM_LEVELS.get(source, ""),
        subsystem=strip_ansi(subsystem if isinstance(subsystem, str) else str(subsystem)),
        message=strip_ansi(message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)),
        source=source,
        raw=raw,
    )


def parse_file_line(text: str, *, received: float, cut: bool = False) -> Record:
    """A line of OpenClaw's JSON log file; anything else is kept as an unparsed message."""
    data: Any = None
    if not cut and text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        return Record(
            time=received, level="", subsystem="", message=strip_ansi(text), source="file", raw=text, cut=cut
        )
    meta = data.get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    level = normalize_level(meta.get("logLevelName") or data.get("level"))
    when = None
    stamp = data.get("time") or meta.get("date")
    if isinstance(stamp, str):
        when = parse_time(stamp)
    return Record(
        time=when if when is not None else received,
        level=level,
        subsystem=strip_ansi(_subsystem(data, meta)),
        message=strip_ansi(_message(data)),
        source="file",
        raw=text,
        cut=cut,
    )


def _subsystem(data: dict[str, Any], meta: dict[str, Any]) -> str:
    # tslog's logger name is the JSON of the bindings: {"subsystem": "gateway"} or
    # {"module": "cron", ...}; a plain name is used as it is.
    for candidate in (meta.get("name"), data.get("0")):
        if isinstance(candidate, str) and candidate.startswith("{"):
            try:
                bindings = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(bindings, dict):
                name = bindings.get("subsystem") or bindings.get("module")
                if isinstance(name, str):
                    return name
    for key in ("subsystem", "module"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    name = meta.get("name")
    return name if isinstance(name, str) and name != "openclaw" else ""


def _message(data: dict[str, Any]) -> str:
    message = data.get("message") or data.get("msg")
    if isinstance(message, str):
        return message
    # No message field: the positional arguments after the bindings, as tslog printed them.
    parts = []
    for index in range(1, 10):
        value = data.get(str(index))
        if value is None:
            break
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return " ".join(parts)
