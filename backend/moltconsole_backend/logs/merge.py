"""Each event once, in time order: OpenClaw's console lines merged with its log file.

OpenClaw renders every log call twice: a JSON record in its log file (``FileTailer``) and a
line on the container's console (``ContainerLogReader``). The collector passes both sources
through one ``SourceMerger``; what leaves it goes to the spool, so the API, the CLI, the
console and history searches all see each event once. The file's record is the one kept: it
has the level, the structured fields and OpenClaw's own time.

How the two renderings of one event differ, read off the real OpenClaw 2026.9.6 image
(``tests/unit/fixtures/openclaw_logs/``):

* the console drops the ``gateway``/``channels``/``providers`` segments of the subsystem and
  keeps at most two (``gateway/heartbeat`` shows as ``[heartbeat]``, ``gateway/diagnostics/
  memory`` as ``[diagnostics/memory]``), then drops a mention of that tag where the message
  starts (the file's ``gateway ready`` is ``[gateway] ready``, ``heartbeat: disabled`` is
  ``[heartbeat] disabled``). So the console's own tag is stripped off the file's message the
  same way before comparing; nothing needs to know OpenClaw's list of segments.
* a warning or error may carry more on the console: its fields (``slow SQLite reclamation
  Worker operation`` is ``... operation pid=6 threadId=0 ...``) or a longer text (``embedded
  run agent end`` is ``embedded run agent end: runId=...``): the file's message followed by a
  space or a colon.
* the level decides the stream: warn, error and fatal are written to stderr, the rest to
  stdout (the console prints no level word).
* the time: Docker stamps the console line after the file's own time, 1-50 ms as a rule and
  up to 120 ms seen at start-up on a loaded machine (``WINDOW`` allows 2 s).
* ``console.log`` output OpenClaw captures has no tag, only its timestamp, and is a record of
  the root logger (no subsystem) in the file. A message of several lines is one record in the
  file and several console lines, of which only the first has the prefix. The file cuts
  messages at 4,096 characters with ``...(truncated)``.

A console line that carries OpenClaw's prefix (a timestamp, a ``[tag]`` or a JSON console
object) may have a twin; anything else (tini's warnings, a Node crash, the entrypoint, a
stack trace) has none and passes at once. A line that may have one looks among the recent
file records; if its twin is not there yet it waits for it, and goes on alone (never lost)
as soon as the file shows a record written after it (``FILE_ORDER_SLACK`` later: OpenClaw
queues the file record before it prints the console line, and writes its queue in order), or
after ``hold`` seconds at most. The file lags the console by 0.04-0.7 s when the gateway is
busy and by up to 2.4 s when its event loop is blocked (a slow SQLite transaction, measured
on 2 loaded cores), hence a generous ``hold`` that the file's progress usually cuts short.
Lines that follow a waiting line on the same stream without a prefix wait with it, as the
rest of a message of several lines.

Several events with the same text pair up oldest first, as both sources keep their order.
Order: whatever is ready leaves in time order, but never ahead of a waiting line with an
earlier time, so the merged stream is ordered within the wait. Memory is bounded: at most
``max_waiting`` lines wait (the oldest go on alone past that), at most ``max_ready`` are held
back for order, and recent file records are kept ``keep`` seconds, at most ``max_recent``.

Cursors: each batch comes with its source's cursor, which may only be saved once every line
of that batch and of the batches before it has left (written or recognised as a twin), or a
crash would skip lines that were still waiting. The merger hands each cursor on when that is
so. Not thread-safe: the collector calls it under its lock.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from moltconsole_backend.logs.record import Record, strip_ansi

HOLD = 3.0  # seconds a console line waits for its file twin at most (see above)
FILE_ORDER_SLACK = 0.25  # seconds: other processes (openclaw CLI runs) share the file
WINDOW = 2.0  # seconds between the two renderings' times that still make twins
KEEP = 10.0  # seconds a file record stays findable for a console line that comes later
MAX_WAITING = 10_000
MAX_READY = 50_000
MAX_RECENT = 10_000
MAX_SCAN = 64  # candidates looked at per lookup: a flood of look-alikes costs no more
CONTINUATION_GAP = 0.05  # seconds: a line of the same write arrives with its first line
MAX_CONTINUATION = 256
TRUNCATED = "...(truncated)"
_LOUD = frozenset(("warn", "error", "fatal"))  # written to stderr, and given extra fields


def prefixed(record: Record) -> bool:
    """Whether a console line carries OpenClaw's prefix, so a file record may be its twin.

    A ``[subsystem]`` tag, OpenClaw's ISO timestamp (possibly coloured) or a JSON console
    object. Cheap on purpose: every console line is asked.
    """
    if record.subsystem:
        return True
    raw = record.raw
    first = raw[:1]
    if first == "{":
        return True
    if first == "\x1b":
        raw = strip_ansi(raw[:64])
    return raw[4:5] == "-" and raw[10:11] == "T" and raw[:4].isdigit()


def strip_tag(message: str, tag: str) -> str:
    """``message`` without a leading mention of the console tag ``tag``, as OpenClaw's console
    prints it: ``[tag] rest``, ``tag: rest`` or ``tag rest`` (case-insensitive) become
    ``rest``; anything else is returned as it is."""
    if not tag:
        return message
    if message.startswith("["):
        close = message.find("]")
        if close > 1 and message[1:close].lower() == tag.lower():
            return message[close + 1 :].lstrip(" ")
    size = len(tag)
    if message[:size].lower() != tag.lower() or message[size : size + 1] not in (":", " "):
        return message
    rest = message[size:].lstrip(" ")
    if rest.startswith(":"):
        rest = rest[1:]
    return rest.lstrip(" ")


def tag_fits(tag: str, subsystem: str) -> bool:
    """Whether the console tag ``tag`` can be how ``subsystem`` is shown: the same, or a run
    of its segments (``heartbeat`` in ``gateway/heartbeat``). A file record without a
    subsystem (the root logger, captured ``console.log``) fits any tag its text starts with."""
    if not subsystem or tag == subsystem:
        return True
    if not tag:
        return False
    return f"/{tag}/" in f"/{subsystem}/"


def _word(text: str) -> str:
    """The lookup key: the first word, lower-cased, without a trailing colon."""
    for word in text.split(None, 1):
        return word[:64].rstrip(":").lower()
    return ""


def _file_keys(message: str) -> tuple[str, ...]:
    # The console's text starts with the file message's first word, or with its second when
    # the console dropped a tag mention ("gateway ready" -> "ready").
    words = message.partition("\n")[0].split(None, 2)
    keys = tuple(dict.fromkeys(w[:64].rstrip(":").lower() for w in words[:2]))
    if words and words[0].startswith("[") and "]" in words[0][:-1]:
        # "[tag]rest": the tag and what follows it are one word.
        keys += (_word(words[0][words[0].index("]") + 1 :]),)
    return keys or ("",)


def _same_text(head: str, text: str, *, loud: bool, cut: bool) -> bool:
    if head == text:
        return True
    if not text:
        return False
    if text.endswith(TRUNCATED) and head.startswith(text[: -len(TRUNCATED)]):
        return True
    if loud and head.startswith(text) and head[len(text) : len(text) + 1] in (" ", ":"):
        return True
    return cut and text.startswith(head)


def twins(file: Record, console: Record, window: float = WINDOW) -> bool:
    """Whether ``console`` is OpenClaw's console rendering of the file record ``file``.

    Only the first line of a file message is compared: the console prints the rest as lines
    of their own.
    """
    if abs(console.time - file.time) > window:
        return False
    loud = file.level in _LOUD
    if console.source in ("stdout", "stderr") and console.source != ("stderr" if loud else "stdout"):
        return False
    tag = console.subsystem
    if not tag_fits(tag, file.subsystem):
        return False
    first = file.message.partition("\n")[0]
    head = console.message
    if _same_text(head, first, loud=loud, cut=console.cut):
        return True
    stripped = strip_tag(first, tag)
    return stripped is not first and _same_text(head, stripped, loud=loud, cut=console.cut)


@dataclass(slots=True, eq=False)
class _Ticket:
    """One source batch: its cursor may be handed on once none of its lines is held."""

    cursor: dict[str, Any]
    held: int


@dataclass(slots=True, eq=False)
class _Waiting:
    """A console line waiting for its file twin, with the unprefixed lines that followed it."""

    record: Record
    ticket: _Ticket
    deadline: float
    key: str
    rest: list[tuple[Record, _Ticket]] = field(default_factory=list)
    last_time: float = 0.0
    settled: bool = False


@dataclass(slots=True, eq=False)
class _Recent:
    """A file record a console line arriving later may still be the twin of."""

    record: Record
    arrived: float
    keys: tuple[str, ...]
    used: bool = False


@dataclass(slots=True, eq=False)
class _Expected:
    """The remaining lines of a matched multi-line message, still to come on one stream."""

    lines: deque[str]
    until: float


class SourceMerger:
    """Merges console and file records: each event once, ordered within the wait.

    ``add`` takes a source's batch, ``release`` what is due by the clock, ``drain``
    everything (at stop). Each returns the records to keep, oldest first, and the cursors that
    may now be saved. Times passed in are ``time.monotonic()`` values.
    """

    def __init__(
        self,
        *,
        hold: float = HOLD,
        window: float = WINDOW,
        keep: float = KEEP,
        max_waiting: int = MAX_WAITING,
        max_ready: int = MAX_READY,
        max_recent: int = MAX_RECENT,
    ) -> None:
        self.hold = hold
        self.window = window
        self.keep = keep
        self.max_waiting = max_waiting
        self.max_ready = max_ready
        self.max_recent = max_recent
        self.twins_dropped = 0  # console lines recognised as a file record's twin
        self._order = itertools.count()
        self._tickets: dict[str, deque[_Ticket]] = {}
        self._waiting: deque[_Waiting] = deque()  # by arrival, so by deadline
        self._waiting_count = 0
        self._waiting_by_key: dict[str, list[_Waiting]] = defaultdict(list)
        self._waiting_times: list[tuple[float, int, _Waiting]] = []  # heap: earliest waiting time
        self._open: dict[str, _Waiting] = {}  # stream -> the entry its next bare line joins
        self._expected: dict[str, _Expected] = {}
        # Records that may leave once nothing earlier waits: appended, sorted by time only when
        # one arrived out of order (a heap costs several times more per line at 50,000/s).
        self._ready: list[tuple[Record, _Ticket]] = []
        self._ready_sorted = True
        self._ready_latest = float("-inf")
        self._file_latest = float("-inf")  # the newest time the log file has shown
        self._recent: deque[_Recent] = deque()
        self._recent_by_key: dict[str, list[_Recent]] = defaultdict(list)

    @property
    def pending(self) -> int:
        """Records held now (waiting for a twin, or for an earlier one to leave)."""
        held = sum(1 + len(entry.rest) for entry in self._waiting if not entry.settled)
        return held + len(self._ready)

    def next_deadline(self) -> float | None:
        """When the next waiting line gives up on its twin (monotonic), or None."""
        self._drop_settled_front()
        return self._waiting[0].deadline if self._waiting else None

    # --- input -----------------------------------------------------------------------------
    def add(
        self, records: list[Record], cursor: dict[str, Any], now: float
    ) -> tuple[list[Record], dict[str, Any]]:
        """Take a batch from one source; return what may be kept now and the cursors to save."""
        idle = not (self._waiting or self._ready or self._expected or self._tickets)
        if idle and not any(record.source == "file" or prefixed(record) for record in records):
            return records, cursor  # the fast path: nothing held, and no line that may have a twin
        ticket = _Ticket(cursor, len(records))
        if cursor:
            self._tickets.setdefault(",".join(sorted(cursor)), deque()).append(ticket)
        self._forget_recent(now)
        for record in records:
            if record.source == "file":
                self._add_file(record, ticket, now)
            else:
                self._add_console(record, ticket, now)
        return self._release(now, force=False)

    def release(self, now: float) -> tuple[list[Record], dict[str, Any]]:
        """What is due by ``now``: lines that waited long enough, and what they held back."""
        return self._release(now, force=False)

    def drain(self) -> tuple[list[Record], dict[str, Any]]:
        """Everything held, in time order (the sources have stopped)."""
        return self._release(float("inf"), force=True)

    def _add_file(self, record: Record, ticket: _Ticket, now: float) -> None:
        if record.time > self._file_latest:
            self._file_latest = record.time
        keys = _file_keys(record.message)
        twin: _Waiting | None = None
        for key in keys:
            for entry in itertools.islice(self._waiting_by_key.get(key, ()), MAX_SCAN):
                if twins(record, entry.record, self.window) and (
                    twin is None or entry.deadline < twin.deadline
                ):
                    twin = entry
                    break
        if twin is not None:
            self._settle_twin(twin, record, now)
        else:
            recent = _Recent(record, now, keys)
            self._recent.append(recent)
            for key in keys:
                same = self._recent_by_key[key]
                same.append(recent)
                if len(same) > MAX_SCAN:
                    self._forget(same[0])
            while len(self._recent) > self.max_recent:
                self._forget(self._recent.popleft())
        self._push_ready(record, ticket)

    def _add_console(self, record: Record, ticket: _Ticket, now: float) -> None:
        stream = record.source
        if not prefixed(record):
            expected = self._expected.get(stream)
            if expected is not None:
                if expected.until >= now and expected.lines and expected.lines[0] == record.message:
                    expected.lines.popleft()
                    if not expected.lines:
                        del self._expected[stream]
                    self._dropped(ticket)
                    return
                del self._expected[stream]
            entry = self._open.get(stream)
            if (
                entry is not None
                and not entry.settled
                and record.time - entry.last_time <= CONTINUATION_GAP
                and len(entry.rest) < MAX_CONTINUATION
            ):
                entry.rest.append((record, ticket))
                entry.last_time = record.time
                return
            self._open.pop(stream, None)
            self._push_ready(record, ticket)
            return
        self._expected.pop(stream, None)
        key = _word(record.message)
        twin = self._find_recent(record, key)
        if twin is not None:
            self._forget(twin)
            self._dropped(ticket)
            self._open.pop(stream, None)
            self._expect(stream, twin.record.message.split("\n")[1:], now)
            return
        entry = _Waiting(record, ticket, now + self.hold, key, last_time=record.time)
        self._waiting.append(entry)
        self._waiting_count += 1
        same = self._waiting_by_key[key]
        same.append(entry)
        if len(same) > MAX_SCAN:  # look-alikes nothing matched: they go on alone
            self._give_up(same[0])
        heapq.heappush(self._waiting_times, (record.time, next(self._order), entry))
        self._open[stream] = entry
        if self._waiting_count > self.max_waiting:
            self._give_up_oldest()

    def _find_recent(self, console: Record, key: str) -> _Recent | None:
        """The oldest recent file record ``console`` is the twin of, if any."""
        for recent in itertools.islice(self._recent_by_key.get(key, ()), MAX_SCAN):
            if twins(recent.record, console, self.window):
                return recent
        return None

    def _settle_twin(self, entry: _Waiting, file: Record, now: float) -> None:
        """``entry``'s console line is ``file``'s twin: drop it and the lines of the same
        message that followed it; anything else that followed goes on."""
        self._unwait(entry)
        self._dropped(entry.ticket)
        lines = file.message.split("\n")[1:]
        rest = entry.rest
        matched = 0
        while matched < len(rest) and matched < len(lines) and rest[matched][0].message == lines[matched]:
            self._dropped(rest[matched][1])
            matched += 1
        for record, ticket in rest[matched:]:
            self._push_ready(record, ticket)
        stream = entry.record.source
        if self._open.get(stream) is entry:
            del self._open[stream]
            if matched == len(rest):  # the rest of the message may still be on its way
                self._expect(stream, lines[matched:], now)

    def _expect(self, stream: str, lines: list[str], now: float) -> None:
        if lines:
            self._expected[stream] = _Expected(deque(lines), now + self.hold)

    # --- output ----------------------------------------------------------------------------
    def _release(self, now: float, *, force: bool) -> tuple[list[Record], dict[str, Any]]:
        for stream in [s for s, expected in self._expected.items() if expected.until < now]:
            del self._expected[stream]
        waiting = self._waiting
        while waiting and (waiting[0].settled or waiting[0].deadline <= now):
            entry = waiting.popleft()
            if not entry.settled:
                self._give_up(entry)
        floor = float("inf")
        times = self._waiting_times
        while times and (times[0][2].settled or times[0][0] + FILE_ORDER_SLACK < self._file_latest):
            _, _, entry = heapq.heappop(times)
            if not entry.settled:
                self._give_up(entry)  # the file went past it without its twin: it has none
        if times and not force and len(self._ready) <= self.max_ready:
            floor = times[0][0]
        ready = self._ready
        if not ready:
            return [], self._cursors()
        if not self._ready_sorted:
            ready.sort(key=_time_of)
            self._ready_sorted = True
        count = len(ready) if floor == float("inf") else bisect.bisect_right(ready, floor, key=_time_of)
        taken = ready[:count]
        del ready[:count]
        self._ready_latest = ready[-1][0].time if ready else float("-inf")
        out: list[Record] = []
        for record, ticket in taken:
            ticket.held -= 1
            out.append(record)
        return out, self._cursors()

    def _cursors(self) -> dict[str, Any]:
        saved: dict[str, Any] = {}
        for key in list(self._tickets):
            queue = self._tickets[key]
            while queue and queue[0].held <= 0:
                saved.update(queue.popleft().cursor)
            if not queue:
                del self._tickets[key]
        return saved

    def _push_ready(self, record: Record, ticket: _Ticket) -> None:
        if record.time < self._ready_latest:
            self._ready_sorted = False
        else:
            self._ready_latest = record.time
        self._ready.append((record, ticket))

    def _dropped(self, ticket: _Ticket) -> None:
        ticket.held -= 1
        self.twins_dropped += 1

    def _give_up(self, entry: _Waiting) -> None:
        """No twin came in time: the line and those that followed it go on alone."""
        self._unwait(entry)
        self._push_ready(entry.record, entry.ticket)
        for record, ticket in entry.rest:
            self._push_ready(record, ticket)
        if self._open.get(entry.record.source) is entry:
            del self._open[entry.record.source]

    def _give_up_oldest(self) -> None:
        while self._waiting and self._waiting_count > self.max_waiting:
            entry = self._waiting.popleft()
            if not entry.settled:
                self._give_up(entry)

    def _unwait(self, entry: _Waiting) -> None:
        entry.settled = True
        self._waiting_count -= 1
        same = self._waiting_by_key.get(entry.key)
        if same is not None:
            same.remove(entry)
            if not same:
                del self._waiting_by_key[entry.key]

    def _drop_settled_front(self) -> None:
        while self._waiting and self._waiting[0].settled:
            self._waiting.popleft()

    def _forget_recent(self, now: float) -> None:
        recent = self._recent
        while recent and recent[0].arrived + self.keep < now:
            self._forget(recent.popleft())

    def _forget(self, recent: _Recent) -> None:
        """No console line may take ``recent`` any more (matched, too old, or crowded out)."""
        if recent.used:
            return
        recent.used = True
        for key in recent.keys:
            same = self._recent_by_key.get(key)
            if same is not None:
                same.remove(recent)
                if not same:
                    del self._recent_by_key[key]


def _time_of(item: tuple[Record, _Ticket]) -> float:
    return item[0].time

