"""``moltconsole status``: a sandbox's state and the AI gateway's, from a running backend.

It asks the backend that runs and never starts one (no backend: exit 3). ``-s NAME`` shows that
sandbox; without it, the default one, and a line saying how many there are when there are
several. The status block it prints (:func:`format_status`) is also what the lifecycle verbs
print when they settle.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox
from moltconsole.cli.session import run, settings_of
from moltconsole.client import BackendClient, BackendError
from moltconsole.formatting import duration
from moltconsole_shared.commands import EXIT_OK
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.sandbox import RUNNING_STATES
from moltconsole_shared.wire.schema import WireFormatError
from moltconsole_shared.wire.status import GatewayStatus


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``status [-s NAME] [--json]``."""
    status = sub.add_parser("status", help="show a sandbox's state")
    add_sandbox_option(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=status_command)


def status_command(args: argparse.Namespace) -> int:
    """``moltconsole status``."""
    settings = settings_of(args)
    sandbox = chosen_sandbox(args)

    async def show() -> int:
        async with BackendClient(settings.socket_path, sandbox=sandbox) as client:
            status = await client.status()
            if args.json:
                print(json.dumps(status, indent=2))
                return EXIT_OK
            spender: str | None
            if sandbox:
                lines, spender = [f"sandbox    {sandbox}"], sandbox
            else:
                lines, spender = await fleet_lines(client)
            print("\n".join([*lines, format_status(status), *memory_lines(status),
                             *await gateway_lines(client, status, spender)]))
        return EXIT_OK

    return run(show())


def memory_lines(status: dict[str, Any]) -> list[str]:
    """The memory's last snapshot and bucket, for `status` (nothing from a backend that
    predates memory); 'moltconsole memory' says the rest."""
    from moltconsole.cli import memory_format as fmt
    from moltconsole_shared.wire.memory import MEMORY_STATUS

    if not isinstance(status.get("memory"), dict):
        return []
    try:
        memory = MEMORY_STATUS.read(status["memory"])
    except WireFormatError:
        return []
    now = time.time()
    if not memory.enabled:
        return [f"memory     off{': ' + sanitize(memory.problem) if memory.problem else ''}"]
    last = memory.last_snapshot
    line = "memory     " + (
        f"last snapshot {fmt.ago(last.time, now)} ({fmt.count(last.files, 'file')}, {fmt.size(last.size)})"
        if last is not None else "no snapshot yet"
    )
    lines = [line]
    if memory.bucket is not None:
        lines.append(f"bucket     {fmt.bucket_line(memory.bucket, now)}")
    if memory.last_error:
        lines.append(f"  ! {sanitize(memory.last_error)}")
    return lines


async def fleet_lines(client: BackendClient) -> tuple[list[str], str | None]:
    """For ``status`` of the default sandbox: when there are several, a line naming it and how
    many there are, and its name (whose spend the gateway line shows); else nothing and None
    (one sandbox, or a backend that predates several: all the spend is its)."""
    try:
        fleet = await client.sandboxes()
    except BackendError:
        return [], None
    if len(fleet.sandboxes) < 2:
        return [], None
    line = (f"sandbox    {sanitize(fleet.default)}, the default of {len(fleet.sandboxes)} "
            "('moltconsole ls' lists them)")
    return [line], fleet.default


async def gateway_lines(
    client: BackendClient, status: dict[str, Any], sandbox: str | None = None,
) -> list[str]:
    """Where the AI gateway listens, what ``sandbox`` (None: all) spent today, and what needs
    attention (missing keys, a budget spent or past its warning threshold), for `status`."""
    from moltconsole.widgets.cost_format import money

    block = status["gateway"] if "gateway" in status else (await client.health()).get("gateway")
    gateway = GatewayStatus.from_json(block)
    if not gateway.enabled:
        return ["AI gateway: off (gateway.enabled = false)"]
    where = gateway.listening or "not listening"
    try:
        summary = await client.costs_summary(sandbox=sandbox)
    except BackendError:
        lines = [f"AI gateway: {where}"]
    else:
        lines = [f"AI gateway: {where}, spent today {money(summary.today_nanos)}"]
    for severity, text in gateway.problems():
        lines.append(f"  {'!' if severity == 'error' else '~'} {sanitize(text)}")
    return lines


def format_status(status: dict[str, Any]) -> str:
    """Human-readable status lines."""
    lines = [f"state      {status['state']}" + (f"  ({status['desired']} wanted)"
                                                 if status.get("desired") else "")]
    if status.get("reason"):
        lines.append(f"reason     {sanitize(status['reason'])}")
    lines.append(f"openclaw   {status.get('openclaw_version') or '?'}")
    if status.get("container_id"):
        lines.append(f"container  {status['container_id'][:12]}  image {status.get('image') or '?'}")
    if status.get("started_at") and status["state"] in RUNNING_STATES:
        lines.append(f"uptime     {duration(time.time() - status['started_at'])}")
    lines.append(f"restarts   {status.get('restarts', 0)}")
    if status.get("last_exit_code") is not None:
        lines.append(f"last exit  {status['last_exit_code']}")
    if status.get("gateway_url"):
        lines.append(f"gateway    {status['gateway_url']}")
    if status.get("state_dir"):
        lines.append(f"state dir  {status['state_dir']}")
    if status.get("memory_warning"):
        lines.append(f"  ~ {sanitize(status['memory_warning'])}")
    return "\n".join(lines)
