"""Shared fixtures: real Docker engine, the real sandbox image, an in-process backend.

In CI (CI=true) a skipped test fails the run: every test must really run there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

# Started as a background job without job control (`cmd &` in a script), the run inherits
# SIGINT ignored, and so would every CLI child the tests interrupt with it (Python installs
# no KeyboardInterrupt handler then): the tests run as from a terminal, with SIGINT as usual.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


import docker
import pytest
import pytest_asyncio

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.settings import GatewaySettings, SandboxSettings, Settings, load_settings
from moltconsole_shared.paths import PathSettings


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Turn skips into failures in CI, so a missing component cannot hide."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The real engine; the tests fail (never skip) without it."""
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the Docker engine is needed for these tests (run scripts/setup.sh): {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    """The real OpenClaw image at the configured version, built once if missing."""
    from moltconsole_backend.sandbox.image import ImageBuilder, image_tag

    defaults = load_settings(None, env={"XDG_CONFIG_HOME": "/nonexistent"})
    sb = defaults.sandbox
    builder = ImageBuilder(
        docker_client, repository=sb.image_repository, version=sb.openclaw_version,
        route=sb.build_route, base_image=sb.base_image, cache_dir=defaults.paths.cache_dir,
    )
    if not builder.exists():
        builder.build(lambda progress: print(f"[{progress.step}] {progress.message}"))
    return image_tag(sb.image_repository, sb.openclaw_version)


class SandboxEnv:
    """One test's private moltconsole world: short paths, its own sandbox name and port."""

    def __init__(self, root: Path, **sandbox: Any) -> None:
        self.root = root
        defaults = load_settings(None, env={"XDG_CONFIG_HOME": "/nonexistent"})
        options: dict[str, Any] = {
            "name": f"t{uuid.uuid4().hex[:10]}",
            "gateway_port": free_port(),
            "restart_backoff_initial": 0.2,
            "restart_backoff_max": 2.0,
            "health_interval": 0.5,
        }
        options.update(sandbox)
        self.settings = Settings(
            sandbox=SandboxSettings(**options),
            gateway=GatewaySettings(port=free_port()),
            paths=PathSettings(
                data_dir=root / "data",
                cache_dir=defaults.paths.cache_dir,  # share the prepared image inputs
                runtime_dir=root / "run",
            ),
        )

    @property
    def container_name(self) -> str:
        return f"moltconsole-{self.settings.sandbox.name}"

    def write_config(self) -> Path:
        """A TOML file equivalent to these settings, for CLI subprocesses."""
        sb = self.settings.sandbox
        paths = self.settings.paths
        text = (
            "[sandbox]\n"
            f'name = "{sb.name}"\ngateway_port = {sb.gateway_port}\n'
            f"restart_backoff_initial = {sb.restart_backoff_initial}\n"
            "[paths]\n"
            f'data_dir = "{paths.data_dir}"\ncache_dir = "{paths.cache_dir}"\n'
            f'runtime_dir = "{paths.runtime_dir}"\n'
            "[gateway]\n"
            f"port = {self.settings.gateway.port}\n"
        )
        path = self.root / "config.toml"
        path.write_text(text)
        return path


def _remove_container(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)


@pytest.fixture
def sandbox_env(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[SandboxEnv]:
    """A private environment; its container is removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    env = SandboxEnv(root)
    yield env
    _remove_container(docker_client, env.container_name)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_env(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[Any]:
    """Factory for environments with custom sandbox settings."""
    made: list[SandboxEnv] = []

    def make(**sandbox: Any) -> SandboxEnv:
        env = SandboxEnv(Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp")), **sandbox)
        made.append(env)
        return env

    yield make
    for env in made:
        _remove_container(docker_client, env.container_name)
        shutil.rmtree(env.root, ignore_errors=True)


@pytest_asyncio.fixture
async def backend(sandbox_env: SandboxEnv) -> AsyncIterator[tuple[BackendService, BackendClient]]:
    """An in-process backend on its real unix socket, and a client for it."""
    async with BackendService(sandbox_env.settings) as service:
        async with BackendClient(service.socket_path) as client:
            yield service, client


async def wait_state(
    client: BackendClient, *states: str, timeout: float = 120.0, after: Any = None
) -> dict[str, Any]:
    """Follow the backend's events until the sandbox reaches one of ``states``."""
    import asyncio

    async def follow() -> dict[str, Any]:
        async for message in client.events():
            if message["type"] != "status":
                continue
            status: dict[str, Any] = message["status"]
            if status["state"] in states and (after is None or after(status)):
                return status
        raise AssertionError("event stream ended")

    try:
        return await asyncio.wait_for(follow(), timeout)
    except TimeoutError:
        status = await client.status()
        raise AssertionError(
            f"sandbox did not reach {states} within {timeout}s; it is {status['state']}: "
            f"{status['reason']}"
        ) from None
