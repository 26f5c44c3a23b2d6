"""``moltconsole`` command line: the console by default, plus scriptable sandbox actions.

One module per group of verbs, each holding its subcommands' options (``add_parsers``) next to
the code that runs them; every subparser sets ``func``, and :func:`main` calls ``args.func``:

- :mod:`.handover`: ``serve`` and ``keys``, which belong to the backend: this process becomes
  ``python -m moltconsole_backend`` with the same argv;
- :mod:`.console`: no verb, the Textual console;
- :mod:`.status`: ``status`` (and the status block other verbs print);
- :mod:`.sandboxes`: ``ls``, ``create`` and ``remove``: the sandboxes of one backend;
- :mod:`.lifecycle`: ``start``, ``stop``, ``restart``, ``destroy``, ``rebuild`` (upgrades with
  ``--version``), following the backend's events with :mod:`.follow`;
- :mod:`.tokens`: ``rotate-token``;
- :mod:`.processes`: ``exec`` and ``ps``;
- :mod:`.devices`: ``devices``, OpenClaw's device pairing;
- :mod:`.logs`: ``logs``; :mod:`.costs`: ``costs``;
- :mod:`.session`: settings, the event loop and the backend client for all of them, and the
  exit codes of their common failures; :mod:`.choice`: which sandbox a verb addresses
  (``-s NAME`` before or after the verb, or ``$MOLTCONSOLE_SANDBOX``); :mod:`.parser` puts
  the parser together.

The hand-over is decided before anything heavy is imported: ``moltconsole keys ls`` must not
pay for the console's HTTP, WebSocket and settings libraries only to replace itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from moltconsole_shared.commands import EXIT_USAGE, backend_verb

if TYPE_CHECKING:
    import argparse


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moltconsole`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if backend_verb(argv) is not None:
        from moltconsole.cli.handover import run_backend_cli

        return run_backend_cli(argv)
    from moltconsole.cli.parser import build_parser
    from moltconsole.cli.session import UsageError
    from moltconsole_shared.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.given_argv = argv  # the hand-over passes it on unchanged
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except ConfigError as exc:
        print(f"moltconsole: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        parser.error(str(exc))
