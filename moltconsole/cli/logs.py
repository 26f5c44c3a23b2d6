"""``moltconsole logs``: the sandbox's logs from the backend's history, then (``-f``) live.

Options are checked before anything connects (a bad ``--grep`` or ``--since`` exits 2 with the
reason). Records arrive in batches over ``/v1/logs``; each prints as one line of inert text, or
as JSON; what a batch says was lost goes to stderr, so ``--json`` output stays parseable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox
from moltconsole.cli.session import on_backend, run, settings_of
from moltconsole.cli.since import parse_since
from moltconsole.client import BackendClient
from moltconsole_shared.commands import EXIT_OK, EXIT_USAGE
from moltconsole_shared.untrusted import sanitize


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``logs [-s NAME] [-f] [--since T] [--grep RE] [--source file|console] [--tail N] [--json]``."""
    logs = sub.add_parser("logs", help="print the sandbox's logs (-f to follow)")
    add_sandbox_option(logs)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--since", help="only lines since 10m, 1h, 2d ago, or an ISO time")
    logs.add_argument("--grep", metavar="REGEX", help="only lines whose message or subsystem match")
    logs.add_argument(
        "--source", choices=("file", "console"),
        help="only lines from OpenClaw's log file, or only those its container printed alone",
    )
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines (then follow)")
    logs.add_argument("--json", action="store_true", help="print one JSON record per line")
    logs.set_defaults(func=logs_command)


def logs_command(args: argparse.Namespace) -> int:
    """``moltconsole logs``."""
    settings = settings_of(args)
    problem = check_logs_args(args)
    if problem is not None:
        print(f"moltconsole logs: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return run(on_backend(settings, lambda client: print_logs(client, args), sandbox=chosen_sandbox(args)))


def check_logs_args(args: argparse.Namespace) -> str | None:
    """Why the ``logs`` options cannot work, or None; checked before anything connects."""
    import re

    if args.grep is not None:
        try:
            re.compile(args.grep)
        except re.error as exc:
            return f"--grep {args.grep!r} is not a valid regular expression: {exc}"
    if args.tail is not None and args.tail < 0:
        return "--tail must be 0 or more"
    if args.since is not None:
        try:
            args.since_time = parse_since(args.since)
        except ValueError as exc:
            return str(exc)
    else:
        args.since_time = None
    return None


def losses(message: dict[str, Any]) -> list[str]:
    """What a batch says was lost, and why, for a person reading the output."""
    dropped = int(message.get("dropped") or 0)
    disk_full = min(int(message.get("disk_full") or 0), dropped)
    notes = []
    if disk_full:
        notes.append(f"{disk_full} lines were not kept: the disk is full "
                     "(free some space, or lower logs.history_mb)")
    if dropped - disk_full:
        notes.append(f"{dropped - disk_full} lines were dropped (this reader fell behind)")
    return notes


async def print_logs(client: BackendClient, args: argparse.Namespace) -> int:
    """Print the records asked for; with ``--follow``, until interrupted."""
    out = sys.stdout
    async for message in client.logs(
        tail=args.tail, since_time=args.since_time, follow=args.follow, grep=args.grep,
        sources=[args.source] if args.source else None,
    ):
        kind = message.get("type")
        if kind == "batch":
            lines = [json.dumps(r) if args.json else format_log_record(r) for r in message["records"]]
            for note in losses(message):
                print(f"moltconsole: {note}", file=sys.stderr)  # stderr: --json output stays parseable
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
        elif kind == "caught_up" and not args.follow:
            break
    return EXIT_OK


def format_log_record(record: dict[str, Any]) -> str:
    """``HH:MM:SS.mmm LEVEL subsystem message``, local time, with sandbox text made inert."""
    when = float(record.get("time") or 0)
    clock = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    level = str(record.get("level") or "-").upper()
    subsystem = sanitize(str(record.get("subsystem") or "-"))
    message = sanitize(str(record.get("message") or ""))
    cut = " [cut]" if record.get("cut") else ""
    return f"{clock} {level:<5} {subsystem} {message}{cut}"

