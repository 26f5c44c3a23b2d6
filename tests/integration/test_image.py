"""The sandbox image itself, run the way the backend runs it: real Docker, real OpenClaw.

Every container gets the backend's hardening flags (non-root uid, read-only root, /tmp tmpfs,
no capabilities, no-new-privileges, limits, loopback-only port, host-gateway alias, state and
logs bind mounts) and is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from docker.models.containers import Container

NAME_PREFIX = "helpera-imgtest-"
TOKEN = "image-test-token-0123456789"
MODEL_KEY = "image-test-model-key"
READY_TIMEOUT = 180.0


@dataclass
class Box:
    """Host directories for one container, owned by the uid the container runs as."""

    state: Path
    logs: Path
    uid: int
    gid: int

    @property
    def config(self) -> Path:
        return self.state / "openclaw.json"


@pytest.fixture
def box(tmp_path: Path) -> Box:
    # Same rule as the backend: uid 1000 when running as root, else the caller's own ids.
    uid, gid = (1000, 1000) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    state, logs = tmp_path / "state", tmp_path / "logs"
    for path in (state, logs):
        path.mkdir()
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
    return Box(state=state, logs=logs, uid=uid, gid=gid)


def _write_owned(box: Box, path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    if os.geteuid() == 0:
        os.chown(path, box.uid, box.gid)


RunContainer = Callable[..., Container]


@pytest.fixture
def run_container(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[RunContainer]:
    created: list[Container] = []

    def run(box: Box, *, command: list[str] | None = None, **environment: str) -> Container:
        name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
        container = docker_client.containers.run(
            sandbox_image,
            command=command,
            name=name,
            hostname=name,
            detach=True,
            user=f"{box.uid}:{box.gid}",
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="2g",
            nano_cpus=1_500_000_000,
            pids_limit=512,
            ports={"18789/tcp": ("127.0.0.1", None)},
            extra_hosts={"host.docker.internal": "host-gateway"},
            volumes={
                str(box.state): {"bind": "/data/state", "mode": "rw"},
                str(box.logs): {"bind": "/data/logs", "mode": "rw"},
            },
            environment=environment,
        )
        created.append(container)
        return container

    yield run
    for container in created:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def _logs(container: Container) -> str:
    return container.logs().decode("utf-8", "replace")


def _host_port(container: Container) -> int:
    container.reload()
    bindings = container.ports["18789/tcp"]
    return int(bindings[0]["HostPort"])


def _wait_ready(container: Container) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    port = _host_port(container)
    deadline = started + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0)
            if response.status_code == 200:
                return time.monotonic() - started, response.json()
        container.reload()
        if container.status == "exited":
            code = container.attrs["State"]["ExitCode"]
            pytest.fail(f"gateway exited with {code} before ready:\n{_logs(container)[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"gateway not ready within {READY_TIMEOUT}s:\n{_logs(container)[-3000:]}")


def _wait_exit(container: Container, timeout: float = 120.0) -> int:
    result = container.wait(timeout=timeout)
    return int(result["StatusCode"])


def test_gateway_ready_under_the_backend_hardening(box: Box, run_container: RunContainer) -> None:
    container = run_container(
        box,
        OPENCLAW_GATEWAY_TOKEN=TOKEN,
        MOLT_HEARTBEAT="30m",
        MOLT_MODEL_BASE_URL="http://host.docker.internal:18790/v1",
        MOLT_MODEL_API_KEY=MODEL_KEY,
    )
    seconds, ready = _wait_ready(container)
    assert ready["ready"] is True
    port = _host_port(container)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["ok"] is True
    print(f"ready after {seconds:.1f} s")

    # The rendered config: managed values, secrets only as env references.
    text = box.config.read_text(encoding="utf-8")
    assert TOKEN not in text and MODEL_KEY not in text
    config = json.loads(text)
    gateway = config["gateway"]
    assert (gateway["mode"], gateway["bind"], gateway["port"]) == ("local", "lan", 18789)
    assert gateway["auth"]["mode"] == "token"
    assert gateway["auth"]["token"] == {
        "source": "env",
        "provider": "default",
        "id": "OPENCLAW_GATEWAY_TOKEN",
    }
    assert config["agents"]["defaults"]["heartbeat"]["every"] == "30m"
    assert config["agents"]["defaults"]["model"]["primary"] == "molt/claude-sonnet-4-6"
    provider = config["models"]["providers"]["molt"]
    assert provider["baseUrl"] == "http://host.docker.internal:18790"  # /v1 dropped
    assert provider["api"] == "anthropic-messages"
    assert config["logging"]["file"] == "/data/logs/openclaw.log"

    # OpenClaw's JSON log lands on the host's logs directory.
    log_file = box.logs / "openclaw.log"
    assert log_file.is_file()
    first = json.loads(log_file.read_text(encoding="utf-8").splitlines()[0])
    assert "time" in first and "message" in first

    # The CLI inside the container works as the container user, with the container's env only.
    code, output = container.exec_run(["openclaw", "devices", "list", "--json"])
    assert isinstance(output, bytes)
    assert code == 0, output.decode()
    devices = json.loads(output)
    assert set(devices) >= {"pending", "paired"}

    container.reload()
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert container.attrs["Config"]["User"] == f"{box.uid}:{box.gid}"
    top = container.top(ps_args="-o pid,args")
    commands = [process[-1] for process in top["Processes"]]
    assert commands[0].startswith("/usr/bin/tini -- /opt/moltconsole/entrypoint.sh")
    assert "openclaw-gateway" in commands

    # Killing the gateway ends the container, so an outside supervisor can restart it.
    kill = (
        'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = openclaw-gatewa ] '
        '&& kill -KILL "${p#/proc/}"; done'
    )
    container.exec_run(["sh", "-c", kill])
    assert _wait_exit(container, timeout=60) == 137


def test_render_keeps_user_keys_and_overrides_managed_ones(box: Box, run_container: RunContainer) -> None:
    original = (
        "// hand-written JSON5\n"
        "{\n"
        '  gateway: { port: 1, controlUi: { allowedOrigins: ["https://ops.example"] } },\n'
        '  agents: { defaults: { heartbeat: { every: "5m", target: "none" } } },\n'
        "  models: { catalogRefresh: { enabled: true } },\n"
        "}\n"
    )
    _write_owned(box, box.config, original)
    container = run_container(
        box, command=["node", "/opt/moltconsole/render-config.mjs"], MOLT_HEARTBEAT="0m"
    )
    assert _wait_exit(container) == 0, _logs(container)

    config = json.loads(box.config.read_text(encoding="utf-8"))
    assert config["gateway"]["port"] == 18789  # managed: overwritten
    assert config["gateway"]["controlUi"]["allowedOrigins"] == ["https://ops.example"]  # kept
    assert config["agents"]["defaults"]["heartbeat"] == {"every": "0m", "target": "none"}
    assert config["models"]["catalogRefresh"]["enabled"] is True  # a default never overrides
    # No model gateway configured: no provider is invented.
    assert "providers" not in config["models"]
    # JSON5 comments cannot survive a JSON rewrite, so the original text is kept beside it.
    backups = list(box.state.glob("openclaw.json.json5-*.bak"))
    assert len(backups) == 1
    assert backups[0].read_text(encoding="utf-8") == original


def test_unparseable_config_is_backed_up_and_replaced(box: Box, run_container: RunContainer) -> None:
    broken = '{ "gateway": { "port": 18789, '
    _write_owned(box, box.config, broken)
    container = run_container(box, command=["node", "/opt/moltconsole/render-config.mjs"])
    assert _wait_exit(container) == 0, _logs(container)
    assert "cannot be parsed" in _logs(container)
    backups = list(box.state.glob("openclaw.json.unparseable-*.bak"))
    assert [b.read_text(encoding="utf-8") for b in backups] == [broken]
    assert json.loads(box.config.read_text(encoding="utf-8"))["gateway"]["bind"] == "lan"


def test_unknown_config_key_stops_the_gateway_with_exit_78(box: Box, run_container: RunContainer) -> None:
    _write_owned(box, box.config, json.dumps({"bogusKeyFromATest": True}))
    container = run_container(box, OPENCLAW_GATEWAY_TOKEN=TOKEN)
    assert _wait_exit(container) == 78
    assert "bogusKeyFromATest" in _logs(container)
    # The user's key is kept, not silently dropped: fixing it is the user's call.
    assert json.loads(box.config.read_text(encoding="utf-8"))["bogusKeyFromATest"] is True


def test_missing_gateway_token_is_refused(box: Box, run_container: RunContainer) -> None:
    container = run_container(box)
    assert _wait_exit(container) == 78
    assert "OPENCLAW_GATEWAY_TOKEN" in _logs(container)
    assert not box.config.exists()
