"""``moltconsole`` command line: the console by default, plus scriptable sandbox actions."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from moltconsole.client import EXEC_STDERR, BackendClient, BackendError, BackendUnreachable
from moltconsole.formatting import duration
from moltconsole.settings import ConfigError, Settings, load_settings
from moltconsole.untrusted import sanitize

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_BACKEND = 3

# States in which a start has finished, one way or the other.
START_SETTLED = {"ready", "crash-loop", "config-invalid", "failed", "engine-down", "unhealthy"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="moltconsole",
        description="Run the OpenClaw agent in a hardened Docker sandbox. "
        "With no command, opens the console (starting the backend if needed).",
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default: XDG config dir)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run the backend in the foreground (for systemd)")
    status = sub.add_parser("status", help="show the sandbox state")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    for name, text in (
        ("start", "build the image if needed, create and start the sandbox, wait until ready"),
        ("stop", "stop the sandbox (state is kept)"),
        ("restart", "stop, then start the sandbox"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--no-wait", action="store_true", help="return without waiting")
    destroy = sub.add_parser("destroy", help="remove the container; the state directory is kept")
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rebuild = sub.add_parser("rebuild", help="rebuild the image and recreate the container")
    rebuild.add_argument("--version", help="OpenClaw version to upgrade/downgrade to")
    exec_ = sub.add_parser("exec", help="run a command in the sandbox: moltconsole exec -- CMD")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, help="the command and its arguments")
    sub.add_parser("ps", help="list the sandbox's processes")
    devices = sub.add_parser("devices", help="list, approve or reject device pairing requests")
    devices.add_argument("decision", nargs="?", choices=["approve", "reject"])
    devices.add_argument("request_id", nargs="?")
    devices.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moltconsole`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = args.command
    if command == "serve":
        return _serve(settings)
    if command is None:
        return _console(settings)
    if command == "devices" and args.decision and not args.request_id:
        parser.error(f"devices {args.decision} needs a request id (see: moltconsole devices)")
    if command == "exec":
        argv_ = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else args.argv
        if not argv_:
            parser.error("exec needs a command: moltconsole exec -- CMD [ARGS...]")
        args.argv = argv_
    try:
        return asyncio.run(_run(settings, args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (moltconsole status | head): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except BackendUnreachable as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_NO_BACKEND
    except BackendError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _serve(settings: Settings) -> int:
    import logging

    from moltconsole_backend.api.service import (
        BackendAlreadyRunning,
        BackendStartError,
        serve_forever,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_forever(settings))
    except (BackendAlreadyRunning, BackendStartError) as exc:
        print(f"moltconsole serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _console(settings: Settings) -> int:
    from moltconsole.launcher import ensure_backend

    async def attach() -> None:
        client = await ensure_backend(settings)
        await client.aclose()

    try:
        asyncio.run(attach())
    except BackendError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_NO_BACKEND
    from moltconsole.app import MoltConsole

    MoltConsole(settings).run()
    return EXIT_OK


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    command = args.command
    if command == "status":
        async with BackendClient(settings.socket_path) as client:
            status = await client.status()
        print(json.dumps(status, indent=2) if args.json else format_status(status))
        return EXIT_OK
    from moltconsole.launcher import ensure_backend

    client = await ensure_backend(settings)
    async with client:
        if command in ("start", "restart"):
            return await _start_like(client, command, wait=not args.no_wait)
        if command == "stop":
            status = await client.action("stop", wait=not args.no_wait)
            print(format_status(status))
            return EXIT_OK
        if command == "destroy":
            return await _destroy(client, settings, yes=args.yes)
        if command == "rebuild":
            return await _start_like(client, "rebuild", wait=True, version=args.version)
        if command == "exec":
            return await _exec(client, args.argv)
        if command == "ps":
            table = await client.processes()
            print(format_table(table["titles"], table["processes"]))
            return EXIT_OK
        if command == "devices":
            return await _devices(client, args)
    return EXIT_USAGE


async def _start_like(client: BackendClient, action: str, *, wait: bool, **body: Any) -> int:
    """Run an action that ends in a started sandbox, printing progress until it settles."""
    if not wait:
        print(format_status(await client.action(action, wait=False, **body)))
        return EXIT_OK
    events = client.events()
    first = await anext(events)  # subscribed before the action, so nothing is missed
    last_state = first["status"]["state"]
    result = asyncio.ensure_future(client.action(action, wait=True, **body))
    started = time.monotonic()
    try:
        async for message in events:
            if message["type"] == "progress":
                print(f"  [{message['step']}] {sanitize(message['message'])}", flush=True)
                continue
            if message["type"] == "notice":
                print(f"  ! {sanitize(message['message'])}", flush=True)
                continue
            status = message["status"]
            if status["state"] != last_state:
                last_state = status["state"]
                print(f"  {status['state']}" + (f": {status['reason']}" if status["reason"] else ""),
                      flush=True)
            if result.done() and last_state in START_SETTLED:
                break
            if result.done() and result.exception() is not None:
                break
    finally:
        await events.aclose()
    status = await result
    final = await client.status()
    print(format_status(final))
    if final["state"] == "ready":
        print(f"ready in {time.monotonic() - started:.1f}s")
        return EXIT_OK
    del status
    return EXIT_FAILED


async def _destroy(client: BackendClient, settings: Settings, *, yes: bool) -> int:
    status = await client.status()
    state_dir = status.get("state_dir") or str(settings.sandbox_dir / "state")
    if not yes:
        if not sys.stdin.isatty():
            print("moltconsole: destroy needs --yes when not run interactively", file=sys.stderr)
            return EXIT_USAGE
        answer = await asyncio.to_thread(
            input,
            f"Remove the sandbox container? The state directory {state_dir} and the logs are "
            "kept. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return EXIT_OK
    print(format_status(await client.action("destroy")))
    print(f"kept: {state_dir}")
    return EXIT_OK


async def _exec(client: BackendClient, argv: list[str]) -> int:
    code = EXIT_FAILED
    out, err = sys.stdout.buffer, sys.stderr.buffer
    async for item in client.exec(argv):
        if isinstance(item, int):
            code = item
            break
        stream, chunk = item
        target = err if stream == EXEC_STDERR else out
        target.write(chunk)
        target.flush()
    return code


async def _devices(client: BackendClient, args: argparse.Namespace) -> int:
    if args.decision:
        result = await client.decide_device(args.request_id, args.decision)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"{args.decision}d {args.request_id}")
        return EXIT_OK
    data = await client.devices()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(format_devices(data))
    return EXIT_OK


# --- formatting --------------------------------------------------------------------------
def format_status(status: dict[str, Any]) -> str:
    """Human-readable status lines."""
    lines = [f"state      {status['state']}" + (f"  ({status['desired']} wanted)"
                                                 if status.get("desired") else "")]
    if status.get("reason"):
        lines.append(f"reason     {sanitize(status['reason'])}")
    lines.append(f"openclaw   {status.get('openclaw_version') or '?'}")
    if status.get("container_id"):
        lines.append(f"container  {status['container_id'][:12]}  image {status.get('image') or '?'}")
    if status.get("started_at") and status["state"] in ("starting", "ready", "unhealthy"):
        lines.append(f"uptime     {duration(time.time() - status['started_at'])}")
    lines.append(f"restarts   {status.get('restarts', 0)}")
    if status.get("last_exit_code") is not None:
        lines.append(f"last exit  {status['last_exit_code']}")
    if status.get("gateway_url"):
        lines.append(f"gateway    {status['gateway_url']}")
    if status.get("state_dir"):
        lines.append(f"state dir  {status['state_dir']}")
    return "\n".join(lines)


def format_table(titles: list[str], rows: list[list[str]]) -> str:
    """A plain text table; the last column is not padded."""
    cells = [[sanitize(str(c)) for c in row] for row in [titles, *rows]]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(titles))]
    out = []
    for row in cells:
        parts = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        out.append("  ".join(parts))
    return "\n".join(out)


def format_devices(data: dict[str, Any]) -> str:
    """Pending requests first (they need a decision), then paired devices."""
    lines = []
    pending = data.get("pending") or []
    paired = data.get("paired") or []
    lines.append(f"pending ({len(pending)})")
    for entry in pending:
        name = entry.get("displayName") or entry.get("clientId") or entry.get("deviceId") or "?"
        rid = entry.get("requestId") or "?"
        lines.append(f"  {sanitize(str(rid))}  {sanitize(str(name))}  role={entry.get('role', '?')}"
                     f"  from {sanitize(str(entry.get('remoteIp') or '?'))}")
    lines.append(f"paired ({len(paired)})")
    for entry in paired:
        name = entry.get("displayName") or entry.get("clientId") or entry.get("deviceId") or "?"
        lines.append(f"  {sanitize(str(entry.get('deviceId') or '?'))}  {sanitize(str(name))}")
    if pending:
        lines.append("approve with: moltconsole devices approve REQUEST_ID")
    return "\n".join(lines)
