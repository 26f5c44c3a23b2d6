"""Attach to the running backend, or start one detached that outlives the console (like tmux)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.settings import Settings


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


async def ensure_backend(settings: Settings, *, timeout: float = 60.0) -> BackendClient:
    """A client connected to a live backend, starting one when none answers."""
    client = BackendClient(settings.socket_path)
    try:
        await _attach(client, settings, timeout)
    except BaseException:
        await client.aclose()  # also when the backend answered with an error
        raise
    return client


async def _attach(client: BackendClient, settings: Settings, timeout: float) -> None:
    try:
        await client.health()
        return
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
            await client.health()
            return
        except BackendUnreachable:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
    raise BackendUnreachable(
        f"the backend did not answer within {timeout:.0f}s; see {backend_log_path(settings)}."
    )
