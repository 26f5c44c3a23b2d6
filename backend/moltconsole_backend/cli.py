"""The backend's command line: ``serve`` and ``keys set|ls|rm``.

The user types ``moltconsole serve`` or ``moltconsole keys ...``; the console's command line
hands those argv over unchanged to ``python -m moltconsole_backend`` (it replaces itself with
it: same process, same terminal, same exit code), so the console never imports the backend.
Both verbs work on the backend's own settings and files; ``keys`` also asks a running backend
what it now sees, over its socket. A key's value is never printed or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from moltconsole_backend.settings import Settings, load_settings
from moltconsole_shared.commands import (
    BACKEND_VERBS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    command_parser,
)
from moltconsole_shared.config import ConfigError
from moltconsole_shared.table import format_table
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.status import GatewayStatus


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the backend's verbs (the same spelling as ``moltconsole``'s)."""
    # prog is what users type: moltconsole runs these verbs here with the argv they gave it.
    parser = command_parser(
        "The moltconsole backend's own commands ('python -m moltconsole_backend VERB' runs them too)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("serve", help=BACKEND_VERBS["serve"])
    keys = sub.add_parser("keys", help=BACKEND_VERBS["keys"])
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_set = keys_sub.add_parser(
        "set", help="store a key: prompts without echo, or reads stdin when it is not a terminal"
    )
    keys_set.add_argument("name", help="the variable, e.g. ANTHROPIC_API_KEY")
    keys_ls = keys_sub.add_parser("ls", help="names, where each comes from, and a masked hint")
    keys_ls.add_argument("--json", action="store_true", help="print JSON")
    keys_rm = keys_sub.add_parser("rm", help="remove a key from the keys file")
    keys_rm.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m moltconsole_backend``."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        return _serve(settings)
    return _keys(settings, args)


# --- asking a running backend -----------------------------------------------------------------
class NoBackend(Exception):
    """No backend answers on the socket."""


class BackendRefused(Exception):
    """A backend answered, but not with what was asked; the message says what happened."""


async def ask_backend(socket_path: Path, path: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """``GET path`` from the backend on ``socket_path``, as a JSON object."""
    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://moltconsole", timeout=timeout
    ) as client:
        try:
            response = await client.get(path)
        except httpx.TimeoutException:
            raise BackendRefused(f"it did not answer GET {path} within {timeout:.0f}s") from None
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoBackend(str(exc)) from None
        except httpx.TransportError as exc:
            raise BackendRefused(f"the connection broke during GET {path} ({exc})") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise BackendRefused(
            str(message or f"GET {path} answered HTTP {response.status_code}: "
                f"{sanitize(response.text[:200])}")
        )
    return data


# --- serve ------------------------------------------------------------------------------------
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
    stop = f"kill {pid}" if pid else "stop it"
    try:
        health = await ask_backend(settings.socket_path, "/v1/health")
        gateway = GatewayStatus.from_json(health.get("gateway"))
    except (NoBackend, BackendRefused) as exc:
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


# --- keys -------------------------------------------------------------------------------------
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
    except BackendRefused as exc:
        print(f"moltconsole keys: the running backend could not list its keys: {exc}", file=sys.stderr)
        return EXIT_FAILED
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
        report = await ask_backend(settings.socket_path, "/v1/keys")
    except NoBackend:
        return ["no backend is running; the next one reads the keys file when it starts"]
    except BackendRefused as exc:
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
        report = await ask_backend(settings.socket_path, "/v1/keys")
        report["backend"] = "running"
        return report
    except NoBackend:
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
