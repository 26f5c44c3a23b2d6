"""Attach to the running backend, or start one detached that outlives the console (like tmux)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.settings import Settings
from moltconsole_shared.wire.status import GatewayStatus


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
        health = await _attach(client, settings, timeout)
    except BaseException:
        await client.aclose()  # also when the backend answered with an error
        raise
    if health is not None:
        text = started_backend_notice(health)
        if text:
            (notice or _print_notice)(text)
    return client


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


async def _attach(client: BackendClient, settings: Settings, timeout: float) -> dict[str, Any] | None:
    """Connect; None if a backend answered, else the health of the one started here."""
    try:
        await client.health()
        return None
    except BackendUnreachable:
        pass
    process = spawn_detached(settings)
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BackendUnreachable(
                f"the backend exited at startup (code {process.returncode}); see "
                f"{backend_log_path(settings)} for why."
            )
        try:
            return await client.health()
        except BackendUnreachable:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
    raise BackendUnreachable(
        f"the backend did not answer within {timeout:.0f}s; see {backend_log_path(settings)}."
    )
