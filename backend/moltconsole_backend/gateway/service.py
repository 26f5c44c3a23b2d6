"""The AI gateway as one component of the backend: ledger, prices, budgets, proxy and server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from moltconsole.settings import Settings

from ..sandbox.spec import SandboxPaths, read_or_create_token
from .budgets import BudgetGuard
from .ledger import Ledger
from .pricing import PriceTable
from .proxy import GatewayProxy, TokenRegistry
from .server import GatewayServer, bind_tcp, bridge_address

log = logging.getLogger(__name__)

GIL_SWITCH_S = 0.001

MODEL_TOKEN_FILE = "model-token"  # noqa: S105 - a file name, not a secret


class GatewayService:
    """Starts and stops the gateway; the API reads its ledger and budgets through it."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = os.environ if env is None else env
        self.ledger = Ledger(settings.ledger_path)
        self.prices = PriceTable(settings.gateway)
        self.guard = BudgetGuard(settings.gateway, self._spend)
        self.tokens = TokenRegistry()
        self.proxy: GatewayProxy | None = None
        self.server: GatewayServer | None = None
        self.address: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()

    def _spend(self, since: float, sandbox: str | None) -> int:
        return self.ledger.spend_nanos(since, sandbox=sandbox)

    async def start(self) -> None:
        """Open the ledger and, when enabled, start serving the proxy."""
        await asyncio.to_thread(self.ledger.open)
        gw = self.settings.gateway
        if not gw.enabled:
            return
        paths = SandboxPaths(self.settings.sandbox_dir)
        token = await asyncio.to_thread(read_or_create_token, paths.secrets / MODEL_TOKEN_FILE)
        self.tokens.add(token, self.settings.sandbox.name)
        host = gw.bind_address
        if host == "auto":
            found = bridge_address()
            if found is None:
                log.warning(
                    "no docker0 bridge found: the AI gateway listens on 127.0.0.1 only, which the "
                    "sandbox cannot reach; set gateway.bind_address to the bridge's address"
                )
            host = found or "127.0.0.1"
        if self.guard.enabled:
            await asyncio.to_thread(self.guard.refresh)
        self.proxy = GatewayProxy(
            gw, self.tokens, self.prices, self.ledger.record, guard=self.guard, env=self.env
        )
        sock = bind_tcp(host, gw.port)
        # The gateway's thread shares the GIL with the backend's other threads (API, logs,
        # ledger). Python lets a thread that wants the GIL wait up to the switch interval, 5 ms
        # by default, which would show as a stall in the agent's stream; 1 ms bounds that.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        self.server = GatewayServer(self.proxy, sock)
        await asyncio.to_thread(self.server.start)
        self.address = (self.server.host, self.server.port)
        log.info("AI gateway listening on %s:%d", *self.address)
        if self.guard.enabled:
            self._tasks.append(asyncio.create_task(self._refresh_budgets()))
        if gw.cloudflare.account_id:
            from .cloudflare import CloudflareImporter

            importer = CloudflareImporter(gw.cloudflare, self.ledger, self.prices, env=self.env)
            self._tasks.append(asyncio.create_task(importer.run_periodically(self._stop)))

    async def _refresh_budgets(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=5.0)
            if self.guard.needs_refresh():
                try:
                    await asyncio.to_thread(self.guard.refresh)
                except Exception:
                    log.exception("could not re-read budget totals from the ledger")

    def budgets(self) -> tuple[int | None, int | None]:
        """The overall (daily, monthly) limits in nanos, for the Costs screen."""
        return self.guard.limits_nanos()

    def status(self) -> dict[str, Any]:
        """What the dashboard and `status` show about the gateway."""
        return {
            "enabled": self.settings.gateway.enabled,
            "listening": f"{self.address[0]}:{self.address[1]}" if self.address else None,
        }

    async def stop(self) -> None:
        """Stop serving and flush every ledger row to disk."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None
        await asyncio.to_thread(self.ledger.close)
