"""Several sandboxes on one backend (fleet.py, api/by_sandbox.py, api/fleet_routes.py), over an
engine with no containers: naming, the registry, ports, the memory check, and the API by name.
The real engine and real containers are in tests/integration/test_fleet.py."""

from __future__ import annotations

import queue
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.service import fleet_app
from moltconsole_backend.fleet import SandboxFleet
from moltconsole_backend.sandbox.engine import ContainerEvent, ContainerInfo
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import Settings, load_settings
from moltconsole_shared.config import ConfigError
from moltconsole_shared.paths import PathSettings
from moltconsole_shared.wire.sandbox import SandboxState
from tests.unit.test_client import serve_asgi


class _Events:
    def __init__(self) -> None:
        self.items: queue.Queue[ContainerEvent | None] = queue.Queue()

    def __iter__(self) -> Iterator[ContainerEvent]:
        while (item := self.items.get()) is not None:
            yield item

    def close(self) -> None:
        self.items.put(None)


class EmptyEngine:
    """An engine with no containers: every sandbox is absent until it is started."""

    def inspect(self, name: str) -> ContainerInfo | None:
        return None

    def events(self, label: str, since: int) -> _Events:
        return _Events()

    def close(self) -> None:
        pass


def _manager(settings: Settings) -> SandboxManager:
    return SandboxManager(settings, engine_factory=EmptyEngine)  # type: ignore[arg-type]


@pytest.fixture
def root() -> Path:
    return Path(tempfile.mkdtemp(prefix="mc-fleet-", dir="/tmp"))


def _settings(root: Path, **sections: Any) -> Settings:
    paths = PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run")
    return Settings.model_validate({
        "sandbox": {"name": "main", "gateway_port": 20001}, "paths": paths.model_dump(), **sections,
    })


@pytest.fixture
async def fleet(root: Path) -> AsyncIterator[SandboxFleet]:
    settings = _settings(root, sandboxes={"work": {"gateway_port": 20002, "memory_limit": "2g"}})
    fleet = SandboxFleet(settings, make_manager=_manager, make_logs=None, available_mib=lambda: 16_000)
    await fleet.open()
    yield fleet
    await fleet.close()


@pytest.fixture
async def client(fleet: SandboxFleet, root: Path) -> AsyncIterator[BackendClient]:
    async with serve_asgi(fleet_app(fleet), root / "s.sock"), BackendClient(root / "s.sock") as client:
        yield client


# --- settings ------------------------------------------------------------------------------------
def test_a_sandbox_section_takes_what_it_leaves_out_from_the_default(root: Path) -> None:
    settings = _settings(root, sandbox={"name": "main", "gateway_port": 20001, "cpus": 0.5},
                         sandboxes={"work": {"gateway_port": 20002, "memory_limit": "2g"}})
    work = settings.sandboxes["work"]
    assert (work.name, work.cpus, work.memory_limit, work.gateway_port) == ("work", 0.5, "2g", 20002)
    view = settings.for_sandbox(work)
    assert view.sandbox_dir == root / "data" / "sandboxes" / "work"
    assert settings.sandbox_dir == root / "data" / "sandboxes" / "main"


def test_two_sandboxes_on_one_port_are_refused_naming_the_key(root: Path) -> None:
    config = root / "config.toml"
    config.write_text('[sandbox]\ngateway_port = 20001\n[sandboxes.work]\nmemory_limit = "2g"\n'
                      '[sandboxes.play]\ngateway_port = 20001\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    text = str(caught.value)
    assert "sandboxes.work.gateway_port 18789" not in text  # work has the default port, not 20001
    assert "gateway_port 20001 is also the port of the default sandbox 'default'" in text
    assert str(config) in text


def test_a_bad_value_in_a_sandbox_section_names_its_key(root: Path) -> None:
    config = root / "config.toml"
    config.write_text('[sandboxes.work]\ngateway_port = 20002\nmemory_limit = "lots"\n')
    with pytest.raises(ConfigError, match=r"sandboxes\.work\.memory_limit = 'lots'"):
        load_settings(config, env={})


# --- the API by name -----------------------------------------------------------------------------
async def test_the_list_has_every_sandbox_default_first(client: BackendClient) -> None:
    listing = await client.sandboxes()
    assert [(s.name, s.default, s.origin, s.gateway_port, s.memory_limit) for s in listing.sandboxes] == [
        ("main", True, "config", 20001, "3g"), ("work", False, "config", 20002, "2g"),
    ]
    assert listing.default == "main"
    assert all(s.status.state == SandboxState.ABSENT for s in listing.sandboxes)


async def test_each_sandbox_answers_for_itself_by_name(client: BackendClient) -> None:
    client.sandbox = "work"
    status = await client.status()
    assert status["gateway_url"] == "http://127.0.0.1:20002"
    assert status["state_dir"].endswith("/sandboxes/work/state")
    client.sandbox = None  # the first paths: the default sandbox
    assert (await client.status())["gateway_url"] == "http://127.0.0.1:20001"
    events = client.events()
    client.sandbox = "main"
    first = await anext(events)  # the stream opened on the default keeps it
    assert first["status"]["gateway_url"] == "http://127.0.0.1:20001"
    await events.aclose()


async def test_an_unknown_sandbox_is_a_404_naming_the_ones_there_are(client: BackendClient) -> None:
    client.sandbox = "nope"
    with pytest.raises(BackendError) as caught:
        await client.status()
    assert (caught.value.status, caught.value.kind) == (404, "not_found")
    assert "no sandbox called 'nope'; the sandboxes are: main, work" in str(caught.value)
    with pytest.raises(BackendError, match="no sandbox called 'nope'") as streamed:
        await anext(client.logs(tail=1))
    assert streamed.value.kind == "not_found"


async def test_create_remembers_the_sandbox_and_picks_a_free_port(
    client: BackendClient, fleet: SandboxFleet, root: Path,
) -> None:
    made = await client.create_sandbox("play", memory_limit="1g", start=False)
    assert (made.name, made.origin, made.gateway_port, made.memory_limit) == ("play", "created", 20003, "1g")
    assert made.status.state == SandboxState.ABSENT
    client.sandbox = "play"
    assert (await client.status())["state_dir"].endswith("/sandboxes/play/state")
    # A new backend over the same data directory has it again, with the same port.
    again = SandboxFleet(fleet.settings, make_manager=_manager, make_logs=None)
    await again.open()
    try:
        assert [(s.name, s.origin, s.settings.sandbox.gateway_port) for s in again.all()] == [
            ("main", "config", 20001), ("play", "created", 20003), ("work", "config", 20002),
        ]
    finally:
        await again.close()


async def test_create_refuses_a_taken_name_or_port_and_a_bad_value(client: BackendClient) -> None:
    with pytest.raises(BackendError, match="already a sandbox called 'work'") as taken:
        await client.create_sandbox("work", start=False)
    assert taken.value.status == 409
    with pytest.raises(BackendError, match="port 20001 is already the gateway port of main"):
        await client.create_sandbox("play", gateway_port=20001, start=False)
    with pytest.raises(BackendError, match="memory_limit: expected a size such as 2g") as bad:
        await client.create_sandbox("play", memory_limit="lots", start=False)
    assert bad.value.status == 400
    with pytest.raises(BackendError, match="name: use 1-31 lowercase letters"):
        await client.create_sandbox("Bad Name", start=False)
    assert [s.name for s in (await client.sandboxes()).sandboxes] == ["main", "work"]


async def test_remove_takes_a_created_sandbox_and_keeps_its_state(
    client: BackendClient, fleet: SandboxFleet,
) -> None:
    await client.create_sandbox("play", start=False)
    state = fleet.get("play").manager.paths.root
    state.mkdir(parents=True, exist_ok=True)
    (state / "keep-me").write_text("memory")
    await client.remove_sandbox("play")
    assert [s.name for s in (await client.sandboxes()).sandboxes] == ["main", "work"]
    assert (state / "keep-me").read_text() == "memory"
    assert "play" not in fleet.registry.read()


async def test_a_sandbox_of_the_config_file_is_not_removed(client: BackendClient) -> None:
    with pytest.raises(BackendError, match=r"declared in the config file \(\[sandboxes.work\]\)") as caught:
        await client.remove_sandbox("work")
    assert caught.value.status == 409
    with pytest.raises(BackendError) as unknown:
        await client.remove_sandbox("nope")
    assert unknown.value.status == 404


# --- the memory check ----------------------------------------------------------------------------
async def test_a_start_the_host_cannot_hold_is_refused_with_what_is_free(root: Path) -> None:
    fleet = SandboxFleet(_settings(root), make_manager=_manager, make_logs=None, available_mib=lambda: 500)
    await fleet.open()
    async with serve_asgi(fleet_app(fleet), root / "s.sock"), BackendClient(root / "s.sock") as client:
        with pytest.raises(BackendError) as caught:
            await client.action("start")
        assert caught.value.status == 409
        assert str(caught.value) == (
            "not enough memory to start sandbox 'main': 500 MiB of the host's memory is free "
            "(500 MiB available) and a sandbox needs 768 MiB to start (an idle OpenClaw uses about "
            "750 MiB). Stop another sandbox, or set sandbox.allow_overcommit = true to start it anyway."
        )
        status = await client.status()
        assert (status["state"], status["desired"]) == ("absent", "stopped")  # nothing changed
    await fleet.close()


async def test_sandboxes_starting_now_count_against_the_free_memory(root: Path) -> None:
    settings = _settings(root, sandboxes={"work": {"gateway_port": 20002}})
    fleet = SandboxFleet(settings, make_manager=_manager, make_logs=None, available_mib=lambda: 1200)
    await fleet.open()
    main, work = fleet.get("main").manager, fleet.get("work").manager
    assert fleet.admission(work) is None
    main.publish(main.lifecycle.on_building("building"))  # main is coming up: 768 MiB held for it
    refusal = fleet.admission(work)
    assert refusal is not None and "432 MiB of the host's memory is free" in refusal
    assert "less 768 MiB for the sandboxes starting now" in refusal
    await fleet.close()
    settings = _settings(root, sandboxes={"work": {"gateway_port": 20002, "allow_overcommit": True}})
    fleet = SandboxFleet(settings, make_manager=_manager, make_logs=None, available_mib=lambda: 1200)
    await fleet.open()
    main, work = fleet.get("main").manager, fleet.get("work").manager
    main.publish(main.lifecycle.on_building("building"))
    assert fleet.admission(work) is None
    await fleet.close()


async def test_health_names_the_sandboxes_and_fits_its_schema(client: BackendClient) -> None:
    health = await client.health()  # checked against wire.backend.HEALTH by the client
    assert (health["backend"], health["sandboxes"]) == ("moltconsole", ["main", "work"])
    await client.create_sandbox("play", start=False)
    assert (await client.health())["sandboxes"] == ["main", "play", "work"]
