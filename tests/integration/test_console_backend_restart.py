"""A backend killed under a connected console: the console starts a new one, and every panel
updates again.

Everything is real but the paid model API: the backend is a detached ``moltconsole serve``
started by the launcher (as ``moltconsole`` starts it), the sandbox is the real OpenClaw image,
and the costs come from a request through the real AI gateway to the fake provider. The
backend is killed with SIGKILL, as a crash leaves it (its socket file stays behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moltconsole.app import MoltConsole
from moltconsole.client import BackendClient
from moltconsole.launcher import process_alive, start_backend
from moltconsole.screens.costs import CostsScreen
from moltconsole.screens.dashboard import DashboardScreen
from moltconsole.screens.logs import LogsScreen
from moltconsole.settings import Settings, load_settings
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.wire.status import GatewayStatus
from tests.conftest import SandboxEnv, wait_state
from tests.console.test_backend_link import until
from tests.support.fake_llm import FakeServer

pytestmark = pytest.mark.docker
KEY = "sk-ant-console-restart-test-0000"
MARKER = "written while the first backend was dead"


def write_config(env: SandboxEnv, fake_url: str) -> Path:
    """The sandbox's settings, with the AI gateway's Anthropic provider pointed at the fake."""
    config = env.write_config()
    config.write_text(
        config.read_text()
        + "retry_backoff = 0.0\n"
        + f'[gateway.providers.anthropic]\napi = "anthropic"\nbase_url = "{fake_url}"\n'
        + 'api_key_env = "ANTHROPIC_API_KEY"\n'
    )
    return config


@contextlib.asynccontextmanager
async def launched_backends(settings: Settings) -> AsyncIterator[list[int]]:
    """The pids of the backends started in the test (children of this process), stopped after."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                await asyncio.to_thread(os.waitpid, pid, 0)


async def ask_the_gateway(listening: str, token: str) -> None:
    """One model request from the sandbox's side, with its token, as the agent sends them."""
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "stream": False,
            "messages": [{"role": "user", "content": "Say hello."}]}
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"http://{listening}/v1/messages", json=body, headers=headers)
    assert response.status_code == 200, response.text


def append_log_line(settings: Any, message: str) -> None:
    """A line in OpenClaw's JSON log file on the host, the file the backend tails."""
    path = settings.sandbox_dir / "logs" / "openclaw.log"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.time(), "level": "info", "subsystem": "probe",
                             "message": message}) + "\n")


async def test_every_panel_updates_again_after_the_backend_is_killed_and_started_again(
    sandbox_env: SandboxEnv, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)  # the environment the backends start from
    async with FakeServer() as fake:
        config = write_config(sandbox_env, fake.url)
        settings = load_settings(config, env={k: v for k, v in os.environ.items()
                                              if not k.startswith("MOLTCONSOLE_")})
        async with launched_backends(settings) as pids:
            first = await start_backend(settings)
            assert first.how == "started" and first.pid is not None
            pids.append(first.pid)
            async with BackendClient(settings.socket_path) as client:
                await client.action("start")
                await wait_state(client, "ready")

            async def starter() -> Any:
                launch = await start_backend(settings)
                if launch.pid is not None:
                    pids.append(launch.pid)
                return launch

            app = MoltConsole(settings, backend_starter=starter)
            async with app.run_test(size=(160, 48)) as pilot:
                await check_every_panel(app, pilot, sandbox_env, first.pid)


async def check_every_panel(app: MoltConsole, pilot: Any, env: SandboxEnv, first_pid: int) -> None:
    await until(pilot, "the dashboard with a ready sandbox",
                lambda: (app.status or {}).get("state") == "ready", 60)
    dashboard = app.screen
    assert isinstance(dashboard, DashboardScreen)
    await until(pilot, "resource samples", lambda: dashboard.samples >= 2, 60)
    await asyncio.wait_for(dashboard.history_seen.wait(), 30)
    # Open the other screens once, so their streams run too (they stay open in their modes).
    await pilot.press("2")
    logs = app.screen
    assert isinstance(logs, LogsScreen)
    await asyncio.wait_for(logs.caught_up.wait(), 30)
    await pilot.press("3")
    costs = app.screen
    assert isinstance(costs, CostsScreen)
    await asyncio.wait_for(costs.tail_ready.wait(), 30)
    await pilot.press("1")
    await pilot.pause()

    # The backend dies.
    dashboard.history_seen.clear()
    os.kill(first_pid, signal.SIGKILL)
    await asyncio.to_thread(os.waitpid, first_pid, 0)
    await until(pilot, "the loss noticed", lambda: app.connected is False, 30)
    samples_at_loss = dashboard.samples
    append_log_line(env.settings, MARKER)  # OpenClaw goes on writing while no backend reads

    # The console starts a new one by itself and says so.
    await asyncio.wait_for(app.restart_settled.wait(), 90)
    assert app.restart is None, app.restart_problem
    notes = [n.message for n in app._notifications]
    started = [n for n in notes if n.startswith("the backend had stopped; started a new backend (pid ")]
    assert started, notes
    async with BackendClient(app.settings.socket_path) as client:
        health = await client.health()
    assert health["pid"] != first_pid and f"(pid {health['pid']})" in started[0]

    # Status: connected to the new backend, the sandbox still ready (adopted, not restarted).
    bar = dashboard.query_one(StatusBar)
    await until(pilot, "the status bar connected",
                lambda: "backend: connected" in str(bar.render()) and app.connected is True, 60)
    assert f"sandbox {env.settings.sandbox.name} ready" in str(bar.render())

    # Stats: the sparklines move again.
    await until(pilot, "new resource samples", lambda: dashboard.samples >= samples_at_loss + 2, 60)

    # Events: the history is loaded again, each recorded event once.
    await asyncio.wait_for(dashboard.history_seen.wait(), 30)
    shown = [line.text for line in dashboard.query_one("#dash-events").lines]  # type: ignore[attr-defined]
    assert shown and len(dashboard._recorded) == len(set(dashboard._recorded))

    # Logs: the line written while no backend ran arrives, once, and no line is shown twice.
    await until(pilot, "the line written meanwhile",
                lambda: any(r.message == MARKER for r in logs._buffer), 60)
    seqs = [r.seq for r in logs._buffer]
    assert seqs == sorted(set(seqs))
    assert [r.message for r in logs._buffer].count(MARKER) == 1
    assert logs.problem is None

    # Costs: a request through the new backend's gateway reaches the live tail.
    async with BackendClient(app.settings.socket_path) as client:
        gateway = GatewayStatus.from_json((await client.health()).get("gateway"))
    assert gateway.listening
    token_file = env.settings.sandbox_dir / "secrets" / "model-token"
    tail_before = len(costs._tail)
    await ask_the_gateway(gateway.listening, token_file.read_text().strip())
    await until(pilot, "the request in the cost tail", lambda: len(costs._tail) > tail_before, 30)
    assert costs.tail_problem is None

    # And a new event: stopping the sandbox shows in the events panel and the status bar.
    async with BackendClient(app.settings.socket_path) as client:
        await client.action("stop")
    await until(pilot, "the sandbox stopped on the status bar",
                lambda: f"sandbox {env.settings.sandbox.name} stopped" in str(bar.render()), 60)
    await until(pilot, "the stop in the events panel", lambda: any(
        e.state == "stopped" and e.time > time.time() - 120 for e in dashboard._recorded.values()), 30)
