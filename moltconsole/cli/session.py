"""What every verb that talks to the backend shares: settings, the event loop, the client, and
the exit codes of the failures common to all of them.

A verb's command function loads the settings (:func:`settings_of`), checks its options (a
:class:`UsageError` is reported with the usage line), then runs its coroutine with :func:`run`.
Verbs that act on a sandbox get their client from :func:`on_backend`, which starts a backend
when none runs and addresses the sandbox chosen with ``-s`` (:mod:`.choice`); ``status``,
``ls`` and the questions of ``destroy`` and ``remove`` only ask a running one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole.settings import Settings, load_settings
from moltconsole_shared.commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_BACKEND,
    EXIT_OK,
)


class UsageError(Exception):
    """The arguments cannot work; :func:`moltconsole.cli.main` says so with the usage line and
    exits 2, as argparse does."""


def settings_of(args: argparse.Namespace) -> Settings:
    """The console's settings from ``--config`` (or the default file) and the environment."""
    return load_settings(args.config)


def run(work: Coroutine[Any, Any, int]) -> int:
    """Run a verb's coroutine; the failures every verb shares become their exit codes."""
    try:
        return asyncio.run(work)
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


async def on_backend(
    settings: Settings, work: Callable[[BackendClient], Awaitable[int]], *, sandbox: str | None = None,
) -> int:
    """``work`` with a client of the backend, which is started (detached) when none runs; the
    client addresses ``sandbox`` (None: the backend's default)."""
    from moltconsole.launcher import ensure_backend

    client = await ensure_backend(settings)
    client.sandbox = sandbox
    async with client:
        return await work(client)


def confirmed(question: str, declined: str = "nothing removed") -> int | None:
    """Ask ``question`` (a y/N prompt) on the terminal: None when the user said yes, else the
    exit code to end with (``declined`` is printed, or it was interrupted)."""
    try:
        answer = input(question)
    except KeyboardInterrupt:
        print()
        return EXIT_INTERRUPTED
    except EOFError:
        print()
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        print(declined)
        return EXIT_OK
    return None
