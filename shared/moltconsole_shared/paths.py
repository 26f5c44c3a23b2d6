"""Where moltconsole keeps things: the ``[paths]`` section, read by both sides.

The console finds the backend through these (its socket in the runtime directory; the log of a
backend it starts goes to the data directory); the backend keeps its data and serves its API there.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from moltconsole_shared.config import Section

SOCKET_NAME = "backend.sock"


def xdg_dir(var: str, fallback: str) -> Path:
    """``$var/moltconsole``, or ``~/fallback/moltconsole`` when the variable is unset."""
    base = os.environ.get(var) or str(Path.home() / fallback)
    return Path(base) / "moltconsole"


def default_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/moltconsole`` when that exists, else a per-user directory in /tmp."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "moltconsole"
    return Path(f"/tmp/moltconsole-{os.getuid()}")  # created 0700; the backend checks its owner


class PathSettings(Section):
    """Where moltconsole keeps its data, caches and runtime files."""

    data_dir: Path = Field(default_factory=lambda: xdg_dir("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = Field(default_factory=lambda: xdg_dir("XDG_CACHE_HOME", ".cache"))
    runtime_dir: Path = Field(default_factory=default_runtime_dir)
    # Provider keys (NAME=value lines, mode 0600); empty: <data_dir>/keys.env.
    keys_file: Path | None = None

    @property
    def socket_path(self) -> Path:
        """The backend API's unix socket."""
        return self.runtime_dir / SOCKET_NAME
