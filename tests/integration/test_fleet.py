"""Two real OpenClaw sandboxes on one backend: each with its own container, port, state, token
and log, addressed by name; removing one leaves the other untouched."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import docker
import httpx

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.sandbox.spec import model_token_path
from tests.conftest import SandboxEnv, free_port, wait_state


async def test_two_sandboxes_run_side_by_side_and_one_leaves_alone(
    sandbox_env: SandboxEnv, docker_client: docker.DockerClient,
) -> None:
    settings = sandbox_env.settings
    second = f"{settings.sandbox.name[:20]}-b"
    port = free_port()
    try:
        async with BackendService(settings) as service, BackendClient(service.socket_path) as main:
            other = BackendClient(service.socket_path, sandbox=second)
            await main.action("start", wait=False)
            made = await main.create_sandbox(second, gateway_port=port, memory_limit="2g")
            assert (made.name, made.gateway_port, made.memory_limit, made.origin) == (
                second, port, "2g", "created",
            )
            a = await wait_state(main, "ready", timeout=240)
            b = await wait_state(other, "ready", timeout=240)
            assert a["container_id"] != b["container_id"]
            assert a["state_dir"] != b["state_dir"]
            async with httpx.AsyncClient() as http:  # each gateway answers on its own port
                for status in (a, b):
                    assert (await http.get(status["gateway_url"] + "/readyz")).status_code == 200
            data = settings.paths.data_dir
            tokens = {model_token_path(data, n).read_text() for n in (settings.sandbox.name, second)}
            assert len(tokens) == 2  # each agent has its own gateway token, so its own ledger tag
            limit = docker_client.containers.get(f"moltconsole-{second}").attrs["HostConfig"]["Memory"]
            assert limit == 2 << 30

            # Each log is its own: the second's stream carries its own container's lines.
            async def first_lines(client: BackendClient) -> list[dict[str, Any]]:
                records: list[dict[str, Any]] = []
                async for message in client.logs(tail=500, follow=False):
                    records += message.get("records", [])
                return records

            assert await first_lines(other)
            listing = await main.sandboxes()
            assert [(s.name, s.status.state) for s in listing.sandboxes] == [
                (settings.sandbox.name, "ready"), (second, "ready"),
            ]

            # Removing the second: the first sees nothing happen.
            seen: list[dict[str, Any]] = []

            async def watch() -> None:
                async for message in main.events():
                    seen.append(message)

            watcher = asyncio.create_task(watch())
            await main.remove_sandbox(second)
            status = await main.status()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            assert (status["state"], status["container_id"]) == ("ready", a["container_id"])
            assert [m for m in seen if m["type"] != "status" or m["status"]["state"] != "ready"] == []
            assert [s.name for s in (await main.sandboxes()).sandboxes] == [settings.sandbox.name]
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(f"moltconsole-{second}")
                raise AssertionError("the removed sandbox's container is still there")
            assert (data / "sandboxes" / second / "state").is_dir()  # its memory is kept
            await other.aclose()
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(f"moltconsole-{second}").remove(force=True)
