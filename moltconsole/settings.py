"""The console's settings: its ``[console]`` section (theme, key bindings) and the ``[paths]``
that lead it to the backend.

Read from the one config file by :func:`moltconsole_shared.config.load_config`, which leaves
the backend's sections to the backend: what the console needs to know of those (a budget's
warning threshold, where the gateway listens, the sandbox's state directory) it asks the
backend's API. Every validation error names the key and where its value came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from moltconsole_shared.config import ConfigError, ConfigRoot, Section, load_config
from moltconsole_shared.paths import PathSettings

__all__ = ["ConfigError", "ConsoleSettings", "PathSettings", "Settings", "load_settings"]


class ConsoleSettings(Section):
    """The Textual console: theme and key bindings (binding id -> keys, e.g. "logs.pause" = "p")."""

    theme: str = "textual-dark"
    keymap: dict[str, str] = Field(default_factory=dict)


class Settings(ConfigRoot):
    """All of the console's settings."""

    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    paths: PathSettings = Field(default_factory=PathSettings)

    @property
    def socket_path(self) -> Path:
        """The backend API's unix socket."""
        return self.paths.socket_path


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The console's settings from the config file and the environment; ConfigError names the
    key and its source."""
    return load_config(Settings, path, env)
