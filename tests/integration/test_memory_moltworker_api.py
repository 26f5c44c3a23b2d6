"""Moving from Cloudflare in one command, through the API: a Moltworker-shaped bucket on a real S3
server (SeaweedFS) is browsed read-only, then imported as the sandbox's newest snapshot; into an
empty state directory it is restored at once, into a used one it waits for a restore by hand."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.service import create_app
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.moltworker import MoltworkerBucket
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.service import MemoryService, moltworker_store
from moltconsole_backend.memory.store import LocalStore, StoreError
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import MemorySettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings
from tests.integration import memory_conftest_fixtures
from tests.support.s3_server import S3Server
from tests.unit.test_client import serve_asgi
from tests.unit.test_manager_events import StubEngine

s3_server = memory_conftest_fixtures.s3_server  # the session's SeaweedFS, shared with other memory tests

TREE = {
    "openclaw/openclaw.json": b'{"agents": {"defaults": {"workspace": "/root/clawd"}}}\n',
    "openclaw/credentials/telegram.json": b'{"token": "not a real one"}\n',
    "workspace/MEMORY.md": b"# Memory\nThe user moved from Cloudflare.\n",
    "workspace/memory/2026-11-30.md": b"Asked about R2.\n",
    "skills/weather/SKILL.md": b"# Weather\n",
}


@pytest.fixture
async def served(s3_server: S3Server) -> AsyncIterator[tuple[BackendClient, Path, str]]:
    prefix = "mw-api-" + secrets.token_hex(4)
    client = s3_server.client()
    for key, body in TREE.items():
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{key}", Body=body)
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    settings = Settings(
        sandbox=SandboxSettings(name="mw", gateway_port=9),
        paths=PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run"),
        memory=MemorySettings(endpoint_url=s3_server.endpoint_url, path_style=True, interval=0),
    )
    env = {"R2_ACCESS_KEY_ID": s3_server.access_key, "R2_SECRET_ACCESS_KEY": s3_server.secret_key}
    engine = StubEngine()
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    state = root / "state"
    repo = Repository(LocalStore(root / "repo")).open()
    keeper = MemoryKeeper("mw", state, repo, None, settings.memory)
    service = MemoryService(settings, env)
    app = create_app(manager)
    app.fleet.memory = service  # type: ignore[attr-defined]
    app.fleet.default.memory = keeper  # type: ignore[attr-defined]
    manager.memory = keeper
    await manager.open()
    try:
        async with serve_asgi(app, root / "s.sock"), BackendClient(root / "s.sock") as backend:
            yield backend, state, f"s3://{s3_server.bucket}/{prefix}"
    finally:
        await manager.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_moltworker_bucket_is_browsed_then_imported_into_an_empty_sandbox(
    served: tuple[BackendClient, Path, str],
) -> None:
    client, state, location = served
    listing = await client.memory.moltworker(location)
    assert sorted(f.path for f in listing.files) == [
        "credentials/telegram.json", "openclaw.json", "workspace/MEMORY.md",
        "workspace/memory/2026-11-30.md", "workspace/skills/weather/SKILL.md",
    ]
    assert not state.exists()  # browsing wrote nothing

    result = await client.memory.import_moltworker(location)
    assert result.restored and result.snapshot.reason == "import" and result.snapshot.files == 5
    assert (state / "workspace" / "MEMORY.md").read_bytes() == TREE["workspace/MEMORY.md"]
    assert (state / "workspace" / "skills" / "weather" / "SKILL.md").read_bytes() == b"# Weather\n"
    assert b"/root/clawd" not in (state / "openclaw.json").read_bytes()  # a path the sandbox lacks

    # Again, now that the state directory is in use: kept as a snapshot, nothing changed.
    (state / "workspace" / "MEMORY.md").write_text("changed here since\n")
    again = await client.memory.import_moltworker(location)
    assert not again.restored and "memory restore" in again.message
    assert (state / "workspace" / "MEMORY.md").read_text() == "changed here since\n"
    assert (await client.memory.snapshots()).snapshots[0].id == again.snapshot.id
    unasked = await client.memory.import_moltworker(location, restore=False)
    assert not unasked.restored and "not restored (as asked)" in unasked.message


async def test_a_bucket_without_moltworker_data_or_keys_says_so(
    served: tuple[BackendClient, Path, str], s3_server: S3Server,
) -> None:
    client, _, _ = served
    with pytest.raises(BackendError, match="Moltworker") as caught:
        await client.memory.moltworker(f"s3://{s3_server.bucket}/nothing-here-{secrets.token_hex(4)}")
    assert caught.value.status == 409
    with pytest.raises(BackendError, match="cannot read the Moltworker bucket") as caught:
        await client.memory.moltworker("ftp://somewhere")
    assert caught.value.status == 409


async def test_one_file_of_the_bucket_is_read_by_its_key_and_wrong_keys_are_said(
    served: tuple[BackendClient, Path, str], s3_server: S3Server,
) -> None:
    client, state, location = served
    listing = await client.memory.moltworker(location)
    assert listing.keys["workspace/skills/weather/SKILL.md"] == "skills/weather/SKILL.md"
    for path, key in listing.keys.items():
        assert await client.memory.moltworker_file(location, key) == TREE[key], path
    with pytest.raises(BackendError, match="not under one of Moltworker's prefixes") as caught:
        await client.memory.moltworker_file(location, "elsewhere/x")
    assert caught.value.status == 400
    with pytest.raises(BackendError, match="no longer in") as caught:
        await client.memory.moltworker_file(location, "workspace/gone.md")
    assert caught.value.status == 404
    assert not state.exists()  # reading wrote nothing

    # The same bucket read with a key pair SeaweedFS does not know: said, the secret not shown.
    settings = Settings(memory=MemorySettings(endpoint_url=s3_server.endpoint_url, path_style=True))
    wrong = MoltworkerBucket(moltworker_store(
        settings, {"R2_ACCESS_KEY_ID": "unknown-key", "R2_SECRET_ACCESS_KEY": "wrong-secret"}, location,
    ))
    with pytest.raises(StoreError, match="access key") as refused:
        wrong.read("workspace/MEMORY.md", 1024)
    assert "wrong-secret" not in str(refused.value)
