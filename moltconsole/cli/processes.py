"""Inside the sandbox: ``exec`` (a command, its output streamed back, its exit code ours) and
``ps`` (the processes)."""

from __future__ import annotations

import argparse
import sys

from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox
from moltconsole.cli.session import UsageError, on_backend, run, settings_of
from moltconsole.client import EXEC_STDERR, BackendClient
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK
from moltconsole_shared.table import format_table


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``exec [-s NAME] -- CMD ...`` and ``ps [-s NAME]``."""
    exec_ = sub.add_parser("exec", help="run a command in the sandbox: moltconsole exec -- CMD")
    add_sandbox_option(exec_)
    exec_.add_argument("argv", nargs=argparse.REMAINDER, help="the command and its arguments")
    exec_.set_defaults(func=exec_command)
    ps = sub.add_parser("ps", help="list the sandbox's processes")
    add_sandbox_option(ps)
    ps.set_defaults(func=ps_command)


def exec_command(args: argparse.Namespace) -> int:
    """``moltconsole exec -- CMD [ARGS...]``."""
    settings = settings_of(args)
    argv = exec_argv(args.argv)
    if not argv:
        raise UsageError("exec needs a command: moltconsole exec -- CMD [ARGS...]")
    return run(on_backend(
        settings, lambda client: run_in_sandbox(client, argv), sandbox=chosen_sandbox(args),
    ))


def exec_argv(remainder: list[str]) -> list[str]:
    """The command for ``exec``: argparse's REMAINDER minus the one ``--`` that ends our options.

    ``exec -- git log -- f`` arrives as ``["--", "git", "log", "--", "f"]``; the later ``--``
    belongs to the command.
    """
    return remainder[1:] if remainder[:1] == ["--"] else remainder


async def run_in_sandbox(client: BackendClient, argv: list[str]) -> int:
    """Run ``argv`` in the sandbox, its stdout and stderr to ours; its exit code."""
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


def ps_command(args: argparse.Namespace) -> int:
    """``moltconsole ps``: the sandbox's processes as ``ps`` shows them."""
    async def ps(client: BackendClient) -> int:
        table = await client.processes()
        # ps reports RSS in KiB; say so in its title.
        titles = [f"{t} (KiB)" if t in ("RSS", "VSZ") else t for t in table["titles"]]
        print(format_table(titles, table["processes"]))
        return EXIT_OK

    return run(on_backend(settings_of(args), ps, sandbox=chosen_sandbox(args)))
