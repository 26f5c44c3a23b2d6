"""One parsed log line, and the parsers for the two shapes OpenClaw produces.

The container's stdout/stderr carry human lines (``2026-11-25T12:38:02.764+00:00 [gateway]
loading configuration…``, sometimes ANSI-coloured); the log file carries tslog JSON objects
(``{"0": "{\\"subsystem\\":\\"gateway\\"}", "1": "...", "_meta": {"logLevelName": "INFO", ...},
"time": "...", "message": "..."}``). Parsed fields have ANSI sequences stripped; ``raw`` is kept
verbatim (cut to the size limit) and made inert only when displayed.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
SOURCES = ("stdout", "stderr", "file")
_LEVEL_ALIASES = {
    "silly": "trace", "trace": "trace", "debug": "debug", "info": "info", "warn": "warn",
    "warning": "warn", "error": "error", "err": "error", "fatal": "fatal", "critical": "fatal",
}
# CSI (colours, cursor moves), OSC (titles, clipboard; ended by BEL or ST) and 2-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_HUMAN = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)?\s*"
    r"(?:\[(?P<subsystem>[^\]\s]{1,64})\]\s?)?(?P<message>.*)",
    re.DOTALL,
)
_minute_cache: dict[str, float] = {}
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Record:
    """One log line. ``seq`` is 0 until the spool accepts the record and numbers it."""

    time: float
    level: str
    subsystem: str
    message: str
    source: str
    raw: str
    cut: bool = False
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        """The API's record shape."""
        return {
            "seq": self.seq, "time": self.time, "level": self.level, "subsystem": self.subsystem,
            "message": self.message, "source": self.source, "raw": self.raw, "cut": self.cut,
        }

    def encode(self) -> str:
        """One JSON line (without newline); ``seq`` first so the spool can read it cheaply."""
        return _ENCODER.encode(self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """The inverse of ``to_json``."""
        return cls(
            time=float(data["time"]), level=str(data["level"]), subsystem=str(data["subsystem"]),
            message=str(data["message"]), source=str(data["source"]), raw=str(data["raw"]),
            cut=bool(data["cut"]), seq=int(data["seq"]),
        )


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
    and orders stdout and stderr consistently.
    """
    plain = strip_ansi(text)
    match = _HUMAN.match(plain)
    subsystem = ""
    message = plain
    if match is not None and (match.group("time") or match.group("subsystem")):
        subsystem = match.group("subsystem") or ""
        message = match.group("message")
    return Record(time=received, level="", subsystem=subsystem, message=message, source=source,
                  raw=text, cut=cut)


def parse_file_line(text: str, *, received: float, cut: bool = False) -> Record:
    """A line of OpenClaw's JSON log file; anything else is kept as an unparsed message."""
    data: Any = None
    if not cut and text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        return Record(time=received, level="", subsystem="", message=strip_ansi(text),
                      source="file", raw=text, cut=cut)
    meta = data.get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    level = normalize_level(meta.get("logLevelName") or data.get("level"))
    when = None
    stamp = data.get("time") or meta.get("date")
    if isinstance(stamp, str):
        when = parse_time(stamp)
    return Record(
        time=when if when is not None else received, level=level,
        subsystem=strip_ansi(_subsystem(data, meta)), message=strip_ansi(_message(data)),
        source="file", raw=text, cut=cut,
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
