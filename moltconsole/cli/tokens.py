"""``moltconsole rotate-token``: a new gateway token for the agent.

The backend refuses the old token at once and re-creates a running sandbox with the new one
(its state is kept); a stopped sandbox gets it at its next start. Provider keys are the
backend's verb ``keys`` (:mod:`moltconsole.cli.handover`).
"""

from __future__ import annotations

import argparse

from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox
from moltconsole.cli.follow import start_like
from moltconsole.cli.session import on_backend, run, settings_of


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rotate-token [-s NAME]``."""
    rotate = sub.add_parser(
        "rotate-token",
        help="give the sandbox a new gateway token; a running sandbox is re-created with it",
    )
    add_sandbox_option(rotate)
    rotate.set_defaults(func=rotate_token_command)


def rotate_token_command(args: argparse.Namespace) -> int:
    """``moltconsole rotate-token``, followed until the sandbox is back (when it was running)."""
    return run(on_backend(settings_of(args), lambda client: start_like(client, "rotate-token", wait=True),
                          sandbox=chosen_sandbox(args)))
