"""Provider keys without a restart, and a keyless backend that never goes unnoticed.

Real backends (in-process and as `moltconsole serve` processes), the real CLI in subprocesses,
the real gateway over TCP; only the paid provider is a stand-in speaking Anthropic's wire format.
No sandbox container is started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moltconsole.client import BackendClient, BackendUnreachable
from moltconsole.launcher import ensure_backend
from moltconsole.settings import load_settings as load_console_settings
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.settings import load_settings
from moltconsole_shared.wire.status import GatewayStatus
from tests.conftest import free_port
from tests.support.fake_llm import FakeServer

KEY = "sk-ant-api03-live-key-set-after-start-9f8e"
KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def keyless_environ(**extra: str) -> dict[str, str]:
    """This process's environment without provider keys or moltconsole settings."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS and not k.startswith("MOLTCONSOLE_")}
    env.update(extra)
    return env


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mc-keys-", dir="/tmp"))  # short: the socket path is bounded
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(root: Path, fake_url: str, gateway_port: int) -> Path:
    config = root / "config.toml"
    config.write_text(
        f'[sandbox]\nname = "k{uuid.uuid4().hex[:10]}"\n'
        f"gateway_port = {free_port()}\n"
        f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n'
        f'[gateway]\nport = {gateway_port}\nbind_address = "127.0.0.1"\nretry_backoff = 0.0\n'
        # Only the URL is overridden: api and api_key_env come from the built-in (item 5).
        f'[gateway.providers.anthropic]\nbase_url = "{fake_url}"\n'
    )
    return config


def cli(config: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moltconsole", "--config", str(config), *args],
        input=stdin, capture_output=True, text=True, env=keyless_environ(**env), timeout=60,
    )


async def ask_model(gateway_port: int, token: str) -> httpx.Response:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        return await http.post(
            f"http://127.0.0.1:{gateway_port}/v1/messages", json=body, headers={"x-api-key": token}
        )


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer() as server:
        yield server


async def test_keys_set_reaches_a_running_keyless_backend_without_a_restart(
    root: Path, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    port = free_port()
    config = write_config(root, fake.url, port)
    settings = load_settings(config, env={})
    async with BackendService(settings) as service, BackendClient(service.socket_path) as client:
        token = (settings.sandbox_dir / "secrets" / "model-token").read_text().strip()
        status = GatewayStatus.from_json((await client.status())["gateway"])
        assert [(m.provider, m.variable, m.command) for m in status.missing_keys] == [
            ("anthropic", "ANTHROPIC_API_KEY", "moltconsole keys set ANTHROPIC_API_KEY")
        ]
        refused = await ask_model(port, token)
        assert refused.status_code == 502 and fake.provider.seen == []

        done = await asyncio.to_thread(cli, config, "keys", "set", "ANTHROPIC_API_KEY", stdin=KEY + "\n")
        assert done.returncode == 0, done.stderr
        assert KEY not in done.stdout + done.stderr  # never echoed
        assert "sk-ant-…9f8e" in done.stdout
        assert f"the running backend (pid {os.getpid()}) uses it from now on" in done.stdout
        assert (settings.keys_path.stat().st_mode & 0o777) == 0o600

        answered = await ask_model(port, token)  # same backend, no restart
        assert answered.status_code == 200, answered.text
        assert fake.provider.seen[-1].headers["x-api-key"] == KEY
        assert GatewayStatus.from_json((await client.status())["gateway"]).missing_keys == []

        listing = await asyncio.to_thread(cli, config, "keys", "ls")
        assert listing.returncode == 0, listing.stderr
        row = next(line for line in listing.stdout.splitlines() if line.startswith("ANTHROPIC_API_KEY"))
        assert "keys file" in row and "sk-ant-…9f8e" in row and "anthropic" in row
        assert KEY not in listing.stdout

        removed = await asyncio.to_thread(cli, config, "keys", "rm", "ANTHROPIC_API_KEY")
        assert removed.returncode == 0, removed.stderr
        assert (await ask_model(port, token)).status_code == 502
        shown = await asyncio.to_thread(cli, config, "status")
        assert "! provider anthropic has no key (ANTHROPIC_API_KEY)" in shown.stdout
        assert "moltconsole keys set ANTHROPIC_API_KEY" in shown.stdout


def start_serve(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`moltconsole serve` from a shell without provider keys, logging to a file."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
            stdout=log, stderr=log, env=keyless_environ(),
        )


async def wait_serving(process: subprocess.Popen[bytes], socket_path: Path) -> dict[str, Any]:
    async with BackendClient(socket_path, timeout=5) as client:
        for _ in range(1200):
            assert process.poll() is None, "the backend exited at startup"
            try:
                return await client.health()
            except BackendUnreachable:
                await asyncio.sleep(0.05)  # another process: nothing to await across it
    raise AssertionError("the backend did not answer within 60s")


async def test_serve_beside_a_keyless_backend_says_what_it_lacks_and_how_to_hand_it_over(
    root: Path, fake: FakeServer
) -> None:
    config = write_config(root, fake.url, free_port())
    settings = load_settings(config, env={})
    first = start_serve(config, root / "first.log")
    try:
        health = await wait_serving(first, settings.socket_path)
        assert health["pid"] == first.pid
        second = await asyncio.to_thread(cli, config, "serve", ANTHROPIC_API_KEY=KEY)
        assert second.returncode == 1
        err = second.stderr
        assert f"already running (pid {first.pid})" in err
        assert "It has no key for: provider anthropic (ANTHROPIC_API_KEY)" in err
        assert "printenv ANTHROPIC_API_KEY | moltconsole keys set ANTHROPIC_API_KEY" in err
        assert f"kill {first.pid}" in err
        assert KEY not in err
        log_text = (root / "first.log").read_text()
        assert "provider anthropic has no key (ANTHROPIC_API_KEY)" in log_text  # warned at start

        # Handing the key over as advised: the same backend has it, nothing is replaced.
        handed = await asyncio.to_thread(
            cli, config, "keys", "set", "ANTHROPIC_API_KEY", stdin=KEY, ANTHROPIC_API_KEY=KEY
        )
        assert handed.returncode == 0, handed.stderr
        again = await asyncio.to_thread(cli, config, "serve", ANTHROPIC_API_KEY=KEY)
        assert again.returncode == 1 and "It has a key for every provider in use" in again.stderr
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=30)


async def test_a_backend_started_from_a_keyless_shell_is_announced_with_what_to_do(
    root: Path, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    config = write_config(root, fake.url, free_port())
    settings = load_console_settings(config, env={})
    notices: list[str] = []
    client = await ensure_backend(settings, notice=notices.append)
    try:
        pid = (await client.health())["pid"]
        assert len(notices) == 1
        text = notices[0]
        assert f"started a new backend (pid {pid})" in text
        assert "no key for provider anthropic (ANTHROPIC_API_KEY)" in text
        assert "moltconsole keys set ANTHROPIC_API_KEY" in text
        # Attaching to it again starts nothing and says nothing.
        again = await ensure_backend(settings, notice=notices.append)
        await again.aclose()
        assert len(notices) == 1
    finally:
        await client.aclose()
        await stop_spawned(pid)


async def test_a_backend_started_with_the_key_in_the_file_is_not_announced(
    root: Path, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    config = write_config(root, fake.url, free_port())
    settings = load_settings(config, env={})
    assert cli(config, "keys", "set", "ANTHROPIC_API_KEY", stdin=KEY).returncode == 0
    notices: list[str] = []
    client = await ensure_backend(settings, notice=notices.append)
    try:
        pid = (await client.health())["pid"]
        assert notices == []
        status = GatewayStatus.from_json((await client.status())["gateway"])
        assert status.missing_keys == []
    finally:
        await client.aclose()
        await stop_spawned(pid)


async def stop_spawned(pid: int) -> None:
    """Stop a backend the launcher started (our child) and reap it."""
    os.kill(pid, signal.SIGTERM)
    await asyncio.to_thread(os.waitpid, pid, 0)
