"""The ``moltconsole`` parser: each verb module adds its own subcommands, in ``--help`` order,
and each subcommand names the function that runs it (``func``)."""

from __future__ import annotations

import argparse

from moltconsole.cli import (
    console,
    costs,
    devices,
    handover,
    lifecycle,
    logs,
    memory,
    processes,
    sandboxes,
    status,
    tokens,
)
from moltconsole.cli.choice import add_sandbox_option
from moltconsole_shared.commands import command_parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand; with none, ``func`` opens the console."""
    parser = command_parser(
        "Run the OpenClaw agent in a hardened Docker sandbox. "
        "With no command, opens the console (starting the backend if needed)."
    )
    add_sandbox_option(parser, main=True)
    parser.set_defaults(func=console.console_command)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verbs in (handover, status, sandboxes, lifecycle, processes, devices, logs, costs, memory, tokens):
        verbs.add_parsers(sub)
    return parser
