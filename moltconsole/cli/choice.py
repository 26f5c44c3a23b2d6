"""Which sandbox a verb addresses: ``-s NAME`` / ``--sandbox NAME``, before or after the verb,
else ``$MOLTCONSOLE_SANDBOX``, else the backend's default sandbox.

The main parser and every verb that addresses one sandbox take the option (so ``moltconsole -s
work status`` and ``moltconsole status -s work`` mean the same); a verb's own copy has no
default, so it never overwrites what was given before the verb, and the one given last wins.
Names are checked here, before anything connects, with the rule the backend applies: a name
that cannot exist is a usage error (exit 2), not a round trip.
"""

from __future__ import annotations

import argparse
import os

from moltconsole.cli.session import UsageError
from moltconsole_shared.names import NAME_RULE, is_sandbox_name

SANDBOX_ENV = "MOLTCONSOLE_SANDBOX"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a sandbox's name, or None when it can."""
    if is_sandbox_name(name):
        return None
    return f"{name!r} is not a sandbox name: use {NAME_RULE}"


def sandbox_name(text: str) -> str:
    """argparse ``type`` of a sandbox name: the name, or the reason it cannot be one."""
    problem = name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_sandbox_option(
    parser: argparse.ArgumentParser, *, main: bool = False, text: str | None = None,
) -> None:
    """``-s NAME`` / ``--sandbox NAME`` on ``parser``; ``main``: the one before the verb, whose
    default (None) a verb's copy leaves alone."""
    parser.add_argument(
        "-s", "--sandbox", metavar="NAME", type=sandbox_name,
        default=None if main else argparse.SUPPRESS,
        help=text or f"the sandbox to act on (default: ${SANDBOX_ENV}, else the backend's default)",
    )


def chosen_sandbox(args: argparse.Namespace, env: dict[str, str] | None = None) -> str | None:
    """The sandbox the verb addresses: ``-s``, else ``$MOLTCONSOLE_SANDBOX``, else None (the
    backend's default). A variable that holds no valid name is a usage error that names it."""
    given: str | None = getattr(args, "sandbox", None)
    if given is not None:
        return given
    value = (os.environ if env is None else env).get(SANDBOX_ENV, "")
    if not value:
        return None
    problem = name_problem(value)
    if problem is not None:
        raise UsageError(f"{SANDBOX_ENV}: {problem}. Fix or unset it, or give -s NAME.")
    return value


def command_for(verb: str, sandbox: str | None) -> str:
    """How to type ``verb`` for this sandbox, for the hints in messages."""
    return f"moltconsole -s {sandbox} {verb}" if sandbox else f"moltconsole {verb}"
