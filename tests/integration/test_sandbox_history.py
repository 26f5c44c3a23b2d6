"""The sandbox's history with the real engine and the real OpenClaw image: a crash (exit 137, as
the OOM killer leaves it) is recorded when it happens, and the history and the restart count are
still there after the backend restarts, without an event for adopting the running container.
"""

from __future__ import annotations

import os
import time

import docker
import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from tests.conftest import SandboxEnv, wait_state

pytestmark = pytest.mark.docker


def kill_gateway(docker_client: docker.DockerClient, name: str) -> None:
    """SIGKILL the gateway from the host, as the OOM killer would."""
    top = docker_client.containers.get(name).top(ps_args="-o pid,ppid,args")
    tini = [row for row in top["Processes"] if "tini" in row[2]]
    gateway = [row for row in top["Processes"] if tini and row[1] == tini[0][0]]
    assert len(gateway) == 1, top
    os.kill(int(gateway[0][0]), 9)


async def history(client: BackendClient) -> list[dict[str, object]]:
    async for message in client.events(history=100):
        assert message["type"] == "history"
        return list(message["events"])
    raise AssertionError("the event stream ended before its history")


async def test_a_crash_is_kept_with_its_time_and_the_restart_count_survives_the_backend(
    sandbox_env: SandboxEnv, docker_client: docker.DockerClient,
) -> None:
    async with BackendService(sandbox_env.settings) as service, BackendClient(service.socket_path) as client:
        await client.action("start")
        await wait_state(client, "ready")
        killed_at = time.time()
        kill_gateway(docker_client, sandbox_env.container_name)
        await wait_state(client, "crashed")
        seen_at = time.time()
        await wait_state(client, "ready", after=lambda s: s["restarts"] >= 1)
        before = await history(client)
        async for sample in client.stats():
            # The working set and the page cache, apart; together they are Docker's usage.
            assert sample["memory_bytes"] > 100 * 2**20 and sample["cache_bytes"] >= 0
            assert sample["memory_percent"] == round(sample["memory_bytes"] / sample["memory_limit"] * 100, 2)
            break

    states = [(e["state"], e["level"]) for e in before if e["kind"] == "state"]
    assert states[-4:] == [("ready", "info"), ("crashed", "error"), ("starting", "info"), ("ready", "info")]
    crash = [e for e in before if e["state"] == "crashed"][-1]
    assert "exited with code 137" in str(crash["message"])
    assert killed_at <= float(str(crash["time"])) <= seen_at  # when it happened, not when looked at

    # A new backend: the container kept running; nothing new happened to it.
    async with BackendService(sandbox_env.settings) as service, BackendClient(service.socket_path) as client:
        again = await wait_state(client, "ready")
        assert again["restarts"] == 1
        assert await history(client) == before
