"""OpenClaw device pairing, through the OpenClaw CLI inside the container.

The CLI reaches the gateway over the container's loopback, so it needs no pairing itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moltconsole_backend.sandbox.manager import OperationError, SandboxManager
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.devices import Decision, DeviceDecision, DeviceList, device_list
from moltconsole_shared.wire.schema import WireFormatError

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
CLI = "openclaw"


def _json_document(text: str) -> Any:
    """The JSON document in the CLI's stdout (it may print a banner line before it)."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in output")
    return json.loads(text[start:])


async def list_devices(manager: SandboxManager) -> DeviceList:
    """Pending pairing requests and paired devices, as OpenClaw reports them."""
    code, out, err = await manager.exec([CLI, "devices", "list", "--json"])
    if code != 0:
        raise OperationError(f"openclaw devices list failed (exit {code}): {_brief(err or out)}")
    try:
        data = _json_document(out)
    except ValueError:
        raise OperationError(f"openclaw devices list printed no JSON: {_brief(out)}") from None
    if not isinstance(data, dict):
        raise OperationError(f"openclaw devices list printed no JSON object: {_brief(out)}")
    try:
        return device_list(data.get("pending"), data.get("paired"))
    except WireFormatError as exc:
        raise OperationError(f"openclaw devices list printed a list moltconsole cannot read: {exc}") from None


async def decide(
    manager: SandboxManager, request_id: str, decision: Decision
) -> DeviceDecision:
    """Approve or reject the pending request ``request_id``."""
    if not _REQUEST_ID.fullmatch(request_id):  # fullmatch: "$" would let a trailing \n through
        raise OperationError(
            f"{request_id!r} is not a pairing request id. List them with: moltconsole devices"
        )
    code, out, err = await manager.exec([CLI, "devices", decision, request_id, "--json"])
    if code != 0:
        text = err or out
        if "No pending device request" in text or "unknown requestId" in text:
            raise OperationError(
                f"no pending pairing request {request_id!r}. It may have been decided already, "
                "expired (requests last about 5 minutes) or been superseded by a newer one; "
                "list them with: moltconsole devices"
            )
        raise OperationError(f"openclaw devices {decision} {request_id} failed (exit {code}): {_brief(text)}")
    try:
        result = _json_document(out)
    except ValueError:
        result = {"output": sanitize(out.strip())}
    return DeviceDecision(request_id=request_id, decision=decision, result=result)


BRIEF_MAX = 500


def _brief(text: str) -> str:
    """The last three non-empty lines of the CLI's output, made inert, for an error message.

    Split before sanitizing (sanitize turns newlines into visible symbols), and keep the end
    when cutting: the actual error is usually last.
    """
    lines = [sanitize(ln.strip()) for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(no output)"
    brief = " | ".join(lines[-3:])
    return brief if len(brief) <= BRIEF_MAX else "…" + brief[-(BRIEF_MAX - 1) :]
