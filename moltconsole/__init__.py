"""moltconsole: run OpenClaw in a hardened sandbox, with a keyboard-driven console."""

from moltconsole_shared import __version__

__all__ = ["__version__"]
