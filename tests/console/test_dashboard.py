"""The console's first screen, against a real backend process (no container needed)."""

from __future__ import annotations

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
    process = subprocess.Popen([sys.executable, "-m", "moltconsole", "--config", str(config), "serve"])
    socket_path = FIXED_ROOT / "run" / "backend.sock"
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        assert process.poll() is None, "the backend exited at startup"
        assert time.monotonic() < deadline, "the backend did not create its socket"
        time.sleep(0.05)
    yield config
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(FIXED_ROOT, ignore_errors=True)


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
