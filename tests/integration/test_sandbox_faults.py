"""Faults a user can run into: each ends in a state and a message that names cause and fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.sandbox.state import SandboxState
from tests.conftest import wait_state

pytestmark = pytest.mark.docker


async def test_crash_loop_stops_and_reports(make_env: Any) -> None:
    # A heap too small for OpenClaw: Node aborts at startup, every time.
    env = make_env(node_max_old_space_mb=16, crash_loop_threshold=3, crash_loop_window=300,
                   restart_backoff_initial=0.1, restart_backoff_max=0.5)
    async with BackendService(env.settings) as service, BackendClient(service.socket_path) as client:
        await client.action("start")
        looped = await wait_state(client, "crash-loop", timeout=180)
    assert looped["restarts"] == 2  # two automatic restarts, then the third crash stops it
    assert "3 times" in looped["reason"]
    assert "automatic restarts stopped" in looped["reason"]
    assert looped["last_exit_code"] not in (None, 0)
    assert looped["desired"] == "running"


async def test_invalid_openclaw_config_is_reported_not_restarted(make_env: Any) -> None:
    env = make_env()
    state = env.settings.sandbox_dir / "state"
    state.mkdir(parents=True)
    (state / "openclaw.json").write_text(json.dumps({"gateway": {"notARealSetting": True}}))
    async with BackendService(env.settings) as service, BackendClient(service.socket_path) as client:
        await client.action("start")
        invalid = await wait_state(client, "config-invalid", timeout=120)
        assert invalid["last_exit_code"] == 78
        assert "openclaw.json" in invalid["reason"]
        assert invalid["restarts"] == 0
    # The user's file is still there (with the managed keys merged in), nothing was lost.
    kept = (state / "openclaw.json").read_text()
    assert "notARealSetting" in kept


async def test_engine_unreachable_says_how_to_fix(
    make_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{env.root}/no-docker.sock")
    manager = SandboxManager(env.settings)
    await manager.open()
    try:
        assert manager.status.state == SandboxState.ENGINE_DOWN
        reason = manager.status.reason
        assert f"{env.root}/no-docker.sock" in reason
        assert "not installed or not running" in reason
        assert "systemctl start docker" in reason
    finally:
        await manager.close()


async def test_failing_image_build_is_reported(make_env: Any) -> None:
    # A version npm does not have: the build fails early, and the status says so.
    env = make_env(openclaw_version="2099.1.1", build_route="offline")
    async with BackendService(env.settings) as service, BackendClient(service.socket_path) as client:
        with pytest.raises(BackendError) as info:
            await client.action("start")
        status = await client.status()
    assert status["state"] == "failed"
    assert "2099.1.1" in str(info.value)
    assert "building moltconsole/openclaw:2099.1.1 failed" in status["reason"]
