"""What survives backend restarts and host reboots: the wanted state, the restart count and
the last exit code, in one small JSON file in the sandbox directory."""

from __future__ import annotations

import json
import logging

from moltconsole_backend.sandbox import spec
from moltconsole_backend.sandbox.state import Desired, KeptState

log = logging.getLogger(__name__)


class KeptStateFile:
    """``KeptState`` on disk (sandbox/<name>/kept.json); a write replaces it atomically."""

    def __init__(self, paths: spec.SandboxPaths) -> None:
        self.paths = paths

    def read(self) -> KeptState:
        """The kept state, or the defaults (wanted stopped) if there is none or it is unreadable."""
        try:
            return KeptState.from_json(json.loads(self.paths.kept.read_text(encoding="utf-8")))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); assuming the sandbox is wanted stopped", self.paths.kept, exc)
            return KeptState()
        try:  # written by earlier versions: the wanted state alone
            return KeptState(desired=Desired(self.paths.desired.read_text(encoding="utf-8").strip()))
        except (OSError, ValueError):
            return KeptState()

    def write(self, kept: KeptState) -> None:
        """Replace the kept state; a failure is logged, not raised (the sandbox runs on)."""
        try:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            tmp = self.paths.kept.with_suffix(".tmp")
            tmp.write_text(json.dumps(kept.to_json()) + "\n", encoding="utf-8")
            tmp.replace(self.paths.kept)
        except OSError as exc:
            log.warning("cannot record the wanted state and restart count in %s: %s", self.paths.kept, exc)
