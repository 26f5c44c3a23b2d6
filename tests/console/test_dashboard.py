"""The console's first screen, against a real backend process (no container needed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole.app import MoltConsole
from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.settings import load_settings

FIXED_ROOT = Path("/tmp/mc-snapshot")  # fixed, so paths on screen are the same every run


@pytest.fixture(scope="module")
def backend_process() -> Iterator[Path]:
    """A real `moltconsole serve` with a fixed sandbox that has no container."""
    shutil.rmtree(FIXED_ROOT, ignore_errors=True)
    FIXED_ROOT.mkdir()
    config = FIXED_ROOT / "config.toml"
    config.write_text(
        '[sandbox]\nname = "snapshot"\ngateway_port = 18799\n'
        f'[paths]\ndata_dir = "{FIXED_ROOT}/data"\nruntime_dir = "{FIXED_ROOT}/run"\n'
    )
    log_path = FIXED_ROOT / "backend.log"  # a file, not a pipe: nobody drains a pipe while tests run
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
            stdout=log, stderr=log,
        )
    try:
        problem = asyncio.run(_wait_until_serving(process, FIXED_ROOT / "run" / "backend.sock"))
        if problem is not None:
            pytest.fail(f"{problem}; its output:\n{log_path.read_text(errors='replace')}")
        yield config
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(FIXED_ROOT, ignore_errors=True)


async def _wait_until_serving(process: subprocess.Popen[bytes], socket_path: Path) -> str | None:
    """None once the API answers /v1/health (the socket file exists before it serves), else why not."""
    deadline = time.monotonic() + 60
    async with BackendClient(socket_path, timeout=5) as client:
        while True:
            if process.poll() is not None:
                return f"the backend exited at startup (code {process.returncode})"
            try:
                await client.health()
                return None
            except BackendUnreachable:
                if time.monotonic() > deadline:
                    return "the backend did not answer /v1/health within 60s"
                # Another process: there is no event to await across it, so retry briefly.
                await asyncio.sleep(0.05)


def make_app(config: Path) -> MoltConsole:
    settings = load_settings(config, env={k: v for k, v in os.environ.items()
                                          if not k.startswith("MOLTCONSOLE_")})
    return MoltConsole(settings, clock=lambda: 1_800_000_000.0)


async def wait_for_status(pilot: Any) -> None:
    await pilot.app.status_seen.wait()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_dashboard_snapshot(backend_process: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(backend_process), terminal_size=size, run_before=wait_for_status)


async def test_dashboard_shows_absent_sandbox_and_lifecycle_keys(backend_process: Path) -> None:
    app = make_app(backend_process)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_status(pilot)
        assert app.status is not None and app.status["state"] == "absent"
        bindings = {active.binding.id for active in app.screen.active_bindings.values()}
        assert {"sandbox.start", "sandbox.stop", "sandbox.restart", "app.quit"} <= bindings
