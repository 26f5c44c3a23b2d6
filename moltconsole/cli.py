"""``moltconsole`` command line: the console by default, plus scriptable sandbox actions."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from moltconsole.client import EXEC_STDERR, BackendClient, BackendError, BackendUnreachable
from moltconsole.formatting import duration
from moltconsole.settings import ConfigError, Settings, load_settings
from moltconsole.untrusted import sanitize
from moltconsole_backend.gateway.reports import Summary

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
    keys = sub.add_parser(
        "keys", help="provider keys in the keys file, read by the backend without a restart"
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_set = keys_sub.add_parser(
        "set", help="store a key: prompts without echo, or reads stdin when it is not a terminal"
    )
    keys_set.add_argument("name", help="the variable, e.g. ANTHROPIC_API_KEY")
    keys_ls = keys_sub.add_parser("ls", help="names, where each comes from, and a masked hint")
    keys_ls.add_argument("--json", action="store_true", help="print JSON")
    keys_rm = keys_sub.add_parser("rm", help="remove a key from the keys file")
    keys_rm.add_argument("name")
    sub.add_parser(
        "rotate-token",
        help="give the sandbox a new gateway token; a running sandbox is re-created with it",
    )
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
    if command == "keys":
        return _keys(settings, args)
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
    state_dir = settings.sandbox_dir / "state"
    try:
        answer = input(
            f"Remove the sandbox container? The state directory {state_dir} and the logs are "
            "kept. [y/N] "
        )
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
    except BackendAlreadyRunning as exc:
        print(f"moltconsole serve: {exc}", file=sys.stderr)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # our own look at it is no news
        for line in asyncio.run(running_backend_advice(settings, exc.pid, os.environ)):
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILED
    except BackendStartError as exc:
        print(f"moltconsole serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def running_backend_advice(
    settings: Settings, pid: int | None, environ: Mapping[str, str]
) -> list[str]:
    """What ``serve`` says about the backend that holds the lock: which providers it lacks keys
    for, and how to hand them over without replacing it (or how to replace it)."""
    from moltconsole_backend.gateway.status import GatewayStatus

    stop = f"kill {pid}" if pid else "stop it"
    try:
        async with BackendClient(settings.socket_path, timeout=10) as client:
            gateway = GatewayStatus.from_json((await client.health()).get("gateway"))
    except BackendError as exc:
        return [f"It does not answer ({exc}); stop it ({stop}) and run moltconsole serve again."]
    if not gateway.enabled:
        return ["Its AI gateway is off (gateway.enabled = false)."]
    lines = []
    if gateway.keys_file_error:
        lines.append(f"It cannot read its keys file: {gateway.keys_file_error}")
    if not gateway.missing_keys:
        lines.append("It has a key for every provider in use; it keeps serving.")
        return lines
    lacking = ", ".join(
        f"provider {m.provider} ({m.variable or 'no variable named'})" for m in gateway.missing_keys
    )
    them = "it" if len(gateway.missing_keys) == 1 else "them"
    lines.append(f"It has no key for: {lacking}, so the agent's calls to {them} fail.")
    for m in gateway.missing_keys:
        if m.variable and environ.get(m.variable):
            lines.append(
                f"This shell has {m.variable}: hand it over without a restart: "
                f"printenv {m.variable} | moltconsole keys set {m.variable}"
            )
        elif m.command:
            lines.append(f"Set {m.variable} with: {m.command} (the running backend reads it at once)")
        else:
            lines.append(m.message)
    lines.append(
        f"Or replace it: {stop}, then run moltconsole serve again (keys in the keys file "
        f"{gateway.keys_file or settings.keys_path} do not depend on the shell that starts it)."
    )
    return lines


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
    from moltconsole_backend.gateway.status import GatewayStatus

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
            return await _destroy(client, settings)
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


async def _destroy(client: BackendClient, settings: Settings) -> int:
    status = await client.action("destroy")
    print(format_status(status))
    print(f"kept: {status.get('state_dir') or settings.sandbox_dir / 'state'}")
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
    import re
    from datetime import datetime

    now = time.time() if now is None else now
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h|d)", text.strip())
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - float(match.group(1)) * unit
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


# --- keys -----------------------------------------------------------------------------------
def _keys(settings: Settings, args: argparse.Namespace) -> int:
    """``moltconsole keys set|ls|rm``: the keys file is edited here, without the backend, and
    the backend (when one runs) is asked what it now sees. A value is never printed or logged."""
    from moltconsole_backend.gateway.keys import KeysFileError, valid_name

    name = getattr(args, "name", "")
    if args.keys_command != "ls" and not valid_name(name):
        print(f"moltconsole keys: {name!r} is not a variable name (letters, digits and _, not "
              "starting with a digit), e.g. ANTHROPIC_API_KEY", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.keys_command == "set":
            return _keys_set(settings, name)
        if args.keys_command == "rm":
            return _keys_rm(settings, name)
        return _keys_ls(settings, json_output=args.json)
    except KeysFileError as exc:
        print(f"moltconsole keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def read_secret(name: str) -> str:
    """The value for ``name``: typed at a prompt that does not echo, or read from stdin when it
    is not a terminal (``printenv NAME | moltconsole keys set NAME``). Surrounding whitespace,
    such as the newline a pipe adds, is dropped."""
    import getpass

    tty = sys.stdin.isatty()
    value = getpass.getpass(f"value for {name} (not shown): ") if tty else sys.stdin.read()
    return value.strip()


def _keys_set(settings: Settings, name: str) -> int:
    from moltconsole_backend.gateway.keys import hint, referenced_variables, set_key

    value = read_secret(name)
    if not value:
        print(f"moltconsole keys: no value given for {name}; nothing was written", file=sys.stderr)
        return EXIT_USAGE
    if "\n" in value:
        print(f"moltconsole keys: the value for {name} has more than one line; give one key "
              "(nothing was written)", file=sys.stderr)
        return EXIT_USAGE
    path = settings.keys_path
    replaced = set_key(path, name, value)
    print(f"{name} {'replaced' if replaced else 'stored'} in {path} ({hint(value)})")
    readers = referenced_variables(settings.gateway)
    if name not in readers:
        known = ", ".join(sorted(readers)) or "none"
        print(f"note: no configured provider reads {name} (they read: {known}); check the "
              "spelling, or name it in the config (api_key_env or an env: header)", file=sys.stderr)
    for line in asyncio.run(_backend_view(settings, name, expect="file")):
        print(line)
    return EXIT_OK


def _keys_rm(settings: Settings, name: str) -> int:
    from moltconsole_backend.gateway.keys import remove_key

    path = settings.keys_path
    if not remove_key(path, name):
        print(f"moltconsole keys: {name} is not in {path}; nothing removed", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name} removed from {path}")
    for line in asyncio.run(_backend_view(settings, name, expect=None)):
        print(line)
    return EXIT_OK


async def _backend_view(settings: Settings, name: str, expect: str | None) -> list[str]:
    """What a running backend now sees for ``name`` (it re-reads the file by itself)."""
    try:
        async with BackendClient(settings.socket_path, timeout=10) as client:
            report = await client.keys()
    except BackendUnreachable:
        return ["no backend is running; the next one reads the keys file when it starts"]
    except BackendError as exc:
        return [f"the backend could not say what it sees: {exc}"]
    pid = report.get("pid") or "?"
    if report.get("keys_file") != str(settings.keys_path):
        return [f"warning: the running backend (pid {pid}) reads its keys from "
                f"{report.get('keys_file')}, not {settings.keys_path}: it was started with "
                "another configuration"]
    if report.get("keys_file_error"):
        return [f"warning: the running backend (pid {pid}) cannot read the keys file: "
                f"{report['keys_file_error']}"]
    row = next((r for r in report.get("keys") or [] if r.get("name") == name), None)
    source = row.get("source") if row else None
    if expect == "file" and source == "file":
        lines = [f"the running backend (pid {pid}) uses it from now on; no restart needed"]
    elif expect is None and source == "environment":
        lines = [f"the running backend (pid {pid}) still has {name} in its own environment and "
                 "uses that; restart it from a shell without it to drop it"]
    else:
        lines = [f"the running backend (pid {pid}) no longer has {name}"]
    lines += [f"still missing: {m.get('message')}" for m in report.get("missing") or []]
    return lines


def _keys_ls(settings: Settings, *, json_output: bool) -> int:
    report = asyncio.run(_keys_report(settings))
    if json_output:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(format_keys(report))
    return EXIT_OK


async def _keys_report(settings: Settings) -> dict[str, Any]:
    """The running backend's view of the keys; without one, the keys file and this shell."""
    try:
        async with BackendClient(settings.socket_path, timeout=10) as client:
            report = await client.keys()
        report["backend"] = "running"
        return report
    except BackendUnreachable:
        pass
    from moltconsole_backend.gateway.keys import KeyEnvironment, key_rows, missing_keys, read_keys

    read_keys(settings.keys_path)  # a file that may not be read is an error here, not a blank
    env = KeyEnvironment(settings.keys_path)
    return {
        "backend": "none", "keys_file": str(settings.keys_path), "keys_file_error": "",
        "keys": key_rows(settings.gateway, env),
        "missing": [m.to_json() for m in missing_keys(settings.gateway, env)],
    }


def format_keys(report: dict[str, Any]) -> str:
    """``moltconsole keys ls``: one row per variable; hints only, never a value."""
    running = report.get("backend") != "none"
    env_label = "environment" if running else "this shell"
    rows = []
    for row in report.get("keys") or []:
        source = row.get("source")
        where = {"file": "keys file", "environment": env_label}.get(str(source), "missing")
        if row.get("shadowed"):
            where += f" (overrides {env_label})"
        rows.append([str(row.get("name")), where, str(row.get("hint") or "-"),
                     ", ".join(row.get("used_by") or []) or "-"])
    lines = [format_table(["NAME", "FROM", "HINT", "USED BY"], rows)] if rows else ["no keys"]
    lines.append("")
    lines.append(f"keys file: {report.get('keys_file')}")
    if running:
        lines.append(f"as seen by the running backend (pid {report.get('pid', '?')}); the keys "
                     "file overrides its environment")
    else:
        lines.append("no backend is running: 'this shell' is what one started from here would "
                     "see besides the keys file")
    if report.get("keys_file_error"):
        lines.append(f"! {report['keys_file_error']}")
    for missing in report.get("missing") or []:
        lines.append(f"! {missing.get('message')}")
    return "\n".join(lines)


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
# (column title, field, kind) of ``moltconsole costs``; kind says how a value is written.
MODEL_COLUMNS = [
    ("provider", "provider", "text"), ("model", "model", "text"), ("requests", "requests", "count"),
    ("errors", "errors", "count"), ("input", "input_tokens", "count"),
    ("output", "output_tokens", "count"), ("cache read", "cache_read_tokens", "count"),
    ("cache write 5m", "cache_write_5m_tokens", "count"),
    ("cache write 1h", "cache_write_1h_tokens", "count"),
    ("reasoning", "reasoning_tokens", "count"), ("cost", "cost_nanos", "money"),
    ("cache saved", "cache_savings_nanos", "money"), ("no price", "unpriced", "count"),
]
DAY_COLUMNS = [
    ("day", "day", "text"), ("requests", "requests", "count"), ("errors", "errors", "count"),
    ("input", "input_tokens", "count"), ("output", "output_tokens", "count"),
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
    if args.json:
        print(json.dumps(costs_json(rows, columns, since, args.by, args.sandbox), indent=2))
    elif args.csv:
        sys.stdout.write(costs_csv(rows, columns))
    else:
        summary = await client.costs_summary(sandbox=args.sandbox)
        print(format_costs(rows, columns, since, args.by, args.sandbox, summary))
    return EXIT_OK


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
