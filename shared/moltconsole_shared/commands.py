"""What the two command lines share: the verbs of ``moltconsole`` that belong to the backend,
how to reach them, the options both parsers take, and the exit codes.

``moltconsole serve`` and ``moltconsole keys ...`` work on the backend's own settings and
files, so the backend's command line runs them: ``moltconsole`` replaces itself with
``python -m moltconsole_backend`` and the same argv. Both command lines read this module, so the
list of verbs, their one-line help, the ``--config`` option (which :func:`backend_verb` skips)
and what each exit code means cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # argparse is imported when a parser is built, not on the hand-over path
    import argparse

BACKEND_MODULE = "moltconsole_backend"

# verb -> its line in ``moltconsole --help``
BACKEND_VERBS: dict[str, str] = {
    "serve": "run the backend in the foreground (for systemd)",
    "keys": "provider keys in the keys file, read by the backend without a restart",
}

# Exit codes of both command lines; each means one thing.
EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed; the message says why
EXIT_USAGE = 2  # bad usage or configuration
EXIT_NO_BACKEND = 3  # no backend answers
EXIT_INTERRUPTED = 130  # Ctrl-C


def command_parser(description: str) -> argparse.ArgumentParser:
    """A parser named as users type it (``moltconsole``), with the ``--config`` option."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="moltconsole", description=description)
    parser.add_argument("--config", type=Path, help="TOML config file (default: XDG config dir)")
    return parser


def backend_verb(argv: list[str]) -> str | None:
    """The backend verb ``argv`` asks for (skipping ``--config FILE``), or None.

    Anything else before the verb (``-h``, an unknown option) is left to the console's parser,
    which hands a backend verb over too once it has made sense of the options.
    """
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--config":
            index += 2
        elif arg.startswith("--config="):
            index += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg if arg in BACKEND_VERBS else None
    return None
