"""Every sandbox the backend supervises, by name: the default, the config's, and the created.

Each sandbox is a ``SandboxManager`` and a ``LogCollector`` over its own view of the settings
(``Settings.for_sandbox``), so it has its own container, state directory, log spool, event
history, gateway token and ledger tag; nothing of one is shared with another but the AI
gateway, which tells them apart by their tokens.

Locks, explicitly:
- each manager's operation lock (``SandboxManager.operation``) serialises the operations on
  that sandbox only; operations on different sandboxes run side by side;
- the fleet's own lock serialises adding and removing sandboxes (the registry file and the
  name and port checks); it is never held while a sandbox starts, so creating a sandbox whose
  image must be built does not hold up another's creation or removal, and no operation on an
  existing sandbox ever waits for it.

The memory check (``admission``): OpenClaw idles at about 750 MiB, so a start that would leave
the host short is refused with what is free and what is needed, unless the sandbox's
``allow_overcommit`` is set. The engine runs on this host (``ContainerEngine``: a local Docker
today), so the host's ``MemAvailable`` is the engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from moltconsole_backend.gateway.budgets import day_start
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.logs.collector import LogCollector
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.service import MemoryService
from moltconsole_backend.sandbox.errors import OperationError
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.sandbox.registry import OVERRIDABLE, SandboxRegistry
from moltconsole_backend.settings import SandboxSettings, Settings, inherit_sandbox
from moltconsole_shared.wire.sandbox import SandboxState
from moltconsole_shared.wire.sandboxes import CreateRequest, Origin, SandboxSummary

log = logging.getLogger(__name__)
MEMINFO = Path("/proc/meminfo")
# States in which a sandbox has been started but has not grown to its working set yet.
_COMING_UP = frozenset({SandboxState.BUILDING, SandboxState.STARTING})


class UnknownSandbox(Exception):
    """No sandbox of that name; the message lists the ones there are."""


class FleetError(Exception):
    """A sandbox cannot be added or removed; the message says why and what to do.

    ``bad_value``: the request itself is wrong (a bad name, version or size), not the moment.
    """

    def __init__(self, message: str, *, bad_value: bool = False) -> None:
        super().__init__(message)
        self.bad_value = bad_value


@dataclass
class Sandbox:
    """One supervised sandbox: its settings as it sees them, its manager and its log collector."""

    name: str
    origin: Origin
    default: bool
    settings: Settings
    manager: SandboxManager
    logs: LogCollector | None
    config_key: str  # where its settings live: "sandbox", "sandboxes.NAME"
    memory: MemoryKeeper | None = None  # its snapshots (None while memory is off)


def host_available_mib(path: Path = MEMINFO) -> int | None:
    """The host's available memory (MemAvailable) in MiB; None where the kernel does not say."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class SandboxFleet:
    """The named sandboxes, opened and closed together; added and removed one at a time.

    ``make_manager`` and ``make_logs`` build a sandbox's parts (tests pass stand-ins;
    ``make_logs=None`` collects no logs). ``default_manager`` is used as the default sandbox's
    manager instead of a new one.
    """

    def __init__(
        self,
        settings: Settings,
        gateway: GatewayService | None = None,
        *,
        make_manager: Callable[[Settings], SandboxManager] = SandboxManager,
        make_logs: Callable[[Settings, SandboxManager], LogCollector] | None = LogCollector,
        default_manager: SandboxManager | None = None,
        available_mib: Callable[[], int | None] = host_available_mib,
        memory: MemoryService | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.memory = memory
        self.registry = SandboxRegistry(settings.paths.data_dir)
        self._make_manager = make_manager
        self._make_logs = make_logs
        self._available_mib = available_mib
        self._lock = asyncio.Lock()
        self._sandboxes: dict[str, Sandbox] = {}
        self._opened: list[Sandbox] = []
        self._collecting: list[Sandbox] = []
        default = self._build(settings.sandbox, "config", "sandbox", default_manager)
        self.default_name = default.name
        self._sandboxes[default.name] = default
        for name, sb in settings.sandboxes.items():
            self._sandboxes[name] = self._build(sb, "config", f"sandboxes.{name}")

    @classmethod
    def of_one(cls, manager: SandboxManager, logs: LogCollector | None = None) -> SandboxFleet:
        """A fleet of ``manager``'s sandbox alone (and its collector), for an API over one
        manager a test brings; it is not opened."""
        settings = getattr(manager, "settings", None)
        if not isinstance(settings, Settings):
            settings = Settings()
        settings = settings.model_copy(update={"sandboxes": {}})
        make_logs = None if logs is None else (lambda _settings, _manager: logs)
        return cls(settings, default_manager=manager, make_logs=make_logs)

    # --- who is there ----------------------------------------------------------------------
    @property
    def default(self) -> Sandbox:
        """The default sandbox (``[sandbox]``)."""
        return self._sandboxes[self.default_name]

    def all(self) -> list[Sandbox]:
        """Every sandbox, the default first, then by name."""
        rest = sorted(name for name in self._sandboxes if name != self.default_name)
        return [self.default, *(self._sandboxes[name] for name in rest)]

    def get(self, name: str | None) -> Sandbox:
        """The sandbox called ``name`` (None: the default); UnknownSandbox if there is none."""
        if name is None:
            return self.default
        found = self._sandboxes.get(name)
        if found is None:
            known = ", ".join(sb.name for sb in self.all())
            raise UnknownSandbox(
                f"there is no sandbox called {name!r}; the sandboxes are: {known}. "
                "'moltconsole ls' lists them, 'moltconsole create NAME' adds one."
            )
        return found

    # --- opening and closing ---------------------------------------------------------------
    def _build(
        self, sb: SandboxSettings, origin: Origin, config_key: str, manager: SandboxManager | None = None,
    ) -> Sandbox:
        view = self.settings if sb is self.settings.sandbox else self.settings.for_sandbox(sb)
        manager = manager or self._make_manager(view)
        manager.config_key = config_key
        manager.admission = self.admission
        if origin == "created":
            manager.port_hint = (
                f"'moltconsole remove {sb.name}' and 'moltconsole create {sb.name} --port PORT' "
                "(its state directory is kept)"
            )
        logs = self._make_logs(view, manager) if self._make_logs is not None else None
        return Sandbox(sb.name, origin, sb is self.settings.sandbox, view, manager, logs, config_key)

    async def open(self) -> None:
        """Read the created sandboxes and open every sandbox (adopting running containers)."""
        created = await asyncio.to_thread(self.registry.read)
        for name, own in created.items():
            if name in self._sandboxes:
                log.warning(
                    "sandbox %s is both in the config file and in %s; the config file's is used",
                    name, self.registry.path,
                )
                continue
            try:
                sb = self._created_settings(name, own)
            except ValueError as exc:
                log.error("sandbox %s in %s is left out: %s", name, self.registry.path, exc)
                continue
            self._sandboxes[name] = self._build(sb, "created", "sandbox")
        for sandbox in self.all():
            await self._open(sandbox)

    async def _open(self, sandbox: Sandbox) -> None:
        manager = sandbox.manager
        if self.gateway is not None:
            manager.model_tokens = self.gateway
            listening = self.gateway.status()["listening"]
            manager.model_gateway = listening
            if self.gateway.settings.gateway.enabled:
                # A sandbox still running from before this backend started presents its saved token.
                await asyncio.to_thread(self.gateway.token_for, sandbox.name)
        self._opened.append(sandbox)  # closed even if opening fails half way
        if self.memory is not None:
            sandbox.memory = self.memory.keeper(sandbox.name, manager.paths.state, manager.notice)
            manager.memory = sandbox.memory
            if sandbox.memory is not None:
                await sandbox.memory.start()
        await manager.open()
        if sandbox.logs is not None:
            await sandbox.logs.start()
            self._collecting.append(sandbox)

    async def _close(self, sandbox: Sandbox) -> None:
        if sandbox in self._collecting and sandbox.logs is not None:
            self._collecting.remove(sandbox)
            with contextlib.suppress(Exception):
                await sandbox.logs.stop()
        if sandbox in self._opened:
            self._opened.remove(sandbox)
            await sandbox.manager.close()
            if sandbox.memory is not None:
                await sandbox.memory.close()

    async def close(self) -> None:
        """Stop collecting and watching; every container keeps running."""
        for sandbox in reversed(list(self._opened)):
            await self._close(sandbox)

    # --- adding and removing ---------------------------------------------------------------
    def _created_settings(self, name: str, own: dict[str, object]) -> SandboxSettings:
        base = self.settings.sandbox.model_dump()
        return SandboxSettings.model_validate(inherit_sandbox(base, name, own))

    def _port_owner(self, bind: str, port: int) -> str | None:
        for sandbox in self._sandboxes.values():
            sb = sandbox.settings.sandbox
            if sb.gateway_port == port and sb.bind_address == bind:
                return sandbox.name
        if self.settings.gateway.enabled and self.settings.gateway.port == port:
            return "the AI gateway"
        return None

    def _free_port(self, bind: str) -> int:
        used = [s.settings.sandbox.gateway_port for s in self._sandboxes.values()]
        port = max(used) + 1
        while self._port_owner(bind, port) is not None:
            port += 1
        if port > 65535:
            raise FleetError("no free gateway port is left above the others'; give one with --port")
        return port

    async def create(self, request: CreateRequest) -> Sandbox:
        """Add a sandbox (remembered in the registry) and, if asked, start it."""
        async with self._lock:
            name = request.name
            if name in self._sandboxes:
                raise FleetError(f"there is already a sandbox called {name!r}; choose another name")
            own: dict[str, object] = {
                key: getattr(request, key) for key in OVERRIDABLE if getattr(request, key) not in (None, 0)
            }
            try:
                sb = self._created_settings(name, own)
            except ValidationError as exc:
                raise FleetError(_invalid(exc), bad_value=True) from None
            if not request.gateway_port:
                own["gateway_port"] = self._free_port(sb.bind_address)
                sb = self._created_settings(name, own)
            owner = self._port_owner(sb.bind_address, sb.gateway_port)
            if owner is not None:
                raise FleetError(
                    f"port {sb.gateway_port} is already the gateway port of {owner}; choose another "
                    "with --port, or leave it out to take the next free one"
                )
            entries = await asyncio.to_thread(self.registry.read)
            entries[name] = own
            await asyncio.to_thread(self.registry.write, entries)
            sandbox = self._build(sb, "created", "sandbox")
            self._sandboxes[name] = sandbox
            await self._open(sandbox)
            log.info("sandbox %s added (gateway port %d)", name, sb.gateway_port)
        if request.start:
            await sandbox.manager.start()
        return sandbox

    async def remove(self, name: str) -> None:
        """Remove a created sandbox: its container goes, its state directory stays."""
        async with self._lock:
            sandbox = self.get(name)
            if sandbox.origin != "created":
                raise FleetError(
                    f"sandbox {name!r} is declared in the config file ([{sandbox.config_key}]); "
                    "remove its section there and restart the backend"
                )
            await sandbox.manager.destroy()
            entries = await asyncio.to_thread(self.registry.read)
            entries.pop(name, None)
            await asyncio.to_thread(self.registry.write, entries)
            del self._sandboxes[name]
            await self._close(sandbox)
            log.info("sandbox %s removed; its state directory %s is kept", name, sandbox.manager.paths.root)

    # --- the memory check ------------------------------------------------------------------
    def admission(self, manager: SandboxManager) -> str | None:
        """Why ``manager``'s sandbox may not start now (too little memory), or None."""
        sb = manager.settings.sandbox
        if sb.allow_overcommit or sb.start_memory_mb == 0:
            return None
        available = self._available_mib()
        if available is None:
            return None
        coming = [
            s for s in self._sandboxes.values()
            if s.manager is not manager and s.manager.status.state in _COMING_UP
        ]
        held = sum(s.settings.sandbox.start_memory_mb for s in coming)
        free = available - held
        if free >= sb.start_memory_mb:
            return None
        held_text = f", less {held} MiB for the sandboxes starting now" if held else ""
        return (
            f"not enough memory to start sandbox {sb.name!r}: {max(free, 0)} MiB of the host's "
            f"memory is free ({available} MiB available{held_text}) and a sandbox needs "
            f"{sb.start_memory_mb} MiB to start (an idle OpenClaw uses about 750 MiB). Stop "
            f"another sandbox, or set {manager.config_key}.allow_overcommit = true to start it anyway."
        )

    # --- at a glance -----------------------------------------------------------------------
    async def summaries(self) -> list[SandboxSummary]:
        """Every sandbox with its status, latest sample and spend today."""
        sandboxes = self.all()
        spend: list[int] | None = None
        gateway = self.gateway
        if gateway is not None and gateway.settings.gateway.enabled:
            since = day_start(time.time())
            windows = [(since, s.name) for s in sandboxes]
            spend, _ = await asyncio.to_thread(gateway.ledger.spend_totals, windows, list)
        out = []
        for at, sandbox in enumerate(sandboxes):
            sample = sandbox.manager.stats_feed.last if sandbox.manager.status.running else None
            sb = sandbox.settings.sandbox
            out.append(SandboxSummary(
                name=sandbox.name,
                default=sandbox.default,
                origin=sandbox.origin,
                openclaw_version=sandbox.manager.wanted_version(),
                gateway_port=sb.gateway_port,
                memory_limit=sb.memory_limit,
                status=sandbox.manager.status,
                cpu_percent=sample.cpu_percent if sample is not None else None,
                memory_bytes=sample.memory_bytes if sample is not None else None,
                spend_today_nanos=spend[at] if spend is not None else None,
            ))
        return out


def _invalid(exc: ValidationError) -> str:
    """A create request's bad value, said as the config loader says it."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        parts.append(f"{key}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


__all__ = ["FleetError", "OperationError", "Sandbox", "SandboxFleet", "UnknownSandbox"]
