"""Memory with the real agent: OpenClaw in the real sandbox writes its memory with its own
tool, and the backend keeps its state directory in a real S3 bucket (SeaweedFS).

The tests are the stages of one story and run in this order on one sandbox (started once):

1. a turn in which the agent writes ``memory/<date>.md``: a snapshot in the bucket holds the
   file within 5 s of it appearing on the host, with the turn's transcript in SQLite;
2. the bucket goes down while the agent writes ``MEMORY.md``: the snapshot waits in the local
   repository, the keeper says since when the bucket is unreachable, and all goes up when the
   bucket is back;
3. a file changed just before a stop is in the stop's own snapshot;
4. a new server (an empty data directory, the same bucket) starts the sandbox with its memory
   restored from the bucket, says so in the sandbox's history, and the agent goes on from there.

The model is the fake provider (Anthropic's SSE over real HTTP); it answers a prompt carrying a
marker with a call of the write tool OpenClaw offers (tests/support/memory_agent.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import pytest_asyncio

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.gateway.keys import set_key
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.repo import Repository, Snapshot
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.sandbox.spec import container_user
from moltconsole_backend.settings import GatewaySettings, ProviderSettings, Settings
from tests.conftest import SandboxEnv, wait_state
from tests.support.fake_llm import FakeServer
from tests.support.memory_agent import (
    BucketReader,
    MemoryAgentProvider,
    Remember,
    bucket_keys,
    entry,
    memory_settings,
    restart_s3,
    sqlite_tables_with,
)
from tests.support.s3_server import S3Server, running_s3_server

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

KEY = "sk-ant-memory-agent-test-0123456789"
WORKSPACE = "workspace"  # the agent's working directory, under the state directory
AGENT_DB = "agents/main/agent/openclaw-agent.sqlite"
BUCKET_WITHIN = 5.0  # seconds from a file appearing on the host to a snapshot in the bucket
TURN_TIMEOUT = 240.0
START_TIMEOUT = 240.0
PUSH_TIMEOUT = 90.0  # covers the keeper's backoff (up to 30 s) after the bucket comes back


@dataclass
class World:
    """One backend with memory in the bucket, its sandbox, the provider and the S3 server."""

    env: SandboxEnv
    service: BackendService
    client: BackendClient
    provider: MemoryAgentProvider
    s3: S3Server
    prefix: str
    bucket: BucketReader
    docker: docker.DockerClient
    fake_url: str
    remembered: dict[str, bytes] = field(default_factory=dict)  # state path -> what the agent wrote
    roots: list[Path] = field(default_factory=list)  # to remove at the end

    @property
    def keeper(self) -> MemoryKeeper:
        keeper = self.service.fleet.default.memory
        assert keeper is not None, f"memory is off: {self.service.memory.problem}"
        return keeper

    @property
    def state(self) -> Path:
        return self.keeper.state_dir


def backend_settings(env: SandboxEnv, s3: S3Server, prefix: str, fake_url: str) -> Settings:
    """``env``'s settings with the fake provider behind the gateway and memory in the bucket;
    the bucket's key pair in the keys file, as ``moltconsole keys set`` puts it."""
    gateway = GatewaySettings(
        port=env.settings.gateway.port, retry_backoff=0.0,
        providers={"anthropic": ProviderSettings(api="anthropic", base_url=fake_url, api_key=KEY)},
    )
    settings = env.settings.model_copy(update={"gateway": gateway, "memory": memory_settings(s3, prefix)})
    settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
    for name, value in bucket_keys(s3).items():
        set_key(settings.keys_path, name, value)
    return settings


async def agent_turn(world: World, message: str) -> str:
    """One real turn of the agent (``openclaw agent`` in the sandbox); its JSON output."""
    container = world.docker.containers.get(world.env.container_name)
    command = ["openclaw", "agent", "--agent", "main", "-m", message, "--json"]
    code, output = await asyncio.wait_for(asyncio.to_thread(container.exec_run, command), TURN_TIMEOUT)
    assert isinstance(output, bytes)
    text = output.decode(errors="replace")
    assert code == 0, text[-3000:]
    return text


async def remember_turn(world: World, path: str, content: str) -> tuple[Remember, float]:
    """A turn in which the agent writes ``content`` to ``path`` (under its workspace) with its
    own write tool; the plan (with the tool it used) and when the file appeared on the host."""
    marker = "MARK-" + secrets.token_hex(4)
    plan = world.provider.remember(marker, path, content)
    await agent_turn(world, f"Please remember this for later ({marker}): {content.strip()}")
    assert plan.tool is not None, "the agent never asked for the scripted turn"
    assert plan.result_is_error is False, f"the write tool failed: {plan.result}"
    written = world.state / WORKSPACE / path
    assert written.read_bytes() == content.encode()
    world.remembered[f"{WORKSPACE}/{path}"] = content.encode()
    return plan, written.stat().st_mtime


async def in_bucket(world: World, path: str, content: bytes, timeout: float) -> tuple[Snapshot, float]:
    """Wait, push by push, until a snapshot in the bucket holds ``path`` with ``content``; that
    snapshot and the time it was seen there."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                pushed = world.keeper.bucket.last_push
                held = await asyncio.to_thread(world.bucket.holding, path, content)
                if held:
                    return held[0], time.time()
                await world.keeper.wait(_pushed_since(pushed), timeout)
    except TimeoutError:
        raise AssertionError(
            f"no snapshot in the bucket held {path} within {timeout:.0f} s; the keeper's bucket: "
            f"{world.keeper.bucket}, {world.keeper.pending} snapshot(s) waiting"
        ) from None


def _pushed_since(pushed: float | None) -> Callable[[MemoryKeeper], bool]:
    return lambda keeper: keeper.bucket.last_push != pushed


def local_repository(settings: Settings) -> Repository:
    """The backend's local repository alone (not the bucket behind it)."""
    return Repository(LocalStore(settings.memory_dir)).open(create=False)


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS of this module's own: the tests stop and start it."""
    with running_s3_server(tmp_path_factory.mktemp("memory-agent-s3")) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    docker_client: docker.DockerClient, sandbox_image: str, s3: S3Server
) -> AsyncIterator[World]:
    """The sandbox started once, ready, on a backend keeping its memory in the bucket."""
    provider = MemoryAgentProvider()
    roots = [Path(tempfile.mkdtemp(prefix="mc-mem-", dir="/tmp"))]
    env = SandboxEnv(roots[0])
    prefix = "agent-" + secrets.token_hex(4)
    try:
        async with FakeServer(provider) as fake:
            service = BackendService(backend_settings(env, s3, prefix, fake.url))
            await service.start()
            client = BackendClient(service.socket_path)
            try:
                assert service.memory.enabled, service.memory.problem
                await client.action("start")
                await wait_state(client, "ready", timeout=START_TIMEOUT)
                bucket = BucketReader(s3, prefix, env.settings.sandbox.name)
                yield World(
                    env, service, client, provider, s3, prefix, bucket, docker_client, fake.url, roots=roots,
                )
            finally:
                await client.aclose()
                await service.stop()
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(env.container_name).remove(force=True)
        for path in roots:
            shutil.rmtree(path, ignore_errors=True)


# --- the tests --------------------------------------------------------------------------------
async def test_a_memory_the_agent_writes_is_in_the_bucket_within_5_s_with_its_transcript(
    world: World,
) -> None:
    before = world.keeper.last
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path = f"memory/{day}.md"
    content = f"# {day}\n\n- The user's sky is green; their cat is called Pixel.\n"
    watch = asyncio.ensure_future(in_bucket(world, f"{WORKSPACE}/{path}", content.encode(), TURN_TIMEOUT))
    try:
        plan, appeared = await remember_turn(world, path, content)
        snapshot, seen = await watch
    finally:
        watch.cancel()

    # The agent wrote it with OpenClaw's own file-writing tool, named in its request.
    assert plan.tool is not None and plan.called_at is not None
    assert plan.tool.name in {t["name"] for t in world.provider.tools}
    delay = seen - appeared
    print(f"write tool {plan.tool}; file on the host {appeared - plan.called_at:.2f} s after the "
          f"tool call; in the bucket {delay:.2f} s after it appeared (snapshot {snapshot.id}, "
          f"{snapshot.reason}, {len(snapshot.files)} files)")
    assert delay <= BUCKET_WITHIN, f"the bucket held the memory {delay:.1f} s after it appeared"

    # The turn's transcript is in the agent's SQLite database in the bucket, and was not before.
    after = await asyncio.to_thread(world.bucket.latest)
    found = entry(after, AGENT_DB)
    assert found is not None, sorted(e.path for e in after.files)
    image = await asyncio.to_thread(world.bucket.repo.read_file, found)
    tables = await asyncio.to_thread(sqlite_tables_with, image, plan.marker)
    assert tables, f"the marker of the turn is in no table of {AGENT_DB} in snapshot {after.id}"
    databases = {e.path: e.blob for e in after.files if e.path.endswith(".sqlite")}
    earlier = {e.path: e.blob for e in before.files if e.path.endswith(".sqlite")} if before else {}
    changed = sorted(p for p in databases if earlier.get(p) != databases[p])
    print(f"the turn changed {changed}; the marker is in {AGENT_DB} tables {tables}")
    assert AGENT_DB in changed


async def test_while_the_bucket_is_down_snapshots_wait_locally_and_go_up_when_it_is_back(
    world: World,
) -> None:
    keeper = world.keeper
    path = "MEMORY.md"
    content = "# Durable facts\n\n- Meetings are on Tuesdays at 10:00, never on Fridays.\n"
    down_at = time.time()
    await asyncio.to_thread(world.s3.stop)
    try:
        await remember_turn(world, path, content)
        blob = keeper.repo.blob_name(content.encode())

        def kept_locally(k: MemoryKeeper) -> bool:
            found = entry(k.last, f"{WORKSPACE}/{path}") if k.last is not None else None
            return found is not None and found.blob == blob and k.bucket.reachable is False

        await keeper.wait(kept_locally, PUSH_TIMEOUT)
        since = keeper.bucket.unreachable_since
        assert since is not None and down_at <= since <= time.time(), (down_at, since)
        assert keeper.pending >= 1
        assert world.s3.secret_key not in keeper.bucket.last_error
        # The API says so too, as the console's sync line shows it.
        status = await world.client.memory.status()
        assert status.bucket is not None and status.bucket.reachable is False
        assert status.bucket.unreachable_since == since and status.pending >= 1
        local = await asyncio.to_thread(local_repository, world.service.settings)
        held = await asyncio.to_thread(local.snapshots, keeper.name)
        assert any((e := entry(s, f"{WORKSPACE}/{path}")) and e.blob == blob for s in held)
        print(f"bucket unreachable since {since - down_at:.2f} s after it stopped; "
              f"{keeper.pending} snapshot(s) waiting: {keeper.bucket.last_error}")
    finally:
        took = await asyncio.to_thread(restart_s3, world.s3)
    back_at = time.time()

    await keeper.wait(lambda k: k.bucket.reachable is True and k.pending == 0, PUSH_TIMEOUT)
    print(f"S3 back in {took:.1f} s; the keeper had pushed everything {time.time() - back_at:.1f} s later")
    status = await world.client.memory.status()
    assert status.bucket is not None and status.bucket.reachable is True
    assert status.bucket.unreachable_since is None
    await in_bucket(world, f"{WORKSPACE}/{path}", content.encode(), PUSH_TIMEOUT)
    # Nothing lost: every snapshot of the local repository is in the bucket, whole.
    local = await asyncio.to_thread(local_repository, world.service.settings)
    local_ids = {i for _, i in await asyncio.to_thread(lambda: list(local.snapshot_ids(keeper.name)))}
    in_bucket_now = await asyncio.to_thread(world.bucket.snapshots)
    missing = local_ids - {s.id for s in in_bucket_now}
    assert not missing, f"{len(missing)} of {len(local_ids)} local snapshots never reached the bucket"
    stored = await asyncio.to_thread(lambda: world.bucket.repo.catalog(every_copy=True).where)
    blobs = {b for s in in_bucket_now for e in s.files for b in e.blobs}
    absent = [b for b in blobs if b not in stored]
    assert not absent, f"{len(absent)} blobs named by manifests in the bucket are not there"


async def test_a_stop_waits_for_its_snapshot(world: World) -> None:
    path = f"{WORKSPACE}/memory/before-stop.md"
    content = b"- Written a moment before the stop: the spare key is under the blue pot.\n"
    container = world.docker.containers.get(world.env.container_name)
    script = f"mkdir -p /data/state/workspace/memory && printf '%s' '{content.decode()}' > /data/state/{path}"
    result = await asyncio.to_thread(container.exec_run, ["sh", "-c", script])
    assert result.exit_code == 0, result.output
    asked = time.time()
    await world.client.action("stop")
    stopped = time.time()
    # No waiting: the stop returned only once its snapshot was kept.
    local = await asyncio.to_thread(local_repository, world.service.settings)
    snapshots = await asyncio.to_thread(local.snapshots, world.keeper.name)
    stop_snaps = [s for s in snapshots if s.reason == "before-stop" and s.time >= asked]
    assert stop_snaps, [(s.reason, s.time - asked) for s in snapshots[-3:]]
    found = entry(stop_snaps[-1], path)
    assert found is not None and local.read_file(found) == content
    print(f"stop took {stopped - asked:.2f} s including its snapshot {stop_snaps[-1].id}")
    listed = (await world.client.memory.snapshots()).snapshots
    assert listed[0].id == stop_snaps[-1].id and listed[0].reason == "before-stop", listed[:3]
    world.remembered[path] = content
    await in_bucket(world, path, content, PUSH_TIMEOUT)


async def test_a_new_server_with_an_empty_data_dir_brings_the_memory_back(world: World) -> None:
    assert world.remembered, "run the whole module: the earlier stages give the agent something to remember"
    status = await world.client.status()
    if status["state"] != "stopped":
        await world.client.action("stop")
    await world.keeper.wait(lambda k: k.bucket.reachable is True and k.pending == 0, PUSH_TIMEOUT)
    newest = await asyncio.to_thread(world.bucket.latest)
    # The old server is gone: its container removed, its backend stopped.
    await world.client.action("destroy")
    await world.client.aclose()
    await world.service.stop()

    name = world.env.settings.sandbox.name
    root = Path(tempfile.mkdtemp(prefix="mc-mem2-", dir="/tmp"))
    world.roots.append(root)
    env = SandboxEnv(root, name=name)
    settings = backend_settings(env, world.s3, world.prefix, world.fake_url)
    assert not settings.sandbox_dir.exists()
    async with BackendService(settings) as service, BackendClient(service.socket_path) as client:
        keeper = service.fleet.default.memory
        assert keeper is not None, service.memory.problem
        started = time.time()
        await client.action("start")
        await wait_state(client, "ready", timeout=START_TIMEOUT)
        print(f"the new server's sandbox was ready {time.time() - started:.1f} s after start")

        # Every memory the agent wrote is back, byte for byte, and the agent's user owns it.
        for path, content in world.remembered.items():
            assert (keeper.state_dir / path).read_bytes() == content, path
        uid, gid = container_user()
        owners = {p: p.lstat() for p in keeper.state_dir.rglob("*")}
        strangers = [p for p, st in owners.items() if (st.st_uid, st.st_gid) != (uid, gid)]
        assert not strangers, strangers[:5]

        # The history says it restored, from which snapshot and when that was taken.
        stream = client.events(history=200)
        first = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
        messages = [e["message"] for e in first["events"]]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.time))
        restoring = [m for m in messages if "restoring the memory" in m]
        assert restoring, messages
        assert newest.id in restoring[0] and when in restoring[0], restoring[0]

        # The agent goes on where it was: its next request carries what the first turn said.
        first_plan = world.provider.plans[0]
        before = len(world.provider.seen)
        await agent_turn(world, "What do you remember about my sky and my cat?")
        later = world.provider.seen[before:]
        assert any(first_plan.marker in str(s.body) for s in later), "the restored agent forgot turn one"
