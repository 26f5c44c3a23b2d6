"""The agent's gateway token never outlives its container.

Real backend, real Docker engine and OpenClaw image, the real gateway over TCP; the provider is
a stand-in speaking Anthropic's wire format. The token the gateway accepts is read from where
the agent reads it: the container's environment.
"""

from __future__ import annotations

import asyncio

import docker
import httpx
import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.settings import GatewaySettings, ProviderSettings
from tests.conftest import SandboxEnv, free_port
from tests.support.fake_llm import FakeServer

pytestmark = pytest.mark.docker
KEY = "sk-ant-token-test-real-key-0000"


def container_token(client: docker.DockerClient, name: str) -> tuple[str, str]:
    """(container id, the MOLT_MODEL_API_KEY its agent presents)."""
    container = client.containers.get(name)
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    return str(container.id), env["MOLT_MODEL_API_KEY"]


async def status_of(port: int, token: str) -> int:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/v1/messages", json=body, headers={"x-api-key": token}
        )
    return response.status_code


async def test_destroy_retires_the_token_and_rotate_token_recreates_a_running_sandbox(
    sandbox_env: SandboxEnv, docker_client: docker.DockerClient
) -> None:
    async with FakeServer() as fake:
        port = free_port()
        gateway = GatewaySettings(
            port=port, bind_address="127.0.0.1", retry_backoff=0.0,
            providers={"anthropic": ProviderSettings(api="anthropic", base_url=fake.url, api_key=KEY)},
        )
        settings = sandbox_env.settings.model_copy(update={"gateway": gateway})
        name = sandbox_env.container_name
        async with BackendService(settings) as service, BackendClient(service.socket_path) as client:
            await client.action("start")
            first_id, first = await asyncio.to_thread(container_token, docker_client, name)
            assert await status_of(port, first) == 200

            await client.action("destroy")
            # Refused the moment destroy returns: no restart of anything needed.
            assert await status_of(port, first) == 401

            await client.action("start")
            second_id, second = await asyncio.to_thread(container_token, docker_client, name)
            assert second not in (first, "") and second_id != first_id
            assert await status_of(port, second) == 200
            assert await status_of(port, first) == 401

            # Rotating while it runs re-creates the container with a new token and starts it.
            status = await client.rotate_token()
            assert status["desired"] == "running"
            assert status["state"] in ("starting", "ready")
            third_id, third = await asyncio.to_thread(container_token, docker_client, name)
            assert third_id != second_id and third not in (first, second)
            assert await status_of(port, second) == 401
            assert await status_of(port, third) == 200
            saved = (settings.sandbox_dir / "secrets" / "model-token").read_text().strip()
            assert saved == third  # a backend restart keeps accepting the running container's

            # Rotating a stopped sandbox removes its container; the next start gets a new token.
            await client.action("stop")
            status = await client.rotate_token()
            assert (status["state"], status["desired"]) == ("absent", "stopped")
            assert await status_of(port, third) == 401
            await client.action("start")
            _, fourth = await asyncio.to_thread(container_token, docker_client, name)
            assert fourth != third and await status_of(port, fourth) == 200
            assert len(fake.provider.seen) == 4  # only the accepted calls reached the provider
