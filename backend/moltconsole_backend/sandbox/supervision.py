"""Supervision: what happens when the container dies, and the restarts that follow a crash.

A death is judged by ``SandboxLifecycle.on_exit`` (stopped on purpose, crashed, crash loop,
invalid config); the last line of the container's log becomes part of the reason. A crash
while the sandbox is wanted running schedules a restart after a backoff that doubles up to
``sandbox.restart_backoff_max``. Deaths reported late (an event older than the current run,
or of a container we no longer track) are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from moltconsole_backend.sandbox.errors import OperationError
from moltconsole_backend.sandbox.state import Desired, SandboxState, ScheduleRestart
from moltconsole_shared.untrusted import sanitize

if TYPE_CHECKING:
    from moltconsole_backend.sandbox.manager import SandboxManager

log = logging.getLogger(__name__)

LAST_LINE_MAX = 300


class Supervisor:
    """Handles the container's deaths and restarts it after a crash."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        self._restart: asyncio.Task[None] | None = None

    def is_stale_exit(self, container_id: str, when: float | None) -> bool:
        """Whether a death belongs to a container or a run that is no longer current."""
        status = self.manager.status
        if status.container_id not in (None, container_id):
            return True  # a container we no longer track
        # A death from before the current run started (its event arrived late).
        return when is not None and status.started_at is not None and when < status.started_at

    async def handle_exit(self, code: int | None, container_id: str, when: float | None) -> None:
        """The container ``container_id`` died with ``code`` at ``when`` (None: unknown)."""
        manager = self.manager
        if self.is_stale_exit(container_id, when):
            return
        last = ""
        if manager.status.desired == Desired.RUNNING:
            last = await self._last_log_line(container_id)
            if self.is_stale_exit(container_id, when):  # the user started it meanwhile
                return
        status, effect = manager.lifecycle.on_exit(code, time.time(), last)
        manager.publish(status)
        if isinstance(effect, ScheduleRestart):
            self._restart = manager.tasks.spawn(self._restart_later(effect.delay))

    def cancel_restart(self) -> None:
        """Forget a scheduled restart (the user took over)."""
        if self._restart is not None and not self._restart.done():
            self._restart.cancel()
        self._restart = None

    async def _last_log_line(self, container_id: str) -> str:
        try:
            engine = await self.manager.connection.get()
            raw = await self.manager.connection.call(engine.logs_tail, container_id, 5)
        except Exception:
            return ""
        lines = [ln for ln in raw.decode(errors="replace").splitlines() if ln.strip()]
        return sanitize(lines[-1])[:LAST_LINE_MAX] if lines else ""

    async def _restart_later(self, delay: float) -> None:
        manager = self.manager
        await asyncio.sleep(delay)
        if manager.status.state != SandboxState.CRASHED or manager.status.desired != Desired.RUNNING:
            return
        manager.publish(manager.lifecycle.on_restarting())
        try:
            async with manager.operation("restart the sandbox"):
                await manager.start_container()
        except OperationError as exc:
            now = manager.status  # not the one checked above: the restart has moved it on
            if now.state == SandboxState.ENGINE_DOWN:
                return  # picked up again when the engine is back
            manager.publish(manager.lifecycle.on_failed(str(exc)))

