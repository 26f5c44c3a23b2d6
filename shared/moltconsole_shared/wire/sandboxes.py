"""Several sandboxes on one backend: the list at a glance, and the request that adds one.

``GET /v1/sandboxes`` answers a :class:`SandboxList`: every sandbox the backend supervises, the
default first, then by name, each as a :class:`SandboxSummary` (its status and what the table
of all sandboxes shows: CPU, memory and today's spend). ``POST /v1/sandboxes`` takes a
:class:`CreateRequest` and answers the new sandbox's summary (201); ``DELETE
/v1/sandboxes/{name}`` removes one the CLI created (its container goes, its state directory
stays) and answers 204.

Every per-sandbox resource lives under ``/v1/sandboxes/{name}/``: ``status``, ``processes``,
``start|stop|restart|destroy|rebuild|rotate-token`` (POST), ``events``, ``stats``, ``logs``
and ``exec`` (WebSocket), ``devices`` and ``devices/{id}/{approve|reject}``. The older
unprefixed paths (``/v1/status``, ``/v1/sandbox/start``, ``/v1/logs``...) address the default
sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.sandbox import SandboxStatus
from moltconsole_shared.wire.schema import WireSchema

# Where a sandbox was declared: a section of the config file, or `moltconsole create`.
Origin = Literal["config", "created"]


@dataclass(frozen=True)
class SandboxSummary:
    """One sandbox in the list: who it is, its status, and its latest resource figures.

    ``cpu_percent`` and ``memory_bytes`` are the newest stats sample while it runs (None when
    stopped or not sampled yet); ``spend_today_nanos`` is what the AI gateway recorded for it
    since local midnight, in nano-dollars (None when the gateway is off).
    """

    name: StrictStr
    default: StrictBool
    origin: Origin
    openclaw_version: StrictStr
    gateway_port: StrictInt
    memory_limit: StrictStr
    status: SandboxStatus
    cpu_percent: StrictFloat | None = None
    memory_bytes: StrictInt | None = None
    spend_today_nanos: StrictInt | None = None


@dataclass(frozen=True)
class SandboxList:
    """``GET /v1/sandboxes``: all sandboxes, the default first."""

    sandboxes: list[SandboxSummary] = field(default_factory=list)
    default: StrictStr = "default"


@dataclass(frozen=True)
class CreateRequest:
    """``POST /v1/sandboxes``: a new sandbox; what it leaves out comes from ``[sandbox]``.

    ``gateway_port`` 0 (the default) picks the first free port above the others'. ``start``
    starts it at once (the memory check applies, as for any start).
    """

    name: StrictStr
    openclaw_version: StrictStr | None = None
    memory_limit: StrictStr | None = None
    cpus: StrictFloat | None = None
    gateway_port: StrictInt = 0
    start: StrictBool = True


SANDBOX_SUMMARY: WireSchema[SandboxSummary] = WireSchema(SandboxSummary, "sandbox")
SANDBOX_LIST: WireSchema[SandboxList] = WireSchema(SandboxList, "sandbox list")
CREATE_REQUEST: WireSchema[CreateRequest] = WireSchema(CreateRequest, "create request")
