"""A spent budget, as the real OpenClaw in the real sandbox lives through it.

OpenClaw decides on its own what a provider's error means: a 402 (or billing words) made it tell
the user their key "has run out of credits" and disable the provider key for ten minutes, so
the agent stayed broken after the budget was raised. The gateway's answer (a 429 rate-limit
error, see ``exchange.budget_refusal``) must make the agent show moltconsole's own message, and
work again the moment the budget allows: here the user raises the budget and restarts the
backend, the sandbox keeps running, and the very next turn goes through.
"""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.settings import BudgetSettings, GatewaySettings, ProviderSettings, Settings
from tests.conftest import SandboxEnv, free_port, wait_state
from tests.support.fake_llm import FakeServer, Reply

pytestmark = pytest.mark.docker
KEY = "sk-ant-budget-test-key-0123456789"


async def agent_turn(docker_client: docker.DockerClient, name: str, message: str) -> tuple[int, str]:
    container = docker_client.containers.get(name)
    code, output = await asyncio.to_thread(
        container.exec_run, ["openclaw", "agent", "--agent", "main", "-m", message, "--json"]
    )
    return code, output.decode(errors="replace")


async def test_the_agent_reports_a_spent_budget_and_works_again_once_it_is_raised(
    sandbox_env: SandboxEnv, docker_client: docker.DockerClient
) -> None:
    async with FakeServer() as fake:
        fake.provider.default = Reply(text="Budget test: the turn went through.")
        port = free_port()

        def settings_with(daily_usd: float) -> Settings:
            gateway = GatewaySettings(
                port=port,
                retry_backoff=0.0,
                budget=BudgetSettings(daily_usd=daily_usd),
                providers={"anthropic": ProviderSettings(api="anthropic", base_url=fake.url, api_key=KEY)},
            )
            return sandbox_env.settings.model_copy(update={"gateway": gateway})

        low = settings_with(0.01)
        async with BackendService(low) as service, BackendClient(service.socket_path) as client:
            await client.action("start")
            await wait_state(client, "ready")
            # Today's spend is past the limit (a row the agent made earlier, say).
            service.gateway.guard.add(low.sandbox.name, 20_000_000, "earlier-turn", time.time())

            code, text = await agent_turn(docker_client, sandbox_env.container_name, "Say hello")
            # The user is told, in moltconsole's words, what happened and what to do ...
            assert "moltconsole budget reached" in text, text[-3000:]
            assert "gateway.budget.daily_usd" in text
            # ... not that their key ran out of credits.
            assert "credits" not in text and "billing" not in text.lower()
            assert fake.provider.seen == []  # nothing went upstream
            await asyncio.to_thread(service.gateway.ledger.flush)
            rows = await asyncio.to_thread(service.gateway.ledger.recent, 20)
            blocked = [r for r in rows if r.outcome == "blocked"]
            assert len(blocked) == 1, [(r.status, r.outcome) for r in rows]  # one request, no retries
            assert (blocked[0].status, blocked[0].error_kind) == (429, "budget_exceeded")

        # The user raises the budget and restarts the backend; the sandbox kept running.
        high = settings_with(100.0)
        async with BackendService(high) as service, BackendClient(service.socket_path) as client:
            await wait_state(client, "ready")
            code, text = await agent_turn(docker_client, sandbox_env.container_name, "Say hello again")
            assert code == 0, text[-3000:]
            assert "Budget test: the turn went through." in text
            assert "temporarily disabled" not in text
            assert len([s for s in fake.provider.seen if s.path == "/v1/messages"]) >= 1
