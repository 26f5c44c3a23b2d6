"""Upgrading OpenClaw: a real build of another version, the agent's state carried over."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from tests.conftest import wait_state
from tests.integration.test_sandbox_lifecycle import exec_all

pytestmark = pytest.mark.docker
OLDER = "2026.9.5"
NEWER = "2026.9.6"


async def test_upgrade_to_another_version_keeps_state(make_env: Any) -> None:
    env = make_env(openclaw_version=OLDER)
    async with BackendService(env.settings) as service, BackendClient(service.socket_path) as client:
        progress: list[str] = []

        async def collect() -> None:
            async for message in client.events():
                if message["type"] == "progress":
                    progress.append(message["step"])

        collector = asyncio.ensure_future(collect())
        await client.action("start")  # builds the older image first if needed
        old = await wait_state(client, "ready", timeout=600)
        assert old["openclaw_version"] == OLDER
        code, out, _ = await exec_all(client, ["openclaw", "--version"])
        assert code == 0 and OLDER in out.decode()
        code, _, _ = await exec_all(client, ["sh", "-c", "echo from-" + OLDER + " > /data/state/note.txt"])
        assert code == 0

        await client.action("rebuild", version=NEWER)
        new = await wait_state(client, "ready", timeout=600,
                               after=lambda s: s["openclaw_version"] == NEWER)
        collector.cancel()
        assert new["container_id"] != old["container_id"]
        assert new["image"] == f"moltconsole/openclaw:{NEWER}"
        code, out, _ = await exec_all(client, ["openclaw", "--version"])
        assert code == 0 and NEWER in out.decode()
        code, out, _ = await exec_all(client, ["cat", "/data/state/note.txt"])
        assert out == f"from-{OLDER}\n".encode()
        assert "docker-build" in progress  # the build's progress reached the event stream
    # The upgrade is pinned for this sandbox, so it survives the backend.
    assert (env.settings.sandbox_dir / "openclaw-version").read_text().strip() == NEWER
