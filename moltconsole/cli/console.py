"""No verb: the Textual console, attached to the backend (started detached when none runs)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from moltconsole.cli.session import settings_of
from moltconsole.client import BackendError
from moltconsole_shared.commands import EXIT_NO_BACKEND, EXIT_OK


def console_command(args: argparse.Namespace) -> int:
    """``moltconsole``: start or find the backend, then run the console until it quits."""
    from moltconsole.launcher import ensure_backend

    settings = settings_of(args)

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
    from moltconsole.launcher import start_backend

    # A backend that dies while the console runs is started again the same way.
    MoltConsole(settings, notices=notices, backend_starter=lambda: start_backend(settings)).run()
    return EXIT_OK
