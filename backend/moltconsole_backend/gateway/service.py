"""The AI gateway as one component of the backend: ledger, prices, budgets, proxy and server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Mapping
from typing import Any

from moltconsole_backend.settings import Settings
from moltconsole_shared.wire.status import BudgetState, GatewayStatus, MissingKey

from ..sandbox.spec import model_token_path, read_or_create_token, write_new_token
from .budgets import BudgetGuard
from .keys import KeyEnvironment, missing_keys
from .ledger import Ledger
from .pricing import PriceTable
from .proxy import GatewayProxy, TokenRegistry
from .server import GatewayServer, bind_tcp, bridge_address

log = logging.getLogger(__name__)

GIL_SWITCH_S = 0.001


class GatewayService:
    """Starts and stops the gateway; the API reads its ledger and budgets through it.

    It also owns the sandboxes' gateway tokens (``token_for``, ``rotate``): the manager asks it
    for the token a new container gets, so the proxy knows every token the moment it exists.

    ``env`` is where provider keys and ``env:NAME`` header values are looked up on every
    request; by default the keys file over the backend's environment (``KeyEnvironment``).
    """

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env: Mapping[str, str] = KeyEnvironment(settings.keys_path) if env is None else env
        self.ledger = Ledger(settings.ledger_path)
        self.prices = PriceTable(settings.gateway)
        self.guard = BudgetGuard(settings.gateway, self.ledger.spend_totals)
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
        # A sandbox still running from before this backend started presents its saved token.
        await asyncio.to_thread(self.token_for, self.settings.sandbox.name)
        self._warn_missing_keys()
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
        mib = 1024 * 1024
        self.server = GatewayServer(
            self.proxy,
            sock,
            max_body=gw.max_body_mb * mib,
            max_bodies_bytes=gw.max_bodies_mb * mib,
            max_connections=gw.max_connections,
            max_connections_per_client=gw.max_connections_per_client,
            header_timeout=gw.header_timeout,
            body_timeout=gw.body_timeout,
        )
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

    # --- gateway tokens ---------------------------------------------------------------------
    def token_for(self, sandbox: str) -> str:
        """The sandbox's gateway token (created and saved on first use), accepted from now on."""
        token = read_or_create_token(model_token_path(self.settings.paths.data_dir, sandbox))
        self.tokens.add(token, sandbox)
        return token

    def rotate(self, sandbox: str) -> str:
        """A new token for the sandbox, saved and accepted at once; the old one is refused."""
        token = write_new_token(model_token_path(self.settings.paths.data_dir, sandbox))
        self.tokens.add(token, sandbox)
        log.info("gateway token of sandbox %s replaced; the previous one is refused from now on", sandbox)
        return token

    # --- what needs the user's attention ----------------------------------------------------
    def missing_keys(self) -> list[MissingKey]:
        """The credentials the providers in use lack right now (the keys file is looked at now)."""
        if isinstance(self.env, KeyEnvironment):
            self.env.refresh()
        return missing_keys(self.settings.gateway, self.env)

    def keys_file_error(self) -> str:
        """Why the keys file is not read, or ""."""
        return self.env.file_error if isinstance(self.env, KeyEnvironment) else ""

    def _warn_missing_keys(self) -> None:
        for gap in self.missing_keys():
            log.warning("%s (keys file: %s)", gap.message, self.settings.keys_path)

    def budget_state(self, sandbox: str | None = None) -> BudgetState:
        """Whether ``sandbox``'s budget (None: the default sandbox's) is spent or past its
        warning threshold, and why."""
        if not self.settings.gateway.enabled or not self.guard.enabled:
            return BudgetState()
        decision = self.guard.check(sandbox or self.settings.sandbox.name)
        if decision.action != "allow":
            return BudgetState("spent", decision.action, decision.message, decision.summary)
        if decision.warning:
            return BudgetState("warning", "allow", decision.warning)
        return BudgetState("ok")

    def gateway_status(self, sandbox: str | None = None) -> GatewayStatus:
        """What the dashboard and `status` show about the gateway (its budget: ``sandbox``'s)."""
        enabled = self.settings.gateway.enabled
        return GatewayStatus(
            enabled=enabled,
            listening=f"{self.address[0]}:{self.address[1]}" if self.address else None,
            keys_file=str(self.settings.keys_path),
            keys_file_error=self.keys_file_error(),
            missing_keys=self.missing_keys() if enabled else [],
            budget=self.budget_state(sandbox),
            refusals=self.refusals(),
        )

    def refusals(self) -> dict[str, int]:
        """What the gateway refused since it started, and what it holds now."""
        out: dict[str, int] = {}
        if self.server is not None:
            out.update(dataclasses.asdict(self.server.stats()))
        if self.proxy is not None:
            stats = self.proxy.throttle.stats
            out.update(auth_refused=stats.refused, auth_throttled=stats.throttled)
        return out

    def status(self, sandbox: str | None = None) -> dict[str, Any]:
        """``gateway_status`` in its wire form (the ``gateway`` block of health and status)."""
        return self.gateway_status(sandbox).to_json()

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
