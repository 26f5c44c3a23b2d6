"""Several sandboxes on one backend: ``ls`` (all of them in a table), ``create NAME`` and
``remove NAME``.

``ls`` asks the backend that runs and never starts one, as ``status`` does; ``create`` and
``remove`` start a backend when none runs. ``create`` adds the sandbox stopped, then (unless
``--no-start``) starts it the way ``moltconsole start`` does, following its progress until it
is ready or says why not. ``remove`` asks first on a terminal, as ``destroy`` does, and names
the state directory it keeps. What the backend refuses (a name or port taken, not enough
memory, a sandbox of the config file) is printed in the backend's words, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from moltconsole.cli.choice import command_for, sandbox_name
from moltconsole.cli.follow import start_like
from moltconsole.cli.lifecycle import state_dir_of
from moltconsole.cli.session import confirmed, on_backend, run, settings_of
from moltconsole.client import BackendClient, BackendError
from moltconsole.formatting import duration
from moltconsole.settings import Settings
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from moltconsole_shared.table import format_table
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.sandbox import RUNNING_STATES
from moltconsole_shared.wire.sandboxes import SANDBOX_LIST, SandboxList, SandboxSummary

LS_TITLES = ["name", "state", "openclaw", "port", "uptime", "cpu", "memory", "spent today"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ls [--json]``, ``create NAME [--version V] [--memory M] [--cpus N] [--port P]
    [--no-start]`` and ``remove NAME [--yes]``."""
    ls = sub.add_parser("ls", help="list all sandboxes: state, uptime, CPU, memory, spend today")
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    ls.set_defaults(func=ls_command)
    create = sub.add_parser("create", help="add a sandbox (and start it, unless --no-start)")
    create.add_argument("name", type=sandbox_name, metavar="NAME",
                        help="its name: 1-31 lowercase letters, digits or '-'")
    create.add_argument("--version", help="OpenClaw version (default: [sandbox] openclaw_version)")
    create.add_argument("--memory", metavar="LIMIT",
                        help="memory limit, as Docker takes it: 3g, 1536m (default: [sandbox])")
    create.add_argument("--cpus", type=float, metavar="N", help="CPU limit: 1.5 (default: [sandbox])")
    create.add_argument("--port", type=int, default=0, metavar="P",
                        help="gateway port on the host (default: the first free one above the others')")
    create.add_argument("--no-start", action="store_true", help="create it stopped")
    create.set_defaults(func=create_command)
    remove = sub.add_parser(
        "remove", help="remove a sandbox made with create (its container; the state directory is kept)",
    )
    remove.add_argument("name", type=sandbox_name, metavar="NAME")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(func=remove_command)


# --- ls ------------------------------------------------------------------------------------
def ls_command(args: argparse.Namespace) -> int:
    """``moltconsole ls [--json]``: from a running backend only (none: exit 3)."""
    settings = settings_of(args)

    async def show() -> int:
        async with BackendClient(settings.socket_path) as client:
            fleet = await client.sandboxes()
        if args.json:
            print(json.dumps(SANDBOX_LIST.dump(fleet), indent=2))
        else:
            print(format_sandboxes(fleet))
        return EXIT_OK

    return run(show())


def format_sandboxes(fleet: SandboxList, now: float | None = None) -> str:
    """The table of ``ls``, the default sandbox marked ``*`` and explained under it."""
    now = time.time() if now is None else now
    rows = [_row(summary, now) for summary in fleet.sandboxes]
    lines = [format_table(LS_TITLES, rows)]
    if any(summary.default for summary in fleet.sandboxes):
        lines.append("* the default sandbox, which verbs address without -s NAME")
    return "\n".join(lines)


def _row(summary: SandboxSummary, now: float) -> list[str]:
    """One sandbox's cells: "-" where there is no figure (stopped, not sampled, gateway off)."""
    from moltconsole.widgets.cost_format import money

    status = summary.status
    up = status.started_at is not None and status.state in RUNNING_STATES
    return [
        summary.name + (" *" if summary.default else ""),
        str(status.state),
        summary.openclaw_version,
        str(summary.gateway_port),
        duration(now - status.started_at) if up and status.started_at is not None else "-",
        f"{summary.cpu_percent:.1f}%" if summary.cpu_percent is not None else "-",
        f"{summary.memory_bytes / 2**20:,.0f} MiB" if summary.memory_bytes is not None else "-",
        money(summary.spend_today_nanos) if summary.spend_today_nanos is not None else "-",
    ]


# --- create --------------------------------------------------------------------------------
def create_command(args: argparse.Namespace) -> int:
    """``moltconsole create NAME ...``."""
    return run(on_backend(settings_of(args), lambda client: create(client, args)))


async def create(client: BackendClient, args: argparse.Namespace) -> int:
    """Add the sandbox stopped, say what it got, then start it unless ``--no-start``."""
    # A refusal (name or port taken, a bad limit) is a BackendError in the backend's words,
    # which run() prints, exit 1.
    summary = await client.create_sandbox(
        args.name, openclaw_version=args.version, memory_limit=args.memory, cpus=args.cpus,
        gateway_port=args.port, start=False,
    )
    print(sanitize(f"created sandbox {summary.name}: openclaw {summary.openclaw_version}, gateway port "
                   f"{summary.gateway_port}, memory limit {summary.memory_limit}"))
    if args.no_start:
        print(f"it is stopped; start it with: {command_for('start', args.name)}")
        return EXIT_OK
    client.sandbox = args.name
    return await start_like(client, "start", wait=True)


# --- remove --------------------------------------------------------------------------------
def remove_command(args: argparse.Namespace) -> int:
    """``moltconsole remove NAME [--yes]``."""
    settings = settings_of(args)
    if not args.yes:
        # Asked before the event loop, as destroy asks (Ctrl-C must interrupt input()).
        refused = confirm_remove(settings, args.name)
        if refused is not None:
            return refused
    return run(on_backend(settings, lambda client: remove(client, args.name)))


def confirm_remove(settings: Settings, name: str) -> int | None:
    """Ask before removing sandbox ``name``: None to go ahead, else the exit code to stop with."""
    if not sys.stdin.isatty():
        print(f"moltconsole: remove takes sandbox {name}'s container away; when not run "
              f"interactively, confirm with: moltconsole remove {name} --yes", file=sys.stderr)
        return EXIT_USAGE
    try:
        state_dir = asyncio.run(state_dir_of(settings, name))
    except BackendError as exc:  # no such sandbox: say so rather than ask
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_FAILED
    kept = f"its state directory {sanitize(state_dir)}" if state_dir else "its state directory"
    return confirmed(f"Remove sandbox {name}? Its container goes; {kept} is kept. [y/N] ")


async def remove(client: BackendClient, name: str) -> int:
    """Remove the sandbox and say where its state directory stays."""
    # Refusals (unknown name, a sandbox of the config file) are BackendErrors in the backend's
    # words, which run() prints, exit 1.
    client.sandbox = name
    state_dir = (await client.status()).get("state_dir")  # asked first: gone with the sandbox
    await client.remove_sandbox(name)
    print(f"removed sandbox {name}")
    print(f"kept: {sanitize(str(state_dir or 'its state directory'))} "
          f"('moltconsole create {name}' takes it up again)")
    return EXIT_OK
