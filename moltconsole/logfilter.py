"""What the Logs screen shows: log records, filters, search and time windows (no Textual here).

Everything a record carries that the agent produced (message, raw line, subsystem) is passed
through :func:`moltconsole_shared.untrusted.sanitize` when the record is built, so nothing downstream can
forget to. Lines are cut to :data:`MATCH_LIMIT` characters before any regex runs on them: a
pathological pattern over a 16 KiB line must not freeze the console (Toolong #55).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from moltconsole.widgets.cells import terminal_safe
from moltconsole_shared.durations import parse_duration
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.logs import LEVELS, SOURCE_NAMES

T = TypeVar("T")

# Longer bodies are cut to this many characters for filtering, search and the one-line view;
# the detail view still shows the whole line.
MATCH_LIMIT = 2000

_LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}
# Spellings other loggers use for the same levels.
_LEVEL_ALIASES = {"warning": "warn", "err": "error", "critical": "fatal", "crit": "fatal"}

# The level floors the screen cycles through: None shows every line, including unlevelled ones.
LEVEL_FLOORS: tuple[str | None, ...] = (None, "debug", "info", "warn", "error")

# What ``source:NAME`` accepts, and the record sources each name covers (the query's names:
# "console" is what only the container's output had: tini, Node, a crash, anything before the
# log file opened).
SOURCES = SOURCE_NAMES

# Time windows as (label, seconds); None is "all".
TIME_WINDOWS: tuple[tuple[str, float | None], ...] = (
    ("all", None), *((label, parse_duration(label)) for label in ("1m", "5m", "15m", "1h")),
)


@dataclass(frozen=True, slots=True, eq=False)
class LogRecord:
    """One parsed log line, already made inert; ``body`` (the message, cut) is what is matched.

    The fields are the wire record's (``moltconsole_shared.wire.logs.LogRecord``), made inert
    by :meth:`from_wire`; this view adds ``body`` and compares by identity.

    ``eq=False`` keeps identity hashing: records are cache keys in the view, and hashing every
    field of a 16 KiB line on each lookup would be wasted work.
    """

    seq: int
    time: float
    level: str
    subsystem: str
    message: str
    source: str
    raw: str
    cut: bool
    body: str = field(init=False)

    def __post_init__(self) -> None:
        # Filters and search look at the message only, so ^ anchors where the message starts;
        # subsystems have their own filter (sub:NAME). Tabs would make cell widths depend on
        # the column a line starts in; spaces do not.
        object.__setattr__(self, "body", terminal_safe(self.message[:MATCH_LIMIT]).expandtabs(4))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> LogRecord:
        """A record from the backend's JSON, sanitised; missing or odd fields get safe defaults."""
        level = str(data.get("level") or "").lower()
        level = _LEVEL_ALIASES.get(level, level)
        if level not in _LEVEL_RANK:
            level = ""
        message = sanitize(str(data.get("message") or ""))
        raw = data.get("raw")
        try:
            time = float(data.get("time") or 0.0)
            seq = int(data.get("seq") or 0)
        except (TypeError, ValueError):
            time, seq = 0.0, 0
        return cls(
            seq=seq,
            time=time,
            level=level,
            subsystem=sanitize(str(data.get("subsystem") or "")),
            message=message,
            source=sanitize(str(data.get("source") or "")),
            raw=sanitize(str(raw)) if raw is not None else message,
            cut=bool(data.get("cut")),
        )

    def plain(self) -> str:
        """The line as text for the clipboard: UTC time, level, subsystem, message."""
        parts = [format_time(self.time, full=True), (self.level or "-").upper()]
        if self.subsystem:
            parts.append(self.subsystem)
        parts.append(self.message)
        return " ".join(parts)


def format_time(epoch: float, *, full: bool = False) -> str:
    """``HH:MM:SS.mmm`` in UTC (``full`` adds the date), so the screen is the same on every host."""
    moment = datetime.fromtimestamp(epoch, UTC)
    millis = f"{moment.microsecond // 1000:03d}"
    if full:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + millis + "Z"
    return moment.strftime("%H:%M:%S.") + millis


def level_rank(level: str) -> int:
    """The level's place in :data:`LEVELS`; -1 for an unknown or missing level."""
    return _LEVEL_RANK.get(level, -1)


class PatternError(ValueError):
    """A search or filter pattern that cannot be used; the message is for the user."""


@dataclass(frozen=True, slots=True)
class TextPattern:
    """Plain text or ``/regex/``; case-insensitive unless the pattern has an upper-case letter.

    Smart case (as in less and ripgrep) saves a toggle: ``error`` finds ``ERROR``, ``Error``
    finds only ``Error``.
    """

    source: str
    regex: re.Pattern[str]
    is_regex: bool

    @classmethod
    def parse(cls, source: str) -> TextPattern | None:
        """None for an empty pattern; raises :class:`PatternError` for a bad regex."""
        if not source:
            return None
        is_regex = len(source) >= 2 and source.startswith("/") and source.endswith("/")
        expression = source[1:-1] if is_regex else re.escape(source)
        if is_regex and not expression:
            return None
        flags = 0 if any(ch.isupper() for ch in source) else re.IGNORECASE
        try:
            regex = re.compile(expression, flags)
        except re.error as exc:
            raise PatternError(f"bad regex {source}: {exc}") from None
        return cls(source, regex, is_regex)

    def search(self, text: str) -> bool:
        """Whether ``text`` (cut to :data:`MATCH_LIMIT`) contains a match."""
        return self.regex.search(text[:MATCH_LIMIT]) is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Start and end of each non-empty match in ``text`` (cut to :data:`MATCH_LIMIT`)."""
        return [m.span() for m in self.regex.finditer(text[:MATCH_LIMIT]) if m.end() > m.start()]

    def backend_regex(self) -> str:
        """The same pattern as one regular expression string, for the backend's ``grep``.

        The backend compiles ``grep`` without flags, so smart case travels as a leading
        ``(?i)`` (Python accepts further global flags of the user's right after it).
        """
        if self.regex.flags & re.IGNORECASE:
            return "(?i)" + self.regex.pattern
        return self.regex.pattern


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which records to show: text or regex, a level floor, subsystems, sources and a start
    time."""

    pattern: TextPattern | None = None
    subsystems: tuple[str, ...] = ()
    level_floor: str | None = None
    since: float | None = None
    sources: tuple[str, ...] = ()  # record sources (file, stdout, stderr); empty: all

    @classmethod
    def parse(
        cls, query: str, *, level_floor: str | None = None, since: float | None = None,
    ) -> LogFilter:
        """Build a filter from the query the user typed.

        ``sub:NAME`` words restrict the subsystem (any of them, substring, case-insensitive);
        ``source:file`` or ``source:console`` (or ``stdout``, ``stderr``) where a line came
        from; the rest of the query is the text or ``/regex/`` pattern. Raises
        :class:`PatternError`.
        """
        subsystems: list[str] = []
        sources: list[str] = []
        words: list[str] = []
        for word in query.split(" "):
            lowered = word.lower()
            if lowered.startswith(("sub:", "subsystem:")):
                name = word.split(":", 1)[1].lower()
                if name:
                    subsystems.append(name)
            elif lowered.startswith(("source:", "src:")):
                name = lowered.split(":", 1)[1]
                if name not in SOURCES:
                    if any(known.startswith(name) for known in SOURCES):
                        continue  # still being typed: no filter yet, and no error
                    raise PatternError(
                        f"{word} is not a log source: use source:file (OpenClaw's log file) or "
                        "source:console (the container's output: source:stdout, source:stderr)"
                    )
                sources.extend(s for s in SOURCES[name] if s not in sources)
            else:
                words.append(word)
        text = " ".join(words).strip()
        return cls(TextPattern.parse(text), tuple(subsystems), level_floor, since, tuple(sources))

    @property
    def active(self) -> bool:
        """Whether this filter hides anything at all."""
        return bool(
            self.pattern or self.subsystems or self.sources or self.level_floor or self.since is not None
        )

    @property
    def narrows(self) -> bool:
        """Whether it hides lines within its time window (a text, subsystem, source or level
        filter).

        Only such a filter needs its own search of the backend's history: the window alone
        is what the live stream already asks the backend for.
        """
        return bool(self.pattern or self.subsystems or self.sources or self.level_floor)

    def history_request(self) -> dict[str, Any]:
        """The ``BackendClient.logs`` arguments that ask the backend's history for these lines.

        The backend matches ``grep`` against the message *or* the subsystem and knows no
        subsystem filter of its own, so what it sends is a superset: the screen applies
        :meth:`matches` to every line it gets back. With both a text pattern and subsystems,
        the pattern is sent (messages are where the text is).
        """
        grep: str | None = None
        if self.pattern is not None:
            grep = self.pattern.backend_regex()
        elif self.subsystems:
            grep = "(?i)" + "|".join(re.escape(name) for name in self.subsystems)
        levels = None
        if self.level_floor is not None:
            floor = level_rank(self.level_floor)
            levels = [name for name in LEVELS if level_rank(name) >= floor]
        request: dict[str, Any] = {"grep": grep, "levels": levels, "since_time": self.since}
        if self.sources:
            request["sources"] = list(self.sources)
        return request

    def matches(self, record: LogRecord) -> bool:
        """Whether ``record`` passes; cheap checks run before the pattern."""
        if self.since is not None and record.time < self.since:
            return False
        if self.level_floor is not None and level_rank(record.level) < level_rank(self.level_floor):
            return False
        if self.sources and record.source not in self.sources:
            return False
        if self.subsystems:
            subsystem = record.subsystem.lower()
            if not any(name in subsystem for name in self.subsystems):
                return False
        return self.pattern is None or self.pattern.search(record.body)

    def apply(self, records: Iterable[LogRecord]) -> list[LogRecord]:
        """The records that pass, in order."""
        if not self.active:
            return list(records)
        return [record for record in records if self.matches(record)]


def find_match(
    records: Sequence[LogRecord], pattern: TextPattern, start: int, *, forward: bool = True,
) -> int | None:
    """Index of the next (or previous) record after ``start`` whose body matches; wraps around."""
    count = len(records)
    if count == 0:
        return None
    step = 1 if forward else -1
    for offset in range(1, count + 1):
        index = (start + step * offset) % count
        if pattern.search(records[index].body):
            return index
    return None


def count_matches(records: Iterable[LogRecord], pattern: TextPattern) -> int:
    """How many records' bodies match."""
    return sum(1 for record in records if pattern.search(record.body))


def window_start(label: str, now: float) -> float | None:
    """The epoch a time window starts at, or None for "all"."""
    for name, seconds in TIME_WINDOWS:
        if name == label:
            return None if seconds is None else now - seconds
    raise ValueError(f"unknown time window {label!r}")


def next_in_cycle(values: Sequence[T], current: T) -> T:
    """The value after ``current`` in ``values``, wrapping around."""
    return values[(values.index(current) + 1) % len(values)]
