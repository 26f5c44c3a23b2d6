"""Sandbox names: one rule for the backend's settings and the CLI's ``-s NAME``.

A name becomes part of a container name (``moltconsole-NAME``), a directory and a URL path,
so it is kept to what is safe in all three.
"""

from __future__ import annotations

import re

SANDBOX_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
NAME_RULE = "1-31 lowercase letters, digits or '-', starting with a letter or digit"


def is_sandbox_name(name: str) -> bool:
    """Whether ``name`` may name a sandbox."""
    return SANDBOX_NAME.fullmatch(name) is not None
