"""The sandbox on the wire: its state names, its status, its resource samples, and the messages
of ``/v1/events``, for the backend (which builds them) and the console (which reads them).

``/v1/status`` answers a :class:`SandboxStatus` (plus the ``gateway`` block of ``status.py``);
``/v1/stats`` sends a :class:`StatsSample` about once a second; ``/v1/events`` sends
:data:`EventStreamMessage` objects told apart by their ``type``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.events import SandboxEvent
from moltconsole_shared.wire.schema import WireSchema


class SandboxState(enum.StrEnum):
    """Where the sandbox is in its life."""

    UNKNOWN = "unknown"  # not looked at yet
    ENGINE_DOWN = "engine-down"  # the Docker engine cannot be reached
    ABSENT = "absent"  # no container
    BUILDING = "building"  # the image is being built
    STARTING = "starting"  # container running, gateway not ready yet
    READY = "ready"  # /readyz answers 200
    UNHEALTHY = "unhealthy"  # was ready, /readyz keeps failing
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on purpose
    CRASHED = "crashed"  # exited on its own; a restart is scheduled
    CRASH_LOOP = "crash-loop"  # crashed too often; not restarted until the user says so
    CONFIG_INVALID = "config-invalid"  # OpenClaw rejected its configuration (exit 78)
    FAILED = "failed"  # an operation failed (build, create, start); reason says why


# The states in which the container runs (its gateway up or coming up): uptime, stats and
# exec make sense only here.
RUNNING_STATES: frozenset[SandboxState] = frozenset(
    {SandboxState.STARTING, SandboxState.READY, SandboxState.UNHEALTHY}
)


class Desired(enum.StrEnum):
    """What the user asked for."""

    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SandboxStatus:
    """An immutable snapshot of the sandbox, as served by the API."""

    state: SandboxState = SandboxState.UNKNOWN
    reason: StrictStr = ""
    desired: Desired = Desired.STOPPED
    container_id: StrictStr | None = None
    image: StrictStr | None = None
    openclaw_version: StrictStr | None = None
    started_at: StrictFloat | None = None
    ready_at: StrictFloat | None = None
    restarts: StrictInt = 0
    last_exit_code: StrictInt | None = None
    restart_at: StrictFloat | None = None
    gateway_url: StrictStr | None = None
    model_gateway: StrictStr | None = None  # where the AI gateway listens for this sandbox's model calls
    state_dir: StrictStr | None = None
    memory_warning: StrictStr | None = None  # set while the working set is near the memory limit

    @property
    def running(self) -> bool:
        """The container runs (see RUNNING_STATES)."""
        return self.state in RUNNING_STATES

    def to_json(self) -> dict[str, Any]:
        """The wire form (state names as strings)."""
        data: dict[str, Any] = SANDBOX_STATUS.dump(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> SandboxStatus:
        """Read the wire form, checked (WireFormatError names the field); unknown keys are ignored."""
        return SANDBOX_STATUS.read(data)


@dataclass(frozen=True)
class StatsSample:
    """One resource sample: CPU as a percentage of one core (the Docker CLI's convention),
    memory in bytes.

    ``memory_bytes`` is the working set and ``memory_percent`` its share of ``memory_limit``;
    ``cache_bytes`` is the reclaimable page cache, not counted in either. ``time`` is the
    engine's timestamp of the reading (RFC 3339).
    """

    time: StrictStr
    cpu_percent: StrictFloat
    memory_bytes: StrictInt
    memory_limit: StrictInt
    memory_percent: StrictFloat
    pids: StrictInt
    cache_bytes: StrictInt = 0

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        data: dict[str, Any] = STATS_SAMPLE.dump(self)
        return data


# --- /v1/events ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StatusMessage:
    """The sandbox's status: the first message of every subscription, then each change."""

    status: SandboxStatus
    type: Literal["status"] = "status"


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """With ``?history=N``, the first message: the newest N recorded events, oldest first."""

    events: list[SandboxEvent]
    type: Literal["history"] = "history"


@dataclass(frozen=True, slots=True)
class EventMessage:
    """An event recorded after the subscription (see ``events.py``)."""

    event: SandboxEvent
    type: Literal["event"] = "event"


@dataclass(frozen=True, slots=True)
class NoticeMessage:
    """A message from the backend for whoever watches (a restart, an OOM kill)."""

    message: StrictStr
    type: Literal["notice"] = "notice"


@dataclass(frozen=True, slots=True)
class ProgressMessage:
    """A step of an image build under way."""

    step: StrictStr
    message: StrictStr
    type: Literal["progress"] = "progress"


EVENT_TYPES = ("status", "history", "event", "notice", "progress")
EventStreamMessage = Annotated[
    StatusMessage | HistoryMessage | EventMessage | NoticeMessage | ProgressMessage,
    Field(discriminator="type"),
]

SANDBOX_STATUS: WireSchema[SandboxStatus] = WireSchema(SandboxStatus, "status")
STATS_SAMPLE: WireSchema[StatsSample] = WireSchema(StatsSample, "stats sample")
EVENT_STREAM: WireSchema[EventStreamMessage] = WireSchema(EventStreamMessage, "event stream message")  # type: ignore[arg-type]
