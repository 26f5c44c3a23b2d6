"""The readiness probe: polls the gateway's /readyz while the container runs.

Quickly (``sandbox.readyz_interval``) until the gateway is ready, then at the health interval;
each answer goes to ``SandboxLifecycle.on_readyz``, which turns a run of failures into
UNHEALTHY. A gateway not ready ``sandbox.ready_timeout`` seconds after start is UNHEALTHY too,
with a reason that says where to look. Each probe is logged at debug only: it is routine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import httpx

from moltconsole_backend.sandbox.state import SandboxState

if TYPE_CHECKING:
    from moltconsole_backend.sandbox.manager import SandboxManager

log = logging.getLogger(__name__)


class ReadinessProbe:
    """One probe loop at a time, for the container running now."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        # A bare transport, not a client: httpx's client logs every request at info, and a
        # probe every few seconds is routine. No proxy either (trust_env does not apply to a
        # transport): the probe is for loopback.
        self._transport = httpx.AsyncHTTPTransport(retries=0)
        self._task: asyncio.Task[None] | None = None
        self._for = ""

    def follow(self, container_id: str) -> None:
        """Probe ``container_id`` (unless already probing it), in place of any earlier one."""
        if self._task is not None and not self._task.done():
            if self._for == container_id:
                return
            self._task.cancel()  # still probing a container that is gone
        self._for = container_id
        self._task = self.manager.tasks.spawn(self._probe(container_id))

    async def aclose(self) -> None:
        """Close the probe's connections (its task is cancelled with the manager's tasks)."""
        await self._transport.aclose()

    async def readyz(self) -> tuple[bool, str]:
        """One GET /readyz: whether the gateway is ready, and if not, why (briefly)."""
        request = httpx.Request(
            "GET",
            self.manager.gateway_url() + "/readyz",
            extensions={"timeout": httpx.Timeout(2.0).as_dict()},
        )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except Exception as exc:  # any failure is "not ready"; the probe must keep going
            log.debug("GET /readyz: %s", type(exc).__name__)
            return False, type(exc).__name__
        log.debug("GET /readyz %d", response.status_code)
        if response.status_code == 200:
            return True, ""
        return False, f"HTTP {response.status_code}"

    async def _probe(self, container_id: str) -> None:
        """Poll /readyz: quickly until ready, then at the health interval."""
        manager = self.manager
        sb = manager.settings.sandbox
        while manager.is_running(container_id):
            ok, detail = await self.readyz()
            if not manager.is_running(container_id):
                return
            manager.publish(manager.lifecycle.on_readyz(ok, time.time(), detail))
            status = manager.status
            if (
                status.state == SandboxState.STARTING
                and status.started_at is not None
                and time.time() - status.started_at > sb.ready_timeout
            ):
                manager.publish(
                    manager.lifecycle.update(
                        state=SandboxState.UNHEALTHY,
                        reason=f"the gateway is not ready {sb.ready_timeout:.0f}s after start; "
                        f"look at its logs (docker logs {manager.name}) or raise sandbox.ready_timeout",
                    )
                )
            fast = manager.status.state == SandboxState.STARTING
            await asyncio.sleep(sb.readyz_interval if fast else sb.health_interval)

