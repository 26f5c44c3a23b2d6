"""The verbs of ``moltconsole`` that belong to the backend, and how to reach them.

``moltconsole serve`` and ``moltconsole keys ...`` work on the backend's own settings and
files, so the backend's command line runs them: ``moltconsole`` replaces itself with
``python -m moltconsole_backend`` and the same argv. Both command lines read this table, so the
list of verbs and their one-line help cannot drift apart.
"""

from __future__ import annotations

BACKEND_MODULE = "moltconsole_backend"

# verb -> its line in ``moltconsole --help``
BACKEND_VERBS: dict[str, str] = {
    "serve": "run the backend in the foreground (for systemd)",
    "keys": "provider keys in the keys file, read by the backend without a restart",
}


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
