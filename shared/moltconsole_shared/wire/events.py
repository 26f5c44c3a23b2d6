"""What ``/v1/events`` says about the sandbox's history: one schema for the backend, which records
the events, and the console, which shows them.

With ``?history=N`` the stream's first message is ``{"type": "history", "events": [...]}`` (the
newest N events, oldest first); every event recorded after it arrives as ``{"type": "event",
"event": {...}}``. The backend takes the history and subscribes in one step, so nothing falls
between the two and nothing comes twice. ``seq`` orders events and goes on across backend
restarts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

EventKind = Literal["state", "notice", "memory"]
EventLevel = Literal["info", "warning", "error"]
KINDS: tuple[EventKind, ...] = ("state", "notice", "memory")
LEVELS: tuple[EventLevel, ...] = ("info", "warning", "error")


class EventFormatError(ValueError):
    """A document that is not a sandbox event."""


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """One thing that happened to the sandbox.

    ``kind`` is ``state`` (``state`` holds the new state, ``message`` its reason), ``notice``
    (a message from the backend, such as an OOM kill) or ``memory`` (the working set crossed the
    warning threshold, or fell back below it). ``time`` is the epoch second it happened.
    """

    seq: int
    time: float
    kind: EventKind
    level: EventLevel
    message: str
    state: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> SandboxEvent:
        """Read the wire form; EventFormatError says what is wrong with a bad one."""
        if not isinstance(data, dict):
            raise EventFormatError(f"an event is a JSON object, not {type(data).__name__}")
        kind = data.get("kind")
        level = data.get("level")
        if kind not in KINDS:
            raise EventFormatError(f"unknown event kind {kind!r}")
        if level not in LEVELS:
            raise EventFormatError(f"unknown event level {level!r}")
        try:
            seq = int(data["seq"])
            when = float(data["time"])
        except (KeyError, TypeError, ValueError):
            raise EventFormatError("an event needs a whole seq and a time in epoch seconds") from None
        state = data.get("state")
        return cls(
            seq=seq,
            time=when,
            kind=kind,
            level=level,
            message=str(data.get("message") or ""),
            state=str(state) if state is not None else None,
        )

    def describe(self) -> str:
        """One line for people: ``crashed: the gateway exited with code 137; ...``."""
        if self.kind == "state":
            return f"{self.state}: {self.message}" if self.message else str(self.state)
        return self.message
