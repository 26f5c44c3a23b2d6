"""``moltconsole`` command line: the console by default, plus scriptable sandbox actions.

Everything here talks to the backend through its API. The verbs that work on the backend's own
settings and files (``serve``, ``keys``: :data:`BACKEND_VERBS`) are run by the backend's command
line, which this one becomes (``exec``) with the same arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from moltconsole.client import EXEC_STDERR, BackendClient, BackendError, BackendUnreachable
from moltconsole.formatting import duration
from moltconsole.settings import ConfigError, Settings, load_settings
from moltconsole_shared.commands import BACKEND_MODULE, BACKEND_VERBS, backend_verb
from moltconsole_shared.durations import DurationError, parse_duration
from moltconsole_shared.table import format_table
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.reports import Summary
from moltconsole_shared.wire.status import GatewayStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_BACKEND = 3

EXIT_INTERRUPTED = 130

# States a start passes through on its way to an outcome; every other state is an outcome.
# (A start returns once the container runs; the gateway becomes ready later.)
START_IN_PROGRESS = frozenset({"unknown", "building", "starting", "stopping", "crashed"})
# How long to wait for the action's answer once the event stream has ended: a backend that
# shuts down cleanly still answers requests in flight for a moment.
STREAM_END_GRACE = 5.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="moltconsole",
        description="Run the OpenClaw agent in a hardened Docker sandbox. "
        "With no command, opens the console (starting the backend if needed).",
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default: XDG config dir)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, text in BACKEND_VERBS.items():
        # Listed for --help; main() hands them to the backend's parser, arguments and all.
        backend = sub.add_parser(verb, help=text, add_help=False)
        backend.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
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
    logs = sub.add_parser("logs", help="print the sandbox's logs (-f to follow)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--since", help="only lines since 10m, 1h, 2d ago, or an ISO time")
    logs.add_argument("--grep", metavar="REGEX", help="only lines whose message or subsystem match")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines (then follow)")
    logs.add_argument("--json", action="store_true", help="print one JSON record per line")
    costs = sub.add_parser("costs", help="what the agent's LLM calls cost (the AI gateway's ledger)")
    costs.add_argument("--since", default="7d",
                       help="since 10m, 24h, 7d ago, or an ISO time (default: 7d)")
    costs.add_argument("--by", choices=["model", "day"], default="model",
                       help="one row per model (default) or per local calendar day")
    costs.add_argument("--sandbox", metavar="NAME", help="only this sandbox's requests")
    costs_format = costs.add_mutually_exclusive_group()
    costs_format.add_argument("--json", action="store_true", help="print JSON (money in nanos and USD)")
    costs_format.add_argument("--csv", action="store_true", help="print CSV with a header row")
    sub.add_parser(
        "rotate-token",
        help="give the sandbox a new gateway token; a running sandbox is re-created with it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moltconsole`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if backend_verb(argv) is not None:
        return run_backend_cli(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in BACKEND_VERBS:  # reached with options spelled unlike backend_verb expects
        return run_backend_cli(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = args.command
    if command is None:
        return _console(settings)
    if command == "devices" and args.decision and not args.request_id:
        parser.error(f"devices {args.decision} needs a request id (see: moltconsole devices)")
    if command == "exec":
        args.argv = exec_argv(args.argv)
        if not args.argv:
            parser.error("exec needs a command: moltconsole exec -- CMD [ARGS...]")
    if command == "logs":
        problem = check_logs_args(args)
        if problem is not None:
            print(f"moltconsole logs: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if command == "costs":
        try:
            args.since_time = parse_since(args.since)
        except ValueError as exc:
            print(f"moltconsole costs: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if command == "destroy" and not args.yes:
        # Asked here, before the event loop: input() in a worker thread cannot be interrupted
        # by Ctrl-C, and asyncio.run would then wait for that thread forever.
        refused = _confirm_destroy(settings)
        if refused is not None:
            return refused
    try:
        return asyncio.run(_run(settings, args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
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


def run_backend_cli(argv: list[str]) -> int:
    """Become ``python -m moltconsole_backend ARGV``: its output, prompts and exit code are ours.

    Returns only when that cannot start.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", BACKEND_MODULE, *argv]
    try:
        os.execv(sys.executable, command)  # noqa: S606 - our own interpreter, no shell involved
    except OSError as exc:
        print(f"moltconsole: cannot run the backend's command line ({sys.executable} -m "
              f"{BACKEND_MODULE}): {exc.strerror}. Reinstall moltconsole (scripts/setup.sh).",
              file=sys.stderr)
    return EXIT_FAILED


def exec_argv(remainder: list[str]) -> list[str]:
    """The command for ``exec``: argparse's REMAINDER minus the one ``--`` that ends our options.

    ``exec -- git log -- f`` arrives as ``["--", "git", "log", "--", "f"]``; the later ``--``
    belongs to the command.
    """
    return remainder[1:] if remainder[:1] == ["--"] else remainder


def _confirm_destroy(settings: Settings) -> int | None:
    """Ask before removing the container: None to go ahead, else the exit code to stop with."""
    if not sys.stdin.isatty():
        print("moltconsole: destroy removes the sandbox container; when not run interactively, "
              "confirm with: moltconsole destroy --yes", file=sys.stderr)
        return EXIT_USAGE
    try:
        state_dir = asyncio.run(_state_dir(settings))
        kept = f"The state directory {state_dir} and the logs are" if state_dir else (
            "Its state directory and its logs are"
        )
        answer = input(f"Remove the sandbox container? {kept} kept. [y/N] ")
    except KeyboardInterrupt:
        print()
        return EXIT_INTERRUPTED
    except EOFError:
        print()
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        print("nothing removed")
        return EXIT_OK
    return None


async def _state_dir(settings: Settings) -> str | None:
    """The sandbox's state directory, as the backend says (None when none answers yet)."""
    try:
        async with BackendClient(settings.socket_path, timeout=10) as client:
            state_dir = (await client.status()).get("state_dir")
    except BackendError:
        return None
    return str(state_dir) if state_dir else None


def _console(settings: Settings) -> int:
    from moltconsole.launcher import ensure_backend

    notices: list[str] = []

    async def attach() -> None:
        client = await ensure_backend(settings, notice=notices.append)
        await client.aclose()

    try:
        asyncio.run(attach())
    except BackendError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_NO_BACKEND
    from moltconsole.app import MoltConsole

    MoltConsole(settings, notices=notices).run()
    return EXIT_OK


async def _gateway_lines(client: BackendClient, status: dict[str, Any]) -> list[str]:
    """Where the AI gateway listens, what it spent today, and what needs attention (missing
    keys, a budget spent or past its warning threshold), for `status`."""
    from moltconsole.widgets.cost_format import money

    block = status["gateway"] if "gateway" in status else (await client.health()).get("gateway")
    gateway = GatewayStatus.from_json(block)
    if not gateway.enabled:
        return ["AI gateway: off (gateway.enabled = false)"]
    where = gateway.listening or "not listening"
    try:
        summary = await client.costs_summary()
    except BackendError:
        lines = [f"AI gateway: {where}"]
    else:
        lines = [f"AI gateway: {where}, spent today {money(summary.today_nanos)}"]
    for severity, text in gateway.problems():
        lines.append(f"  {'!' if severity == 'error' else '~'} {sanitize(text)}")
    return lines


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    command = args.command
    if command == "status":
        async with BackendClient(settings.socket_path) as client:
            status = await client.status()
            if args.json:
                print(json.dumps(status, indent=2))
                return EXIT_OK
            print(format_status(status))
            print("\n".join(await _gateway_lines(client, status)))
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
            return await _destroy(client)
        if command == "rebuild":
            return await _start_like(client, "rebuild", wait=True, version=args.version)
        if command == "rotate-token":
            return await _start_like(client, "rotate-token", wait=True)
        if command == "exec":
            return await _exec(client, args.argv)
        if command == "ps":
            table = await client.processes()
            print(format_table(table["titles"], table["processes"]))
            return EXIT_OK
        if command == "devices":
            return await _devices(client, args)
        if command == "logs":
            return await _logs(client, args)
        if command == "costs":
            return await _costs(client, args)
    return EXIT_USAGE


class _Progress:
    """Prints the backend's progress lines and state changes as they arrive."""

    def __init__(self, state: str) -> None:
        self.state = state

    def show(self, message: dict[str, Any]) -> None:
        """Print one event-stream message, if it says something new."""
        kind = message.get("type")
        if kind == "progress":
            print(f"  [{sanitize(str(message.get('step')))}] {sanitize(str(message.get('message')))}",
                  flush=True)
        elif kind == "notice":
            print(f"  ! {sanitize(str(message.get('message')))}", flush=True)
        elif kind == "status":
            status = message["status"]
            if status["state"] != self.state:
                self.state = status["state"]
                reason = status.get("reason")
                print(f"  {self.state}" + (f": {sanitize(reason)}" if reason else ""), flush=True)


async def _next_message(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The event stream's next message, or None once the backend has closed it."""
    return await anext(events, None)


def _backend_gone(action: str) -> BackendUnreachable:
    return BackendUnreachable(
        f"the backend closed its event stream during '{action}', so it has probably stopped or "
        "crashed; its log says why. Check with 'moltconsole status', then run "
        f"'moltconsole {action}' again."
    )


async def _start_like(client: BackendClient, action: str, *, wait: bool, **body: Any) -> int:
    """Run an action that ends in a started sandbox, printing progress until it settles."""
    if not wait:
        print(format_status(await client.action(action, wait=False, **body)))
        return EXIT_OK
    started = time.monotonic()
    events = client.events()
    try:
        first = await _next_message(events)  # subscribed before the action, so nothing is missed
        if first is None:
            raise _backend_gone(action)
        status, error = await _act_and_follow(
            client, events, action, body, _Progress(first["status"]["state"])
        )
    finally:
        await events.aclose()
    print(format_status(status))
    if error is not None:
        print(f"moltconsole: {action} failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if action == "rotate-token":
        print("gateway token replaced: the previous one is refused from now on")
    if status["state"] == "ready":
        if action == "rotate-token":
            print("the sandbox was re-created with the new token (its state is kept)")
        print(f"ready in {time.monotonic() - started:.1f}s")
        return EXIT_OK
    if action in ("rebuild", "rotate-token") and status["state"] in ("absent", "stopped") \
            and status.get("desired") == "stopped":
        print("image rebuilt; the sandbox was not running, so it was not started. "
              "Start it with: moltconsole start" if action == "rebuild" else
              "the sandbox was not running; its next start creates it with the new token")
        return EXIT_OK
    reason = status.get("reason")
    container = status.get("container_id")
    where = f"'docker logs {container[:12]}' shows the gateway's output" if container else \
        "the backend's log says more"
    print(f"moltconsole: the sandbox is {status['state']}, not ready"
          + (f": {sanitize(reason)}" if reason else "")
          + f". {where}; fix the cause and run 'moltconsole {action}' again.", file=sys.stderr)
    return EXIT_FAILED


async def _act_and_follow(
    client: BackendClient, events: AsyncIterator[dict[str, Any]], action: str,
    body: dict[str, Any], progress: _Progress,
) -> tuple[dict[str, Any], BackendError | None]:
    """Run ``action`` while printing events; the status it settled in, and its error if any.

    Waits on the next event and on the action's answer together, so neither can be missed:
    the answer often arrives after the last event, with nothing more to come.
    """
    result = asyncio.ensure_future(client.action(action, wait=True, **body))
    message_task: asyncio.Task[dict[str, Any] | None] | None = asyncio.create_task(
        _next_message(events)
    )
    try:
        while not result.done():
            if message_task is None:  # the stream ended: the backend is going away
                done, _ = await asyncio.wait({result}, timeout=STREAM_END_GRACE)
                if not done:
                    raise _backend_gone(action)
                break
            await asyncio.wait({result, message_task}, return_when=asyncio.FIRST_COMPLETED)
            if message_task.done():
                message = message_task.result()
                message_task = None
                if message is not None:
                    progress.show(message)
                    message_task = asyncio.create_task(_next_message(events))
        try:
            status = result.result()
        except BackendUnreachable:
            raise
        except BackendError as exc:
            return await client.status(), exc
        # The answer may be older than events already printed (a start answers "starting"
        # and the gateway may be ready by now): take a fresh snapshot, then follow changes.
        if status["state"] in START_IN_PROGRESS:
            status = await client.status()
        while status["state"] in START_IN_PROGRESS:
            if message_task is None:
                raise _backend_gone(action)
            message = await message_task
            message_task = None
            if message is None:
                continue
            progress.show(message)
            message_task = asyncio.create_task(_next_message(events))
            if message.get("type") == "status":
                # Re-read rather than trust the event: it may predate the snapshot.
                status = await client.status()
        return status, None
    finally:
        pending = [t for t in (result, message_task) if t is not None]
        for task in pending:
            task.cancel()
        # Collect them, so no "exception was never retrieved" warning is left behind.
        await asyncio.gather(*pending, return_exceptions=True)


async def _destroy(client: BackendClient) -> int:
    status = await client.action("destroy")
    print(format_status(status))
    print(f"kept: {status.get('state_dir') or 'the state directory and the logs'}")
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
            done = {"approve": "approved", "reject": "rejected"}[args.decision]
            print(f"{done} {sanitize(args.request_id)}")
        return EXIT_OK
    data = await client.devices()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(format_devices(data))
    return EXIT_OK


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration ago (``90s``, ``10m``, ``1h``, ``2d``) or an ISO 8601 time."""
    from datetime import datetime

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except DurationError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (10m, 1h, 2d) nor an ISO time "
            "(2026-11-25T12:00:00)"
        ) from None
    return when.timestamp()  # a naive time is local time, as a user typing it means


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


def _losses(message: dict[str, Any]) -> list[str]:
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


async def _logs(client: BackendClient, args: argparse.Namespace) -> int:
    out = sys.stdout
    async for message in client.logs(
        tail=args.tail, since_time=args.since_time, follow=args.follow, grep=args.grep,
    ):
        kind = message.get("type")
        if kind == "batch":
            lines = [json.dumps(r) if args.json else format_log_record(r) for r in message["records"]]
            for note in _losses(message):
                print(f"moltconsole: {note}", file=sys.stderr)  # stderr: --json output stays parseable
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
        elif kind == "caught_up" and not args.follow:
            break
    return EXIT_OK


# --- formatting --------------------------------------------------------------------------
def format_log_record(record: dict[str, Any]) -> str:
    """``HH:MM:SS.mmm LEVEL subsystem message``, local time, with sandbox text made inert."""
    when = float(record.get("time") or 0)
    clock = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    level = str(record.get("level") or "-").upper()
    subsystem = sanitize(str(record.get("subsystem") or "-"))
    message = sanitize(str(record.get("message") or ""))
    cut = " [cut]" if record.get("cut") else ""
    return f"{clock} {level:<5} {subsystem} {message}{cut}"


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


# --- costs --------------------------------------------------------------------------------
# (column title, field, kind) of ``moltconsole costs``; kind says how a value is written
# ("data": in --json and --csv only). Token words as on the Costs screen: "prompt" is every
# token sent, cache included; the API's input_tokens is its uncached part.
MODEL_COLUMNS = [
    ("provider", "provider", "text"), ("model", "model", "text"), ("requests", "requests", "count"),
    ("errors", "errors", "count"), ("prompt", "prompt_tokens", "count"),
    ("uncached", "input_tokens", "data"),
    ("output", "output_tokens", "count"), ("cache read", "cache_read_tokens", "count"),
    ("cache write 5m", "cache_write_5m_tokens", "count"),
    ("cache write 1h", "cache_write_1h_tokens", "count"),
    ("reasoning", "reasoning_tokens", "count"), ("cost", "cost_nanos", "money"),
    ("cache saved", "cache_savings_nanos", "money"), ("no price", "unpriced", "count"),
]
DAY_COLUMNS = [
    ("day", "day", "text"), ("requests", "requests", "count"), ("errors", "errors", "count"),
    ("prompt", "prompt_tokens", "count"), ("uncached", "input_tokens", "data"),
    ("output", "output_tokens", "count"),
    ("cache read", "cache_read_tokens", "count"), ("cache write", "cache_write_tokens", "count"),
    ("cost", "cost_nanos", "money"), ("no price", "unpriced", "count"),
]


async def _costs(client: BackendClient, args: argparse.Namespace) -> int:
    import dataclasses

    since = args.since_time
    if args.by == "model":
        rows = [dataclasses.asdict(r) for r in
                await client.costs_models(since=since, sandbox=args.sandbox)]
        columns = MODEL_COLUMNS
    else:
        rows = [dataclasses.asdict(r) for r in
                await client.costs_days(since=since, sandbox=args.sandbox)]
        columns = DAY_COLUMNS
    rows = [with_prompt_tokens(row) for row in rows]
    if args.json:
        print(json.dumps(costs_json(rows, columns, since, args.by, args.sandbox), indent=2))
    elif args.csv:
        sys.stdout.write(costs_csv(rows, columns))
    else:
        summary = await client.costs_summary(sandbox=args.sandbox)
        print(format_costs(rows, columns, since, args.by, args.sandbox, summary))
    return EXIT_OK


def with_prompt_tokens(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``prompt_tokens``: uncached input, cache reads and cache writes together."""
    writes = sum(row.get(f, 0) for f in ("cache_write_tokens", "cache_write_5m_tokens",
                                          "cache_write_1h_tokens"))
    return {**row, "prompt_tokens": row["input_tokens"] + row["cache_read_tokens"] + writes}


def _usd_exact(nanos: int) -> str:
    """Nano-dollars as an exact decimal string (``12.345678900``), for scripts."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"


def costs_json(
    rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], since: float, by: str,
    sandbox: str | None,
) -> dict[str, Any]:
    """``moltconsole costs --json``: rows as the API has them plus ``*_usd`` amounts.

    A row none of whose requests has a price has a null cost, never 0.
    """
    out = []
    for row in rows:
        item = {field: row[field] for _, field, _ in columns}
        for _, field, kind in columns:
            if kind == "money":
                item[field.replace("_nanos", "_usd")] = row[field] / 1_000_000_000
        if _all_unpriced(row):
            item["cost_nanos"] = item["cost_usd"] = None
        out.append(item)
    return {"since": since, "by": by, "sandbox": sandbox, "rows": out}


def costs_csv(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """``moltconsole costs --csv``: one header row, money as exact USD decimals; the cost of a
    row none of whose requests has a price is empty, never 0."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([field.replace("_nanos", "_usd") for _, field, _ in columns])
    for row in rows:
        writer.writerow([
            ("" if field == "cost_nanos" and _all_unpriced(row) else _usd_exact(row[field]))
            if kind == "money" else row[field]
            for _, field, kind in columns
        ])
    return buffer.getvalue()


def _all_unpriced(row: dict[str, Any]) -> bool:
    return bool(row["unpriced"]) and row["unpriced"] >= row["requests"]


def _cost_cell(row: dict[str, Any], field: str) -> str:
    from moltconsole.widgets.cost_format import NO_PRICE, money

    if field == "cost_nanos" and _all_unpriced(row):
        return NO_PRICE  # nothing in this row has a price: not $0
    text = money(row[field])
    if field != "cost_nanos":
        return text
    return text + (" *" if row["unpriced"] else "  ")  # "  " keeps the amounts aligned


def format_costs(
    rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], since: float, by: str,
    sandbox: str | None, summary: Summary,
) -> str:
    """The human table: a summary line, one row per model or day, a total, and notes."""
    from moltconsole.widgets.cost_format import money, rate

    columns = [column for column in columns if column[2] != "data"]

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(since))
    who = f"sandbox {sanitize(sandbox)}" if sandbox else "all sandboxes"
    lines = [
        f"today {money(summary.today_nanos)}   7 days {money(summary.week_nanos)}   "
        f"30 days {money(summary.month_nanos)}   burn {rate(summary.burn_rate_nanos_per_hour)}",
        "",
        f"spend by {by} since {when}, {who}",
    ]
    if not rows:
        lines.append("no requests in this period (the agent's LLM calls are recorded when they go "
                     "through the AI gateway)")
        return "\n".join(lines)
    total: dict[str, Any] = {field: 0 for _, field, kind in columns if kind != "text"}
    for row in rows:
        for field in total:
            total[field] += row[field]
    total.update({field: "" for _, field, kind in columns if kind == "text"})
    total[columns[0][1]] = "total"
    table = [[title for title, _, _ in columns]]
    for row in [*rows, total]:
        cells = []
        for _, field, kind in columns:
            if kind == "money":
                cells.append(_cost_cell(row, field))
            elif kind == "count":
                cells.append(f"{row[field]:,}")
            else:
                cells.append(sanitize(str(row[field])))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for n, cells in enumerate(table):
        if n == len(table) - 1:
            lines.append("  ".join("-" * w for w in widths))
        parts = [
            cell.ljust(widths[i]) if columns[i][2] == "text" else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append("  ".join(parts).rstrip())
    unpriced = total["unpriced"]
    if unpriced:
        names = sorted({sanitize(str(r["model"])) for r in rows if r["unpriced"] and "model" in r})
        lines.append("")
        lines.append(
            f"{unpriced:,} request(s) have no price and are not in the amounts (* marks a partial "
            "amount)" + (f": {', '.join(names)}" if names else "")
            + ". Add prices under [gateway.prices] in the config."
        )
    idle = summary.idle_nanos
    if idle or summary.background_nanos:
        lines.append("")
        lines.append(
            f"idle spend {money(idle)} in the last 24h with no user message "
            f"(heartbeat/background requests: {money(summary.background_nanos)})"
        )
    return "\n".join(lines)
