"""The backend about itself and what it sees: ``/v1/health``, ``/v1/keys`` and a sandbox's
process table (``/v1/sandboxes/NAME/processes``).

The gateway block inside health is ``status.GatewayStatus`` (read leniently by its own
``from_json``, so it stays a plain object here); every other field is checked at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.schema import WireSchema


@dataclass(frozen=True)
class Health:
    """``GET /v1/health``: which backend answers, since when, and its sandboxes' names. Only
    ``backend`` is required: the console must recognise an older backend to say so."""

    backend: Literal["moltconsole"]
    version: StrictStr = ""
    pid: StrictInt = 0
    uptime: StrictFloat = 0.0
    gateway: dict[str, Any] | None = None
    sandboxes: list[StrictStr] = field(default_factory=list)  # the default first


@dataclass(frozen=True)
class KeyRow:
    """One provider key the gateway looks for: where it was found and a masked hint, never
    the value. ``source`` is None when it is set nowhere; ``shadowed``: the keys file has it,
    but the backend's environment wins."""

    name: StrictStr
    source: Literal["file", "environment"] | None
    hint: StrictStr
    used_by: list[StrictStr]
    shadowed: StrictBool


@dataclass(frozen=True)
class KeysReport:
    """``GET /v1/keys``: the keys, what the providers in use lack, and the keys file's state."""

    keys_file: StrictStr
    keys_file_error: StrictStr
    keys: list[KeyRow]
    missing: list[dict[str, Any]]  # status.MissingKey, read by its own from_json
    pid: StrictInt


@dataclass(frozen=True)
class ProcessTable:
    """A sandbox's processes as the engine's ``top`` reports them: column titles, then rows of
    cells (strings, as ps prints them)."""

    titles: list[StrictStr]
    processes: list[list[StrictStr]]


HEALTH: WireSchema[Health] = WireSchema(Health, "health")
KEYS_REPORT: WireSchema[KeysReport] = WireSchema(KeysReport, "keys report")
PROCESS_TABLE: WireSchema[ProcessTable] = WireSchema(ProcessTable, "process table")
