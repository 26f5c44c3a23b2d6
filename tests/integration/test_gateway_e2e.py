"""The real OpenClaw in the real sandbox answers a message through the gateway to a fake provider.

Only the paid model API is a stand-in (speaking Anthropic's SSE stream); the backend, container,
OpenClaw, the proxy and the SQLite ledger are real.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import docker
import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.settings import GatewaySettings, ProviderSettings
from tests.conftest import SandboxEnv, free_port, wait_state
from tests.support.fake_llm import FakeServer, Reply

pytestmark = pytest.mark.docker
REAL_KEY = "sk-ant-e2e-REAL-KEY-must-stay-on-the-host-7f3a"


async def test_openclaw_turn_goes_through_the_gateway_into_the_ledger(
    sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    async with FakeServer() as fake:
        fake.provider.default = Reply(
            text="Hello from the gateway test.",
            input_tokens=3210,
            output_tokens=42,
            cache_read=800,
            cache_write_5m=100,
        )
        gateway = GatewaySettings(
            port=free_port(),
            retry_backoff=0.0,
            providers={
                "anthropic": ProviderSettings(
                    api="anthropic", base_url=fake.url, api_key_env="ANTHROPIC_API_KEY"
                )
            },
        )
        settings = sandbox_env.settings.model_copy(update={"gateway": gateway})
        async with BackendService(settings) as service, BackendClient(service.socket_path) as client:
            await client.action("start")
            await wait_state(client, "ready")
            container = docker_client.containers.get(sandbox_env.container_name)

            code, output = await asyncio.to_thread(
                container.exec_run,
                ["openclaw", "agent", "--agent", "main", "-m", "Say hello", "--json"],
            )
            text = output.decode(errors="replace")
            assert code == 0, text[-2000:]
            assert "Hello from the gateway test." in text

            # What OpenClaw sent arrived with the real key, added by the gateway.
            turns = [s for s in fake.provider.seen if s.path == "/v1/messages"]
            assert turns, "OpenClaw never reached the provider"
            assert all(s.headers["x-api-key"] == REAL_KEY for s in turns)

            ledger = service.gateway.ledger
            await asyncio.to_thread(ledger.flush)
            rows = await asyncio.to_thread(ledger.recent, 50)
            assert len(rows) == len(turns)
            row = next(r for r in rows if r.trigger == "user")
            assert (row.sandbox, row.api, row.provider, row.model, row.outcome, row.status) == (
                settings.sandbox.name,
                "anthropic-messages",
                "anthropic",
                "claude-sonnet-4-6",
                "ok",
                200,
            )
            u = row.usage
            assert (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_5m_tokens,
                u.source,
            ) == (3210, 42, 800, 100, "provider")
            # $3 in, $15 out, $0.30 cache read, $3.75 5-minute write per MTok:
            # 3210*3 + 42*15 + 800*0.3 + 100*3.75 = 9630 + 630 + 240 + 375 = 10,875 -> $0.010875
            assert row.cost.total_nanos == 10_875_000

            # The real key is nowhere in the sandbox: not in its environment, not in its files.
            container.reload()
            assert REAL_KEY not in json.dumps(container.attrs["Config"]["Env"])
            code, env_out = await asyncio.to_thread(container.exec_run, ["env"])
            assert code == 0 and REAL_KEY not in env_out.decode()
            code, grep_out = await asyncio.to_thread(
                container.exec_run, ["grep", "-rl", REAL_KEY, "/data", "/tmp"]
            )
            assert code == 1, grep_out.decode()  # grep: 1 = no file matched
            holders = await asyncio.to_thread(files_holding, Path(sandbox_env.settings.sandbox_dir), REAL_KEY)
            assert holders == []


def files_holding(root: Path, secret: str) -> list[Path]:
    """Host files of the sandbox (its mounted state and logs) that contain ``secret``."""
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and "secrets" not in p.parts and secret.encode() in p.read_bytes()
    ]
