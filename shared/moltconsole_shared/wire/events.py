"""What ``/v1/events`` says about the sandbox's history: one schema for the backend, which records
the events, and the console, which shows them.

With ``?history=N`` the stream's first message is ``{"type": "history", "events": [...]}`` (the
newest N events, oldest first); every event recorded after it arrives as ``{"type": "event",
"event": {...}}``. The backend takes the history and subscribes in one step, so nothing falls
between the two and nothing comes twice. ``seq`` orders events and goes on across backend
restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.schema import WireFormatError, WireSchema

EventKind = Literal["state", "notice", "memory"]
EventLevel = Literal["info", "warning", "error"]
KINDS: tuple[EventKind, ...] = ("state", "notice", "memory")
LEVELS: tuple[EventLevel, ...] = ("info", "warning", "error")


class EventFormatError(WireFormatError):
    """A document that is not a sandbox event; the text names the field."""


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """One thing that happened to the sandbox.

    ``kind`` is ``state`` (``state`` holds the new state, ``message`` its reason), ``notice``
    (a message from the backend, such as an OOM kill) or ``memory`` (the working set crossed the
    warning threshold, or fell back below it). ``time`` is the epoch second it happened.
    """

    seq: StrictInt
    time: StrictFloat
    kind: EventKind
    level: EventLevel
    message: StrictStr = ""
    state: StrictStr | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        data: dict[str, Any] = SANDBOX_EVENT.dump(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> SandboxEvent:
        """Read the wire form; EventFormatError says what is wrong with a bad one."""
        try:
            return SANDBOX_EVENT.read(data)
        except WireFormatError as exc:
            raise EventFormatError(str(exc)) from None

    def describe(self) -> str:
        """One line for people: ``crashed: the gateway exited with code 137; ...``."""
        if self.kind == "state":
            return f"{self.state}: {self.message}" if self.message else str(self.state)
        return self.message


SANDBOX_EVENT: WireSchema[SandboxEvent] = WireSchema(SandboxEvent, "event")
