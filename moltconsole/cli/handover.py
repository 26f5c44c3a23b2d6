"""``moltconsole serve`` and ``moltconsole keys``: verbs of the backend's own command line.

They work on the backend's settings and files, so this process becomes ``python -m
moltconsole_backend`` with the argv it was given (``os.execv``: same process, same terminal,
the backend's output, prompts and exit code). :func:`moltconsole.cli.main` hands over before it
imports anything heavy; the subparsers here list the verbs in ``--help`` and catch the spellings
that only argparse recognises (``--conf FILE serve``).
"""

from __future__ import annotations

import argparse
import os
import sys

from moltconsole_shared.commands import BACKEND_MODULE, BACKEND_VERBS, EXIT_FAILED


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``serve`` and ``keys``, listed for ``--help``; the backend parses their arguments."""
    for verb, text in BACKEND_VERBS.items():
        backend = sub.add_parser(verb, help=text, add_help=False)
        backend.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        backend.set_defaults(func=hand_over)


def hand_over(args: argparse.Namespace) -> int:
    """A backend verb that reached the console's parser: hand over the argv as it was given."""
    if getattr(args, "sandbox", None) is not None:
        from moltconsole.cli.session import UsageError

        # The backend's command line would only say it does not know -s.
        raise UsageError(f"'{args.command}' is the whole backend's, not one sandbox's: leave out -s")
    return run_backend_cli(args.given_argv)


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
