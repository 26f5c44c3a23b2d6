"""The sandbox against the real engine and the real OpenClaw image, through the real API."""

from __future__ import annotations

import asyncio
import os

import docker
import httpx
import pytest

from moltconsole.client import EXEC_STDERR, EXEC_STDOUT, BackendClient, BackendError
from moltconsole_backend.api.service import BackendService
from tests.conftest import SandboxEnv, wait_state

pytestmark = pytest.mark.docker


async def exec_all(client: BackendClient, cmd: list[str]) -> tuple[int, bytes, bytes]:
    out, err, code = b"", b"", -1
    async for item in client.exec(cmd):
        if isinstance(item, int):
            code = item
        elif item[0] == EXEC_STDOUT:
            out += item[1]
        else:
            assert item[0] == EXEC_STDERR
            err += item[1]
    return code, out, err


async def test_create_to_ready_and_lifecycle(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    _, client = backend
    assert (await client.status())["state"] == "absent"

    status = await client.action("start")
    assert status["state"] in ("starting", "ready")
    ready = await wait_state(client, "ready")
    assert ready["openclaw_version"] == "2026.9.6"
    assert ready["container_id"]
    # The gateway answers on the published loopback port.
    port = sandbox_env.settings.sandbox.gateway_port
    async with httpx.AsyncClient() as http:
        readyz = await http.get(f"http://127.0.0.1:{port}/readyz")
    assert readyz.status_code == 200 and readyz.json()["ready"] is True

    stopped = await client.action("stop")
    assert stopped["state"] == "stopped"
    assert docker_client.containers.get(sandbox_env.container_name).status == "exited"

    await client.action("start")
    await wait_state(client, "ready")

    first_id = (await client.status())["container_id"]
    await client.action("restart")
    restarted = await wait_state(client, "ready")
    assert restarted["container_id"] == first_id  # restart keeps the container
    assert restarted["restarts"] == 0  # user restarts are not crash restarts


async def test_destroy_and_recreate_keeps_the_state_directory(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    code, _, _ = await exec_all(client, ["sh", "-c", "echo remember-me > /data/state/keep.txt"])
    assert code == 0
    old_id = (await client.status())["container_id"]

    destroyed = await client.action("destroy")
    assert destroyed["state"] == "absent"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(sandbox_env.container_name)
    state_dir = sandbox_env.settings.sandbox_dir / "state"
    assert (state_dir / "keep.txt").read_text() == "remember-me\n"
    assert (state_dir / "openclaw.json").exists()

    await client.action("start")
    ready = await wait_state(client, "ready")
    assert ready["container_id"] != old_id
    code, out, _ = await exec_all(client, ["cat", "/data/state/keep.txt"])
    assert (code, out) == (0, b"remember-me\n")


async def test_hardening_is_visible_in_docker_inspect(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    attrs = docker_client.containers.get(sandbox_env.container_name).attrs
    host = attrs["HostConfig"]
    config = attrs["Config"]
    assert config["User"] not in ("", "0", "root", "0:0")
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["Privileged"] is False
    assert host["Memory"] == 3 * 1024**3
    assert host["NanoCpus"] == int(1.5e9)
    assert host["PidsLimit"] == 512
    bindings = host["PortBindings"]["18789/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(sandbox_env.settings.sandbox.gateway_port)}]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {"/data/state", "/data/logs"}
    assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])
    # Inside: not root, no capabilities, root filesystem read-only.
    code, out, _ = await exec_all(client, ["sh", "-c", "id -u; grep CapEff /proc/self/status"])
    uid, capeff = out.decode().split("\n")[:2]
    assert code == 0 and uid != "0"
    assert capeff.split()[1] == "0000000000000000"
    code, _, err = await exec_all(client, ["sh", "-c", "touch /usr/evil"])
    assert code != 0 and b"Read-only file system" in err
    # No provider key reached the sandbox's environment.
    env = "\n".join(config["Env"])
    assert "ANTHROPIC_API_KEY" not in env and "OPENAI_API_KEY" not in env


async def test_exec_streams_output_and_returns_exit_codes(
    backend: tuple[BackendService, BackendClient],
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "starting", "ready")
    code, out, err = await exec_all(client, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert code == 7
    assert out == b"out\n"
    assert err == b"err\n"
    code, out, _ = await exec_all(client, ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"])
    assert code == 0 and len(out) == 300000
    code, _, _ = await exec_all(client, ["/no/such/program"])
    assert code != 0


async def test_processes_and_stats(backend: tuple[BackendService, BackendClient]) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    table = await client.processes()
    assert "PID" in table["titles"]
    commands = [row[-1] for row in table["processes"]]
    assert any("openclaw" in cmd or "node" in cmd for cmd in commands), commands
    samples = []
    async for sample in client.stats():
        samples.append(sample)
        if len(samples) == 2:
            break
    assert samples[-1]["memory_bytes"] > 50 * 2**20  # the gateway uses hundreds of MiB
    assert samples[-1]["memory_limit"] == 3 * 1024**3
    assert samples[-1]["cpu_percent"] >= 0
    assert samples[-1]["pids"] >= 2


async def test_killing_the_gateway_leads_back_to_ready(
    backend: tuple[BackendService, BackendClient], docker_client: docker.DockerClient,
    sandbox_env: SandboxEnv,
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    container = docker_client.containers.get(sandbox_env.container_name)
    top = container.top(ps_args="-o pid,ppid,args")
    tini = [row for row in top["Processes"] if "tini" in row[2]]
    assert len(tini) == 1, top
    # The gateway is tini's only child (the entrypoint exec's it).
    gateway = [row for row in top["Processes"] if row[1] == tini[0][0]]
    assert len(gateway) == 1 and "openclaw" in gateway[0][2], top
    os.kill(int(gateway[0][0]), 9)  # host pid: as root we can kill it like the OOM killer would
    crashed = await wait_state(client, "crashed")
    assert crashed["last_exit_code"] == 137  # SIGKILL
    assert "restarting in" in crashed["reason"]
    back = await wait_state(client, "ready", after=lambda s: s["restarts"] >= 1)
    assert back["restarts"] == 1
    assert back["container_id"] == crashed["container_id"]  # restarted, not re-created


async def test_backend_restart_adopts_the_running_container(
    sandbox_env: SandboxEnv,
) -> None:
    async with BackendService(sandbox_env.settings) as service:
        async with BackendClient(service.socket_path) as client:
            await client.action("start")
            first = await wait_state(client, "ready")
    # The container outlives the backend; a new backend finds it ready, unchanged.
    async with BackendService(sandbox_env.settings) as service:
        async with BackendClient(service.socket_path) as client:
            again = await wait_state(client, "ready")
    assert again["container_id"] == first["container_id"]
    assert abs(again["started_at"] - first["started_at"]) < 2


async def test_container_removed_behind_our_back(
    backend: tuple[BackendService, BackendClient], docker_client: docker.DockerClient,
    sandbox_env: SandboxEnv,
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    await asyncio.to_thread(docker_client.containers.get(sandbox_env.container_name).remove, force=True)
    absent = await wait_state(client, "absent")
    assert "removed outside moltconsole" in absent["reason"]
    assert str(sandbox_env.settings.sandbox_dir / "state") in absent["reason"]
    assert (sandbox_env.settings.sandbox_dir / "state" / "openclaw.json").exists()
    # No automatic re-creation: the user said nothing. Start brings it back, although the
    # killed gateway left its owner lease in the state database (the fixed hostname lets the
    # new container take it over).
    assert absent["desired"] == "stopped"
    await client.action("start")
    ready = await wait_state(client, "ready")
    assert ready["container_id"] != absent["container_id"]


async def test_port_in_use_fails_with_a_clear_message(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    import socket

    _, client = backend
    port = sandbox_env.settings.sandbox.gateway_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(BackendError) as info:
            await client.action("start")
    message = str(info.value)
    assert f"port {port}" in message and "already in use" in message
    assert "gateway_port" in message
    assert (await client.status())["state"] == "failed"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(sandbox_env.container_name)


async def test_sandbox_comes_back_after_the_backend_and_container_went_down(
    sandbox_env: SandboxEnv, docker_client: docker.DockerClient,
) -> None:
    """As after a host reboot: the sandbox was running, everything stopped, the backend returns."""
    async with BackendService(sandbox_env.settings) as service:
        async with BackendClient(service.socket_path) as client:
            await client.action("start")
            await wait_state(client, "ready")
    await asyncio.to_thread(docker_client.containers.get(sandbox_env.container_name).stop, timeout=20)
    async with BackendService(sandbox_env.settings) as service:
        async with BackendClient(service.socket_path) as client:
            back = await wait_state(client, "ready")
            assert back["desired"] == "running"
            await client.action("stop")
    # Stopped on purpose: the next backend leaves it stopped.
    async with BackendService(sandbox_env.settings) as service:
        async with BackendClient(service.socket_path) as client:
            assert (await client.status())["state"] == "stopped"


async def test_abandoned_exec_streams_do_not_starve_the_backend(
    backend: tuple[BackendService, BackendClient],
) -> None:
    """Clients that leave mid-command (Ctrl-C on exec -- tail -f) must not pin Docker calls."""
    _, client = backend
    await client.action("start")
    await wait_state(client, "starting", "ready")
    for _ in range(10):  # more than the default thread pool of this 2-core machine
        stream = client.exec(["sh", "-c", "while true; do echo tick; sleep 0.2; done"])
        first = await anext(stream)
        assert first == (EXEC_STDOUT, b"tick\n")
        await stream.aclose()
    # Every ordinary call still answers.
    code, out, _ = await asyncio.wait_for(exec_all(client, ["echo", "still here"]), timeout=30)
    assert (code, out) == (0, b"still here\n")
    table = await asyncio.wait_for(client.processes(), timeout=30)
    assert table["processes"]
