"""Attach to the running backend, or start one detached that outlives the console (like tmux)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.settings import Settings
from moltconsole_shared.untrusted import sanitize as inert
from moltconsole_shared.wire.status import GatewayStatus

LOCK_NAME = "backend.lock"  # the backend's one-per-user lock in the runtime directory


def backend_log_path(settings: Settings) -> str:
    """Where a detached backend writes its log."""
    return str(settings.paths.data_dir / "backend.log")


def spawn_detached(settings: Settings) -> subprocess.Popen[bytes]:
    """Start ``moltconsole serve`` in its own session, logging to the data directory."""
    settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = backend_log_path(settings)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        args = [sys.executable, "-m", "moltconsole"]
        if settings.source is not None:
            args += ["--config", str(settings.source)]
        args.append("serve")
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)


def _print_notice(text: str) -> None:
    print(f"moltconsole: {text}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class BackendLaunch:
    """How a backend came to answer: ``found`` already running, ``started`` here, or ``joined``:
    another console (or ``moltconsole serve``) started one at the same moment and this one,
    started here too, gave way to it. ``health`` is its ``/v1/health``."""

    how: Literal["found", "started", "joined"]
    health: dict[str, Any]

    @property
    def pid(self) -> int | None:
        """The backend's process id, as it says."""
        pid = self.health.get("pid")
        return pid if isinstance(pid, int) else None

    def describe(self) -> str:
        """What happened, in a few words."""
        pid = self.pid or "?"
        if self.how == "started":
            return f"started a new backend (pid {pid})"
        if self.how == "joined":
            return f"another console started a backend at the same moment (pid {pid}); attached to it"
        return f"a backend answers again (pid {pid})"


async def ensure_backend(
    settings: Settings, *, timeout: float = 60.0, notice: Callable[[str], None] | None = None,
) -> BackendClient:
    """A client connected to a live backend, starting one when none answers.

    A backend started here inherits this shell's environment; if that leaves a provider in use
    without a key (it is in neither the keys file nor this environment), ``notice`` (stderr by
    default) is told which, and how to set it, so a keyless backend never starts unnoticed.
    """
    client = BackendClient(settings.socket_path)
    try:
        launch = await _launch(client, settings, timeout)
    except BaseException:
        await client.aclose()  # also when the backend answered with an error
        raise
    if launch.how == "started":
        text = started_backend_notice(launch.health)
        if text:
            (notice or _print_notice)(text)
    return client


async def start_backend(settings: Settings, *, timeout: float = 60.0) -> BackendLaunch:
    """The backend that answers, else one started here as :func:`ensure_backend` starts it.

    For a console whose backend went away; BackendUnreachable says why none could be started.
    """
    async with BackendClient(settings.socket_path) as client:
        return await _launch(client, settings, timeout)


def started_backend_notice(health: dict[str, Any]) -> str:
    """What to say about a backend just started from this shell: "" when it has every key."""
    gateway = GatewayStatus.from_json(health.get("gateway"))
    if not gateway.enabled or not (gateway.missing_keys or gateway.keys_file_error):
        return ""
    parts = [f"started a new backend (pid {health.get('pid', '?')}) from this shell's environment"]
    if gateway.keys_file_error:
        parts.append(f"it cannot read the keys file: {gateway.keys_file_error}")
    if gateway.missing_keys:
        lacking = ", ".join(
            f"provider {m.provider} ({m.variable or 'no variable named'})" for m in gateway.missing_keys
        )
        fixes = "; ".join(m.command for m in gateway.missing_keys if m.command)
        parts.append(
            f"it has no key for {lacking}, so the agent's calls to "
            f"{'it' if len(gateway.missing_keys) == 1 else 'them'} fail"
            + (f". Set {'it' if len(gateway.missing_keys) == 1 else 'them'} with: {fixes} "
               "(the backend reads the keys file at once, no restart)" if fixes else "")
        )
    return "; ".join(parts)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


STARTUP_WORDS_MAX = 2000  # characters of the failed start's own words shown with the error


def startup_words(log_path: str, start: int) -> str:
    """What a backend that failed at startup wrote to its log after ``start`` (e.g. the config
    error naming the key and the file), as inert text on one line, at most STARTUP_WORDS_MAX."""
    try:
        with open(log_path, "rb") as log:
            log.seek(start)
            written = log.read(64 * 1024)
    except OSError:
        return ""
    lines = [inert(line.strip()) for line in written.decode("utf-8", "replace").splitlines() if line.strip()]
    words = " ".join(lines)
    if len(words) > STARTUP_WORDS_MAX:
        words = words[: STARTUP_WORDS_MAX - 1] + "…"
    return words


async def _launch(client: BackendClient, settings: Settings, timeout: float) -> BackendLaunch:
    """Attach to the backend that answers, or start one and wait until it does.

    Two consoles that find no backend at the same moment both start one; the backend's lock
    lets one through and the other exits at once. The one whose backend exited then looks at
    who holds the lock: another live backend is the winner, which it waits for and attaches
    to, instead of reporting a failed start.
    """
    try:
        return BackendLaunch("found", await client.health())
    except BackendUnreachable:
        pass
    log_path = backend_log_path(settings)
    log_start = _size(log_path)
    process = spawn_detached(settings)
    deadline = time.monotonic() + timeout
    delay = 0.02
    winner: int | None = None  # the backend that took the lock instead of ours
    while time.monotonic() < deadline:
        if winner is None and process.poll() is not None:
            winner = lock_holder(settings)
            if winner is None or winner == process.pid:
                said = startup_words(log_path, log_start)
                raise BackendUnreachable(
                    f"the backend exited at startup (code {process.returncode})"
                    + (f": {said}" if said else "")
                    + f"; see {log_path} for the whole log."
                )
        elif winner is not None and not process_alive(winner):
            raise BackendUnreachable(
                f"the backend (pid {winner}) started at the same time by another console exited "
                f"at startup; see {log_path} for why, then try again."
            )
        try:
            health = await client.health()
        except BackendUnreachable:
            # Another process: there is no event to await across it, so look again shortly.
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
            continue
        # The winner may answer before the backend started here has given way.
        return BackendLaunch("started" if health.get("pid") == process.pid else "joined", health)
    holding = f" (pid {winner} holds its lock)" if winner else ""
    raise BackendUnreachable(
        f"the backend{holding} did not answer within {timeout:.0f}s; see {log_path}."
    )


def lock_holder(settings: Settings) -> int | None:
    """The live process named in the backend's lock file, if any.

    The backend writes its pid there once it holds the lock (``backend.lock`` in the runtime
    directory, see moltconsole_backend.api.service); a pid left by a backend that died is not
    a holder.
    """
    try:
        text = (settings.paths.runtime_dir / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    pid = int(text) if text.isdigit() else None
    return pid if pid is not None and process_alive(pid) else None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold anything.
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
