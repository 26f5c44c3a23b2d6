"""The sandboxes made with ``moltconsole create``: kept in ``<data_dir>/sandboxes.json``.

Sandboxes declared in the config file are the user's to edit there; the ones the CLI or the
console add at run time are remembered here, each with only what it set apart from
``[sandbox]`` (its version, limits and port), so a later change to ``[sandbox]`` reaches them
as it reaches the config's own. The file is replaced atomically (a crash leaves the old or the
new list, never half of one) and is owner-only like the rest of the data directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from moltconsole_shared.files import write_atomically

log = logging.getLogger(__name__)
FILE_NAME = "sandboxes.json"
OVERRIDABLE = ("openclaw_version", "memory_limit", "cpus", "gateway_port")


class RegistryError(Exception):
    """The registry file cannot be read or written; the message says which and what to do."""


class SandboxRegistry:
    """Name -> the settings a created sandbox has apart from ``[sandbox]``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME

    def read(self) -> dict[str, dict[str, Any]]:
        """The created sandboxes, in the order they were made ({} when there are none)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RegistryError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            entries = data["sandboxes"]
            if not isinstance(entries, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise RegistryError(
                f"{self.path} is not a list of sandboxes moltconsole wrote. Move it away to "
                "start without the created sandboxes (their state directories are kept)."
            ) from None
        return {
            str(name): {key: value for key, value in entry.items() if key in OVERRIDABLE}
            for name, entry in entries.items()
            if isinstance(entry, dict)
        }

    def write(self, entries: dict[str, dict[str, Any]]) -> None:
        """Replace the list with ``entries``, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = json.dumps({"version": 1, "sandboxes": entries}, indent=2, sort_keys=False) + "\n"
        try:
            write_atomically(self.path, body.encode("utf-8"))
        except OSError as exc:
            raise RegistryError(f"cannot write {self.path}: {exc.strerror}") from None

