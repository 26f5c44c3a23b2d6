"""``moltconsole devices``: OpenClaw's device pairing: pending requests and paired devices,
and a decision on one request (``approve ID``, ``reject ID``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox
from moltconsole.cli.session import UsageError, on_backend, run, settings_of
from moltconsole.client import BackendClient
from moltconsole_shared.commands import EXIT_OK
from moltconsole_shared.untrusted import sanitize


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``devices [-s NAME] [approve ID | reject ID] [--json]``."""
    devices = sub.add_parser("devices", help="list, approve or reject device pairing requests")
    devices.add_argument("decision", nargs="?", choices=["approve", "reject"])
    devices.add_argument("request_id", nargs="?")
    add_sandbox_option(devices)
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.set_defaults(func=devices_command)


def devices_command(args: argparse.Namespace) -> int:
    """``moltconsole devices``."""
    settings = settings_of(args)
    if args.decision and not args.request_id:
        raise UsageError(f"devices {args.decision} needs a request id (see: moltconsole devices)")
    return run(on_backend(settings, lambda client: devices(client, args), sandbox=chosen_sandbox(args)))


async def devices(client: BackendClient, args: argparse.Namespace) -> int:
    """The decision asked for, or the list."""
    if args.decision:
        result = await client.decide_device(args.request_id, args.decision)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            done = {"approve": "approved", "reject": "rejected"}[args.decision]
            print(f"{done} {sanitize(args.request_id)}")
        return EXIT_OK
    data = await client.devices()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(format_devices(data))
    return EXIT_OK


def format_devices(data: dict[str, Any]) -> str:
    """Pending requests first (they need a decision), then paired devices."""
    lines = []
    pending = data.get("pending") or []
    paired = data.get("paired") or []
    lines.append(f"pending ({len(pending)})")
    for entry in pending:
        name = entry.get("displayName") or entry.get("clientId") or entry.get("deviceId") or "?"
        rid = entry.get("requestId") or "?"
        role = entry.get("role") or "?"
        ip = entry.get("remoteIp") or "?"
        lines.append(f"  {sanitize(str(rid))}  {sanitize(str(name))}  role={sanitize(str(role))}"
                     f"  from {sanitize(str(ip))}")
    lines.append(f"paired ({len(paired)})")
    for entry in paired:
        name = entry.get("displayName") or entry.get("clientId") or entry.get("deviceId") or "?"
        lines.append(f"  {sanitize(str(entry.get('deviceId') or '?'))}  {sanitize(str(name))}")
    if pending:
        lines.append("approve with: moltconsole devices approve REQUEST_ID")
    return "\n".join(lines)

