"""A sandbox's lifecycle: ``start``, ``stop``, ``restart``, ``destroy`` and ``rebuild``
(``--version V`` upgrades or downgrades OpenClaw), on the sandbox ``-s NAME`` chooses.

Each runs on a backend that is started when none runs. Starting verbs follow the backend's
events until the sandbox settles (:mod:`moltconsole.cli.follow`); ``destroy`` asks first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox, command_for
from moltconsole.cli.follow import start_like
from moltconsole.cli.session import confirmed, on_backend, run, settings_of
from moltconsole.cli.status import format_status
from moltconsole.client import BackendClient, BackendError
from moltconsole.settings import Settings
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``start``, ``stop``, ``restart`` [``--no-wait``], ``destroy`` [``--yes``], ``rebuild``
    [``--version V``]."""
    for name, text, command in (
        ("start", "build the image if needed, create and start the sandbox, wait until ready",
         start_command),
        ("stop", "stop the sandbox (state is kept)", stop_command),
        ("restart", "stop, then start the sandbox", start_command),
    ):
        cmd = sub.add_parser(name, help=text)
        add_sandbox_option(cmd)
        cmd.add_argument("--no-wait", action="store_true", help="return without waiting")
        cmd.set_defaults(func=command)
    destroy = sub.add_parser("destroy", help="remove the container; the state directory is kept")
    add_sandbox_option(destroy)
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.set_defaults(func=destroy_command)
    rebuild = sub.add_parser("rebuild", help="rebuild the image and recreate the container")
    add_sandbox_option(rebuild)
    rebuild.add_argument("--version", help="OpenClaw version to upgrade/downgrade to")
    rebuild.set_defaults(func=rebuild_command)


def start_command(args: argparse.Namespace) -> int:
    """``moltconsole start|restart``: until the sandbox is ready (or why not), unless --no-wait."""
    return run(on_backend(
        settings_of(args), lambda client: start_like(client, args.command, wait=not args.no_wait),
        sandbox=chosen_sandbox(args),
    ))


def stop_command(args: argparse.Namespace) -> int:
    """``moltconsole stop``."""
    async def stop(client: BackendClient) -> int:
        print(format_status(await client.action("stop", wait=not args.no_wait)))
        return EXIT_OK

    return run(on_backend(settings_of(args), stop, sandbox=chosen_sandbox(args)))


def rebuild_command(args: argparse.Namespace) -> int:
    """``moltconsole rebuild [--version V]``."""
    return run(on_backend(settings_of(args), lambda client: rebuild(client, args),
                          sandbox=chosen_sandbox(args)))


async def rebuild(client: BackendClient, args: argparse.Namespace) -> int:
    """Rebuild the image (at ``--version``) and re-create a running sandbox with it."""
    return await start_like(client, "rebuild", wait=True, version=args.version)


def destroy_command(args: argparse.Namespace) -> int:
    """``moltconsole destroy [--yes]``."""
    settings = settings_of(args)
    sandbox = chosen_sandbox(args)
    if not args.yes:
        # Asked here, before the event loop: input() in a worker thread cannot be interrupted
        # by Ctrl-C, and asyncio.run would then wait for that thread forever.
        refused = confirm_destroy(settings, sandbox)
        if refused is not None:
            return refused
    return run(on_backend(settings, destroy, sandbox=sandbox))


def confirm_destroy(settings: Settings, sandbox: str | None = None) -> int | None:
    """Ask before removing the container: None to go ahead, else the exit code to stop with."""
    if not sys.stdin.isatty():
        print("moltconsole: destroy removes the sandbox container; when not run interactively, "
              f"confirm with: {command_for('destroy', sandbox)} --yes", file=sys.stderr)
        return EXIT_USAGE
    try:
        state_dir = asyncio.run(state_dir_of(settings, sandbox))
    except BackendError as exc:  # no such sandbox: say so rather than ask
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_FAILED
    kept = f"The state directory {state_dir} and the logs are" if state_dir else (
        "Its state directory and its logs are"
    )
    which = f"sandbox {sandbox}'s container" if sandbox else "the sandbox container"
    return confirmed(f"Remove {which}? {kept} kept. [y/N] ")


async def state_dir_of(settings: Settings, sandbox: str | None) -> str | None:
    """The sandbox's state directory, as the backend says (None when none answers yet); a
    sandbox the backend does not know is its BackendError (404), naming those it has."""
    try:
        async with BackendClient(settings.socket_path, timeout=10, sandbox=sandbox) as client:
            state_dir = (await client.status()).get("state_dir")
    except BackendError as exc:
        if exc.status == 404:
            raise
        return None
    return str(state_dir) if state_dir else None


async def destroy(client: BackendClient) -> int:
    """Remove the container, and say what was kept."""
    status = await client.action("destroy")
    print(format_status(status))
    print(f"kept: {status.get('state_dir') or 'the state directory and the logs'}")
    return EXIT_OK

