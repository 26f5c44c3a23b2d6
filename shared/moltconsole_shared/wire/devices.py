"""OpenClaw's device pairing on the wire: ``GET /v1/devices`` and ``POST /v1/devices/{id}/{decision}``.

The entries are OpenClaw's own (``openclaw devices list --json``), in its camelCase names. The
backend reads them into :class:`Device`, which names the fields moltconsole shows and keeps every
other field OpenClaw sent, so ``moltconsole devices --json`` still prints all of it. Each is text
the sandbox produced: sanitize it before it reaches a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictStr

from moltconsole_shared.wire.schema import WireSchema

Decision = Literal["approve", "reject"]


class Device(BaseModel):
    """A pending pairing request (``request_id`` set) or a paired device, as OpenClaw lists it."""

    model_config = ConfigDict(
        extra="allow", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    request_id: StrictStr | None = Field(default=None, alias="requestId")
    device_id: StrictStr | None = Field(default=None, alias="deviceId")
    display_name: StrictStr | None = Field(default=None, alias="displayName")
    client_id: StrictStr | None = Field(default=None, alias="clientId")
    role: StrictStr | None = None
    remote_ip: StrictStr | None = Field(default=None, alias="remoteIp")

    @property
    def name(self) -> str:
        """What to call it: its display name, else its client or device id."""
        return self.display_name or self.client_id or self.device_id or "?"


@dataclass(frozen=True, slots=True)
class DeviceList:
    """``GET /v1/devices``: pairing requests waiting for a decision, and the paired devices."""

    pending: list[Device] = field(default_factory=list)
    paired: list[Device] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeviceDecision:
    """``POST /v1/devices/{request_id}/{decision}``: what was decided and what OpenClaw answered
    (its JSON, or ``{"output": text}`` when it printed none)."""

    request_id: StrictStr
    decision: Decision
    result: JsonValue


DEVICE_LIST: WireSchema[DeviceList] = WireSchema(DeviceList, "device list", omit_none=True)
DEVICE_DECISION: WireSchema[DeviceDecision] = WireSchema(DeviceDecision, "device decision")


def device_list(pending: Any, paired: Any) -> DeviceList:
    """A DeviceList from OpenClaw's ``pending`` and ``paired`` arrays (None reads as empty);
    WireFormatError names an entry that is not a device."""
    return DEVICE_LIST.read({"pending": pending or [], "paired": paired or []})
