"""The sandbox's event history: what happened to it, kept on disk across backend restarts.

The manager records an event for each change of state (with its reason), each notice (an OOM
kill, a failed rebuild) and each memory warning, whether or not a console is watching. The file
is ``<sandbox dir>/events.jsonl``, one JSON object a line, appended as events happen; once it
holds twice ``keep`` events, the newest ``keep`` are written to a temporary file, synced, and
renamed over it, so it stays bounded. A crash mid-append can leave at most a torn last line:
loading skips lines that do not parse and rewrites the file without them, so what is read back
is always whole events. Seq numbers go on from the file's last one.

No asyncio here: the manager calls ``append`` on its loop (an event is a few hundred bytes,
and there are a few an hour), and the API reads ``last`` in the same loop turn in which it
subscribes to new ones, so a client sees the history then the live events without a gap or a
duplicate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import deque
from pathlib import Path

from moltconsole_shared.wire.events import EventFormatError, EventKind, EventLevel, SandboxEvent

log = logging.getLogger(__name__)

KEEP = 1000  # events kept; the file holds at most twice as many before it is compacted
MESSAGE_MAX = 2000  # characters of one event's message (reasons quote a log line)


class EventHistory:
    """The last ``keep`` events in memory, mirrored to an append-only file."""

    def __init__(self, path: Path, keep: int = KEEP) -> None:
        self.path = path
        self.keep = keep
        self._events: deque[SandboxEvent] = deque(maxlen=keep)
        self._lines_in_file = 0
        self._next_seq = 1
        self._load()

    # --- reading ---------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read the event history %s: %s; starting a new one", self.path, exc)
            return
        events: list[SandboxEvent] = []
        torn = 0
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                events.append(SandboxEvent.from_json(json.loads(line)))
            except (ValueError, EventFormatError):
                torn += 1  # a write cut short by a crash, or a line from a broken disk
        self._events.extend(events)
        self._lines_in_file = len(events) + torn
        if events:
            self._next_seq = max(e.seq for e in events) + 1
        if torn or (raw and not raw.endswith(b"\n")):
            # Rewritten at once, so the next append starts on a line of its own.
            log.warning("the event history %s ended in a torn write or had %d unreadable line(s); "
                        "rewriting it with the %d whole events", self.path, torn, len(events))
            self._compact()

    def last(self, count: int | None = None) -> list[SandboxEvent]:
        """The newest ``count`` events (all kept ones without a count), oldest first."""
        events = list(self._events)
        return events if count is None else events[-count:] if count > 0 else []

    @property
    def latest(self) -> SandboxEvent | None:
        """The newest event, if any."""
        return self._events[-1] if self._events else None

    def latest_state(self) -> SandboxEvent | None:
        """The newest event of kind ``state``, if any is kept."""
        for event in reversed(self._events):
            if event.kind == "state":
                return event
        return None

    # --- writing ---------------------------------------------------------------------------
    def append(
        self, kind: EventKind, message: str, *, now: float, level: EventLevel = "info",
        state: str | None = None,
    ) -> SandboxEvent:
        """Record an event (in memory at once; on disk unless the disk refuses, which is logged)."""
        if len(message) > MESSAGE_MAX:
            message = message[: MESSAGE_MAX - 1] + "…"
        event = SandboxEvent(self._next_seq, now, kind, level, message, state)
        self._next_seq += 1
        self._events.append(event)
        line = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write of a whole line with O_APPEND: a crash leaves it whole or torn at the
            # end, never interleaved, and a torn line is dropped when the file is next loaded.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                data = line.encode()
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write of {len(data)} bytes")
            finally:
                os.close(fd)
            self._lines_in_file += 1
        except OSError as exc:
            log.warning("cannot record a sandbox event in %s: %s", self.path, exc)
        if self._lines_in_file >= 2 * self.keep:
            self._compact()
        return event

    def _compact(self) -> None:
        """Replace the file with the kept events: temporary file, fsync, rename."""
        tmp = self.path.with_suffix(".tmp")
        data = "".join(
            json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in self._events
        ).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            self._lines_in_file = len(self._events)
        except OSError as exc:
            log.warning("cannot compact the event history %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
