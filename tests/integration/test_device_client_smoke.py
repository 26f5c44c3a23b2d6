"""Smoke test: the test device client creates a real pairing request in the sandbox image.

It runs the real image, connects from the host through the published port (which the
gateway sees as a remote bridge address, so it must not auto-approve), and checks the
request with the OpenClaw CLI inside the container, the same path the backend uses.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.device_client import connect_device, request_pairing

IMAGE = os.environ.get("MOLTCONSOLE_TEST_IMAGE", "moltconsole/openclaw:2026.9.6")
# Empty means "let Docker pick a free host port"; set it where host ports are rationed.
HOST_PORT = os.environ.get("MOLTCONSOLE_TEST_GATEWAY_PORT", "")

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def _image_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return _docker("image", "inspect", IMAGE, check=False).returncode == 0


@dataclass
class Gateway:
    name: str
    url: str
    token: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        # The container's OPENCLAW_GATEWAY_TOKEN is inherited by `docker exec`, and the CLI
        # reaches the gateway over loopback, so it needs no flags and no pairing.
        return _docker("exec", self.name, "openclaw", *args, check=False)

    def devices(self) -> dict[str, Any]:
        result = self.cli("devices", "list", "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    if not _image_available():
        pytest.fail(f"docker or image {IMAGE} not available; run scripts/setup.sh")
    token = secrets.token_urlsafe(24)
    name = f"moltconsole-test-devices-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as root:
        state, logs = os.path.join(root, "state"), os.path.join(root, "logs")
        for path in (state, logs):
            os.mkdir(path)
            # The image runs as uid 1000; the mounted directories must be writable by it.
            if os.geteuid() == 0:
                os.chown(path, 1000, 1000)
            else:
                os.chmod(path, 0o777)
        _docker(
            "run", "-d", "--name", name,
            "-p", f"127.0.0.1:{HOST_PORT}:18789",
            "-e", f"OPENCLAW_GATEWAY_TOKEN={token}",
            "-v", f"{state}:/data/state", "-v", f"{logs}:/data/logs",
            "--user", "1000:1000",
            IMAGE,
        )  # fmt: skip
        try:
            port = _docker("port", name, "18789/tcp").stdout.strip().splitlines()[0]
            host_port = port.rsplit(":", 1)[1]
            _wait_ready(f"http://127.0.0.1:{host_port}/readyz", timeout=120)
            yield Gateway(name=name, url=f"ws://127.0.0.1:{host_port}", token=token)
        finally:
            _docker("rm", "-f", name, check=False)


def _wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout}s")


async def test_remote_device_is_pending_then_approved(gateway: Gateway) -> None:
    attempt = await request_pairing(gateway.url, gateway.token, display_name="smoke-approve")
    assert attempt.pairing_required, attempt
    assert attempt.request_id is not None
    assert attempt.close_code == 1008

    pending = {p["requestId"]: p for p in gateway.devices()["pending"]}
    entry = pending[attempt.request_id]
    assert entry["deviceId"] == attempt.device_id
    assert entry["displayName"] == "smoke-approve"

    approved = gateway.cli("devices", "approve", attempt.request_id, "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["device"]["deviceId"] == attempt.device_id
    paired = {p["deviceId"] for p in gateway.devices()["paired"]}
    assert attempt.device_id in paired

    # The approval is real: the same identity now completes the handshake.
    again = await connect_device(gateway.url, gateway.token, attempt.identity)
    assert again.outcome == "connected", again
    assert again.device_token


async def test_rejected_request_disappears(gateway: Gateway) -> None:
    attempt = await request_pairing(gateway.url, gateway.token, display_name="smoke-reject")
    assert attempt.request_id is not None
    rejected = gateway.cli("devices", "reject", attempt.request_id, "--json")
    assert rejected.returncode == 0, rejected.stderr
    listing = gateway.devices()
    assert attempt.request_id not in {p["requestId"] for p in listing["pending"]}
    assert attempt.device_id not in {p["deviceId"] for p in listing["paired"]}


def test_unknown_request_id_fails(gateway: Gateway) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    assert gateway.cli("devices", "approve", unknown, "--json").returncode == 1
    assert gateway.cli("devices", "reject", unknown, "--json").returncode == 1
