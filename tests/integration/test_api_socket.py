"""The API's unix socket is its owner's alone, and the API answers bad requests clearly."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from typing import Any

import httpx
import pytest

from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole_backend.api.service import BackendAlreadyRunning, BackendService
from moltconsole_backend.gateway.server import bridge_address
from tests.conftest import SandboxEnv

NOBODY = 65534
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except PermissionError:\n"
    "    print('denied'); sys.exit(0)\n"
    "print('connected'); sys.exit(1)\n"
)


async def test_socket_is_owner_only_and_refuses_another_user(
    backend: tuple[BackendService, BackendClient],
) -> None:
    service, _ = backend
    path = service.socket_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.stat().st_uid == os.getuid()
    if os.getuid() == 0:
        # Drop to another user, as a second account on the machine would be.
        process = await asyncio.create_subprocess_exec(
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            sys.executable, "-c", CONNECT, str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    else:
        pytest.fail("run the suite as root so a second user can be impersonated (CI does)")
    assert out.decode().strip() == "denied", err.decode()


async def test_second_backend_is_refused(backend: tuple[BackendService, BackendClient],
                                         sandbox_env: SandboxEnv) -> None:
    with pytest.raises(BackendAlreadyRunning, match=f"pid {os.getpid()}"):
        await BackendService(sandbox_env.settings).start()
    # The first one still serves.
    _, client = backend
    assert (await client.health())["pid"] == os.getpid()


async def test_bad_requests_get_clear_errors(backend: tuple[BackendService, BackendClient]) -> None:
    service, client = backend
    transport = httpx.AsyncHTTPTransport(uds=str(service.socket_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as raw:
        response = await raw.post("/v1/sandbox/start", content=b"{not json")
        assert response.status_code == 400
        assert "not valid JSON" in response.json()["error"]["message"]
        response = await raw.post("/v1/sandbox/rebuild", json={"version": "1; rm -rf /"})
        assert response.status_code == 400
        assert "not an OpenClaw version" in response.json()["error"]["message"]
    with pytest.raises(BackendError, match="not running"):
        await client.processes()
    with pytest.raises(BackendError, match="not running"):
        await client.devices()


async def test_client_without_backend_says_what_to_do(sandbox_env: SandboxEnv) -> None:
    async with BackendClient(sandbox_env.settings.socket_path) as client:
        with pytest.raises(BackendUnreachable, match="moltconsole serve"):
            await client.status()


def test_cli_status_without_backend(sandbox_env: SandboxEnv) -> None:
    config = sandbox_env.write_config()
    result = subprocess.run(
        [sys.executable, "-m", "moltconsole", "--config", str(config), "status"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 3
    assert "no moltconsole backend answers" in result.stderr


def test_cli_rejects_invalid_config(tmp_path: Any) -> None:
    """A bad backend value is the backend's to judge: `serve` refuses it, naming key and file,
    and a command that starts the backend shows that refusal instead of only 'exited'."""
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[paths]\nruntime_dir = "{tmp_path}/run"\ndata_dir = "{tmp_path}/data"\n'
        "[sandbox]\ngateway_port = 0\n"
    )
    base = [sys.executable, "-m", "moltconsole", "--config", str(config)]
    served = subprocess.run([*base, "serve"], capture_output=True, text=True, timeout=60)
    assert served.returncode == 2
    assert "sandbox.gateway_port" in served.stderr and str(config) in served.stderr

    started = subprocess.run([*base, "start"], capture_output=True, text=True, timeout=90)
    assert started.returncode == 3
    assert "exited at startup (code 2)" in started.stderr
    assert "sandbox.gateway_port" in started.stderr and str(config) in started.stderr


def test_cli_status_json_and_exec_through_a_detached_backend(
    sandbox_env: SandboxEnv,
) -> None:
    """The CLI starts a detached backend that outlives it, then talks to it."""
    config = sandbox_env.write_config()
    base = [sys.executable, "-m", "moltconsole", "--config", str(config)]
    try:
        started = subprocess.run([*base, "start"], capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "ready in" in started.stdout
        status = subprocess.run([*base, "status", "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["state"] == "ready"
        human = subprocess.run([*base, "status"], capture_output=True, text=True, timeout=60)
        port = sandbox_env.settings.gateway.port
        bridge = bridge_address()
        assert f"AI gateway: {bridge}:{port}, spent today $0.00" in human.stdout, human.stdout
        run = subprocess.run([*base, "exec", "--", "sh", "-c", "echo hi; exit 5"],
                             capture_output=True, text=True, timeout=60)
        assert (run.returncode, run.stdout) == (5, "hi\n")
    finally:
        async def backend_pid() -> int | None:
            async with BackendClient(sandbox_env.settings.socket_path) as client:
                try:
                    return int((await client.health())["pid"])
                except BackendUnreachable:
                    return None

        pid = asyncio.run(backend_pid())
        if pid:
            os.kill(pid, 15)
