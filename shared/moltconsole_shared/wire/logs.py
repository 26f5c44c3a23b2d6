"""The sandbox's log on the wire: one record, the query that asks for records, and the
messages of ``/v1/logs``.

The client sends one :class:`LogQuery` first and receives :class:`LogBatch` messages, one
``{"type": "caught_up"}`` once the history is sent, then (with ``follow``) live batches.

The fast path: the backend encodes each :class:`LogRecord` to JSON once (:meth:`LogRecord.encode`,
``seq`` first so the spool can read it cheaply) and builds a batch by joining the encoded
records, never decoding them again; the console decodes a whole batch at once. Both produce
and read exactly what :data:`LOG_STREAM` describes (a contract test holds them to it).

Every text field came from the sandbox: sanitize it before it reaches a terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.schema import WireSchema

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
# Where a record came from: the container's output streams, or OpenClaw's log file.
SOURCES = ("stdout", "stderr", "file")
# What a query (and ``source:NAME`` on the Logs screen) may name, and the record sources each
# covers. The backend keeps an event once (the file's record when OpenClaw wrote both), so
# "console" is what only the container's output had.
SOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "file": ("file",),
    "console": ("stdout", "stderr"),
    "stdout": ("stdout",),
    "stderr": ("stderr",),
}
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

Level = Literal["trace", "debug", "info", "warn", "error", "fatal", ""]  # "": the line named none
SourceName = Literal["file", "console", "stdout", "stderr"]
Count = Annotated[StrictInt, Field(ge=0)]


@dataclass(slots=True)
class LogRecord:
    """One log line. ``seq`` is 0 until the spool accepts the record and numbers it.

    ``level`` is one of LEVELS or "" (a file line that is not JSON); ``message`` and
    ``subsystem`` have ANSI sequences stripped; ``raw`` is the line as it came (cut to the size
    limit: ``cut``).
    """

    time: StrictFloat
    level: StrictStr
    subsystem: StrictStr
    message: StrictStr
    source: StrictStr
    raw: StrictStr
    cut: StrictBool = False
    seq: StrictInt = 0

    def to_json(self) -> dict[str, Any]:
        """The wire form, ``seq`` first."""
        return {
            "seq": self.seq,
            "time": self.time,
            "level": self.level,
            "subsystem": self.subsystem,
            "message": self.message,
            "source": self.source,
            "raw": self.raw,
            "cut": self.cut,
        }

    def encode(self) -> str:
        """The wire form as one JSON line (without newline), encoded once for the spool and
        every reader."""
        return _ENCODER.encode(self.to_json())

    @classmethod
    def from_json(cls, data: Any) -> LogRecord:
        """Read the wire form, checked (WireFormatError names the field)."""
        return LOG_RECORD.read(data)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """What a ``/v1/logs`` subscriber asks for (its first message).

    ``since_seq`` wins over ``since_time`` (epoch seconds); ``tail`` keeps the last N matching
    records of that range; neither means the whole history. ``grep`` is a regular expression
    matched against the message and the subsystem; ``levels`` and ``sources`` keep only those
    (None: all). ``follow`` goes on with live records after the history.
    """

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    tail: Count | None = None
    since_seq: Count | None = None
    since_time: StrictFloat | None = None
    follow: StrictBool = True
    grep: StrictStr | None = None
    levels: list[Level] | None = None
    sources: list[SourceName] | None = None


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Records in ``seq`` order. ``dropped`` counts records this reader missed (it fell behind,
    or the disk refused them: ``disk_full`` of them, 0 when the disk took everything)."""

    records: list[LogRecord]
    dropped: Count = 0
    disk_full: Count = 0
    type: Literal["batch"] = "batch"


@dataclass(frozen=True, slots=True)
class LogCaughtUp:
    """The history asked for is all sent; live records follow (with ``follow``)."""

    type: Literal["caught_up"] = "caught_up"


LogStreamMessage = Annotated[LogBatch | LogCaughtUp, Field(discriminator="type")]

LOG_RECORD: WireSchema[LogRecord] = WireSchema(LogRecord, "log record")
LOG_QUERY: WireSchema[LogQuery] = WireSchema(LogQuery, "log query")
LOG_STREAM: WireSchema[LogStreamMessage] = WireSchema(LogStreamMessage, "log stream message")  # type: ignore[arg-type]
