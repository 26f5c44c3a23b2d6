"""moltconsole: run OpenClaw in a hardened sandbox, with a keyboard-driven console."""

__version__ = "0.1.0"
