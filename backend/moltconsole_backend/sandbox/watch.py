"""The engine watch: follows the engine's events for our container, and reconnects when the
engine comes back.

One loop for the manager's lifetime: connect, derive the status from what the engine says now
(``SandboxManager.resync``), then forward events from a thread of their own until the stream
ends. An ended stream means the engine went away (it restarted, or its socket is gone): the
state becomes ENGINE_DOWN and the loop tries again, backing off to one try in 10 s.
Events are handed to the loop and dispatched there: a start, a death (to supervision), a
removal, and an out-of-memory kill (a notice for the user).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from moltconsole_backend.sandbox import spec
from moltconsole_backend.sandbox.background import in_own_thread
from moltconsole_backend.sandbox.engine import (
    ContainerEngine,
    ContainerEvent,
    EngineError,
    EngineUnavailable,
    describe_engine_error,
    engine_address,
)
from moltconsole_backend.sandbox.errors import OperationError
from moltconsole_backend.sandbox.state import SandboxState

if TYPE_CHECKING:
    from moltconsole_backend.sandbox.manager import SandboxManager

log = logging.getLogger(__name__)

RECONNECT_MAX_DELAY = 10.0


class EngineWatch:
    """Follows the engine's events for one sandbox and keeps the manager in step with them."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        self._stream: Any = None
        self._closing = False

    async def run(self) -> None:
        """Watch until ``close``; never raises for anything the engine does."""
        manager = self.manager
        delay = 1.0
        while not self._closing:
            try:
                engine = await manager.connection.get()
                since = int(time.time())
                await manager.resync()
                delay = 1.0
                await in_own_thread(functools.partial(self._pump, engine, since))
            except OperationError:
                pass  # the engine is down, and the status already says so
            except EngineUnavailable as exc:
                manager.connection.lost(str(exc))
            except EngineError as exc:
                manager.connection.lost(describe_engine_error(engine_address(), exc))
            except Exception as exc:  # the watcher must survive anything the engine throws
                log.warning("event watcher: %s", exc)
                manager.connection.forget()
            if self._closing:
                return
            if manager.status.state != SandboxState.ENGINE_DOWN:
                manager.connection.lost(
                    f"lost the event stream from the Docker engine at {engine_address()}; reconnecting"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def close(self) -> None:
        """Stop watching: ends the event stream (its thread is blocked in it)."""
        self._closing = True
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:
                log.debug("closing the event stream: %s", exc)

    def _pump(self, engine: ContainerEngine, since: int) -> None:
        """Blocking: forward our container's events to the loop until the stream ends."""
        stream = engine.events(f"{spec.LABEL_SANDBOX}={self.manager.settings.sandbox.name}", since)
        self._stream = stream
        if self._closing:  # close() ran before the stream existed
            stream.close()
            return
        loop = self.manager.loop
        try:
            for event in stream:
                loop.call_soon_threadsafe(self._on_event, event)
        finally:
            self._stream = None

    def _on_event(self, event: ContainerEvent) -> None:
        manager = self.manager
        if event.name and event.name != manager.name:
            return
        log.debug("docker event %s %s", event.action, event.container_id[:12])
        if event.action == "start":
            manager.mark_started(event.container_id, time.time())
        elif event.action == "die":
            handling = manager.supervision.handle_exit(event.exit_code, event.container_id, event.time)
            manager.tasks.spawn(handling)
        elif event.action == "destroy":
            manager.on_removed()
        elif event.action == "oom":
            manager.notice(
                f"the sandbox reached its memory limit ({manager.settings.sandbox.memory_limit}) and the "
                "kernel killed a process in it. If this repeats, raise sandbox.memory_limit in "
                "config.toml, then destroy and start the sandbox (its state is kept).",
                "error",
            )
