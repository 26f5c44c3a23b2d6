"""The status hub: who is subscribed to the sandbox, what they are sent, and what is kept.

Subscribers (the API's event streams) each get a bounded queue of wire messages
(moltconsole_shared.wire.sandbox): a StatusMessage for every change of the status, an
EventMessage for every event kept in the history, a NoticeMessage for a message that is no
change of state, and a ProgressMessage for each image build step. A subscriber that falls behind loses its
oldest message rather than stalling the backend. Changes of state and memory warnings are
kept in the sandbox's ``EventHistory``; routine changes (a new failure count in the same
state) are sent but not kept. Waiters (``wait_for``) are woken by each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from moltconsole_backend.sandbox.history import EventHistory
from moltconsole_backend.sandbox.state import (
    MEMORY_ADVICE,
    MEMORY_CLEAR_PERCENT,
    SandboxState,
    SandboxStatus,
)
from moltconsole_shared.wire.events import EventKind, EventLevel, SandboxEvent
from moltconsole_shared.wire.sandbox import EVENT_STREAM, EventMessage, NoticeMessage, StatusMessage

log = logging.getLogger(__name__)

RUNNING_STATES = (SandboxState.STARTING, SandboxState.READY, SandboxState.UNHEALTHY)
# States whose reason changes while they last (a failure count): only entering them is news.
ROUTINE_REASONS = frozenset({SandboxState.STARTING, SandboxState.UNHEALTHY})
# How each state reads in the history: trouble stands out from routine.
STATE_LEVELS: dict[SandboxState, EventLevel] = {
    SandboxState.ENGINE_DOWN: "error",
    SandboxState.UNHEALTHY: "warning",
    SandboxState.CRASHED: "error",
    SandboxState.CRASH_LOOP: "error",
    SandboxState.CONFIG_INVALID: "error",
    SandboxState.FAILED: "error",
}


class StatusHub:
    """Sends each status change, event and notice to every subscriber, and keeps the history."""

    def __init__(self, history: EventHistory) -> None:
        self.history = history
        self.published = SandboxStatus()  # the status subscribers last heard of
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._waiters: list[tuple[Callable[[SandboxStatus], bool], asyncio.Future[SandboxStatus]]] = []
        # The state the history last recorded; a change from it is the next event.
        last = history.latest_state()
        self._recorded: tuple[str, str] | None = (str(last.state), last.message) if last else None

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every message from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to ``queue``."""
        self._subscribers.discard(queue)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every subscriber."""
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A stuck subscriber loses its oldest message rather than stalling the backend.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(message)

    def announce(self, status: SandboxStatus, *, record: bool = True) -> None:
        """``status`` replaces the published one: send it, keep what changed (unless
        ``record`` is False: no news), and wake the waiters it satisfies."""
        previous = self.published
        self.published = status
        self.broadcast(EVENT_STREAM.dump(StatusMessage(status)))
        if record:
            self._record_changes(previous, status)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(status):
                future.set_result(status)

    def _record_changes(self, previous: SandboxStatus, status: SandboxStatus) -> None:
        if status.state == previous.state and status.state in ROUTINE_REASONS:
            pass  # a new count in the same reason is no news
        elif status.state != SandboxState.UNKNOWN and (status.state.value, status.reason) != self._recorded:
            self._recorded = (status.state.value, status.reason)
            self.record("state", status.reason, STATE_LEVELS.get(status.state, "info"), status.state.value)
        if status.memory_warning and not previous.memory_warning:
            # The history keeps what happened; the advice is the alert's, while it lasts.
            self.record("memory", status.memory_warning.removesuffix(f" {MEMORY_ADVICE}"), "warning")
        elif previous.memory_warning and not status.memory_warning and status.state in RUNNING_STATES:
            self.record("memory", "memory: the sandbox is back under "
                        f"{MEMORY_CLEAR_PERCENT:.0f}% of its memory limit", "info")

    def record(
        self, kind: EventKind, message: str, level: EventLevel, state: str | None = None
    ) -> SandboxEvent:
        """Keep an event in the history, log it, and send it to subscribers."""
        event = self.history.append(kind, message, now=time.time(), level=level, state=state)
        log.log(logging.WARNING if level == "error" else logging.INFO, "sandbox %s", event.describe())
        self.broadcast(EVENT_STREAM.dump(EventMessage(event)))
        return event

    def notice(self, message: str, level: EventLevel = "warning") -> None:
        """A message that is not a change of state: kept, logged and sent."""
        self.record("notice", message, level)
        self.broadcast(EVENT_STREAM.dump(NoticeMessage(message)))

    async def wait_for(
        self,
        current: Callable[[], SandboxStatus],
        predicate: Callable[[SandboxStatus], bool],
        timeout: float | None = None,
    ) -> SandboxStatus:
        """Wait until the status satisfies ``predicate``; raise TimeoutError after ``timeout``."""
        if predicate(status := current()):
            return status
        future: asyncio.Future[SandboxStatus] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)
