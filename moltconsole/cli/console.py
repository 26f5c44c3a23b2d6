"""No verb: the Textual console, attached to the backend (started detached when none runs).

``moltconsole -s NAME`` opens it on that sandbox: the console's client is made addressing it
(``BackendClient(..., sandbox=NAME)``), after the backend has said the sandbox exists, so an
unknown name ends here with the backend's words (which name the sandboxes it has).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from moltconsole.cli.choice import chosen_sandbox
from moltconsole.cli.session import settings_of
from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole_shared.commands import EXIT_FAILED, EXIT_NO_BACKEND, EXIT_OK


def console_command(args: argparse.Namespace) -> int:
    """``moltconsole [-s NAME]``: start or find the backend, then run the console until it quits."""
    from moltconsole.launcher import ensure_backend

    settings = settings_of(args)
    sandbox = chosen_sandbox(args)

    notices: list[str] = []

    async def attach() -> None:
        client = await ensure_backend(settings, notice=notices.append)
        async with client:
            if sandbox is not None:
                client.sandbox = sandbox
                await client.status()  # an unknown name is refused here, not on the Dashboard

    try:
        asyncio.run(attach())
    except BackendUnreachable as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_NO_BACKEND
    except BackendError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from moltconsole.app import MoltConsole
    from moltconsole.launcher import start_backend

    # A backend that dies while the console runs is started again the same way.
    MoltConsole(
        settings, notices=notices, backend_starter=lambda: start_backend(settings),
        client=BackendClient(settings.socket_path, sandbox=sandbox),
    ).run()
    return EXIT_OK
