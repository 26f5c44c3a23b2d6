"""A Moltworker bucket through the memory API and the console's client: listed with each path's
key, one file read by its key (read-only, the key checked as untrusted input, the size capped),
and the errors a user can meet (a key that is not Moltworker's, a file gone or too large, wrong
credentials, a bucket that cannot be reached), each saying what to do.

The bucket is an S3 endpoint on loopback that speaks the real wire protocol
(tests/support/moltworker_bucket.py); the backend reads it with boto3 as it reads R2.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api import memory_routes
from moltconsole_backend.api.service import create_app
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.service import MemoryService
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import MemorySettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings
from tests.support.moltworker_bucket import MoltworkerBucket, serving
from tests.unit.test_client import serve_asgi
from tests.unit.test_manager_events import StubEngine

TREE = {
    "openclaw/openclaw.json": b'{"agents": {"defaults": {"workspace": "/root/clawd"}}}\n',
    "openclaw/credentials/telegram.json": b'{"token": "not a real one"}\n',
    "workspace/MEMORY.md": b"# Memory\n\nThe user moved from Cloudflare.\n",
    "workspace/memory/2026-11-30.md": b"Asked about R2.\n",
    "skills/weather/SKILL.md": b"# Weather\n",
    "elsewhere/secret.txt": b"not Moltworker's\n",
}


@dataclass
class Served:
    client: BackendClient
    bucket: MoltworkerBucket
    state: Path


@pytest.fixture
def bucket() -> Iterator[MoltworkerBucket]:
    with serving(MoltworkerBucket(objects=dict(TREE))) as served_bucket:
        yield served_bucket


def _served_with(env: dict[str, str]):  # type: ignore[no-untyped-def]
    async def served(bucket: MoltworkerBucket) -> AsyncIterator[Served]:
        root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
        settings = Settings(
            sandbox=SandboxSettings(name="mw", gateway_port=9),
            paths=PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run"),
            memory=MemorySettings(interval=0),
        )
        engine = StubEngine()
        manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
        state = root / "state"
        repo = Repository(LocalStore(root / "repo")).open()
        keeper = MemoryKeeper("mw", state, repo, None, settings.memory)
        app = create_app(manager)
        app.fleet.memory = MemoryService(settings, env or bucket.env)  # type: ignore[attr-defined]
        app.fleet.default.memory = keeper  # type: ignore[attr-defined]
        manager.memory = keeper
        await manager.open()
        try:
            async with serve_asgi(app, root / "s.sock"), BackendClient(root / "s.sock") as client:
                yield Served(client, bucket, state)
        finally:
            await manager.close()
            shutil.rmtree(root, ignore_errors=True)

    return served


served = pytest.fixture(_served_with({}))
served_wrong_key = pytest.fixture(_served_with({
    "R2_ACCESS_KEY_ID": "not-the-key", "R2_SECRET_ACCESS_KEY": "not-the-secret-either",
}))


async def test_the_listing_gives_each_path_its_key_and_a_file_is_read_by_it(served: Served) -> None:
    memory, bucket = served.client.memory, served.bucket
    listing = await memory.moltworker(bucket.location, bucket.endpoint_url)
    assert listing.keys == {
        "credentials/telegram.json": "openclaw/credentials/telegram.json",
        "openclaw.json": "openclaw/openclaw.json",
        "workspace/MEMORY.md": "workspace/MEMORY.md",
        "workspace/memory/2026-11-30.md": "workspace/memory/2026-11-30.md",
        "workspace/skills/weather/SKILL.md": "skills/weather/SKILL.md",
    }
    assert {f.path: f.size for f in listing.files}["workspace/MEMORY.md"] == len(TREE["workspace/MEMORY.md"])
    for path, key in listing.keys.items():
        assert await memory.moltworker_file(bucket.location, key, bucket.endpoint_url) == TREE[key], path
    # As the bucket holds it: the import's changes (the workspace path taken out) are not made.
    assert b"/root/clawd" in await memory.moltworker_file(
        bucket.location, "openclaw/openclaw.json", bucket.endpoint_url)
    assert not served.state.exists()  # reading wrote nothing
    assert all(r.startswith("GET ") for r in bucket.requests)  # nothing but reads went to the bucket


@pytest.mark.parametrize(("key", "says"), [
    ("elsewhere/secret.txt", "not under one of Moltworker's prefixes"),
    ("workspace/../elsewhere/secret.txt", "not safe as a path"),
    ("/workspace/MEMORY.md", "not under one of Moltworker's prefixes"),
    ("workspace/", "names a folder"),
    ("workspace/a\x1b[31m.md", "control characters"),
    ("openclaw/\u202egnp.exe", "bidirectional"),
])
async def test_a_key_that_is_not_one_of_moltworkers_files_is_refused_unread(
    served: Served, key: str, says: str,
) -> None:
    bucket = served.bucket
    with pytest.raises(BackendError, match=says) as caught:
        await served.client.memory.moltworker_file(bucket.location, key, bucket.endpoint_url)
    assert caught.value.status == 400
    assert "\x1b" not in str(caught.value)  # the key is shown escaped
    assert bucket.requests == []  # refused before anything was asked of the bucket


async def test_a_file_gone_or_too_large_says_what_to_do(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket, memory = served.bucket, served.client.memory
    with pytest.raises(BackendError, match=r"no longer in s3://moltbot-data.*list the bucket") as caught:
        await memory.moltworker_file(bucket.location, "workspace/gone.md", bucket.endpoint_url)
    assert caught.value.status == 404
    monkeypatch.setattr(memory_routes, "MOLTWORKER_READ_MAX", 16)
    too_large = r"is 42 bytes: the bucket is read here up to 16 bytes a file; import it"
    with pytest.raises(BackendError, match=too_large) as caught:
        await memory.moltworker_file(bucket.location, "workspace/MEMORY.md", bucket.endpoint_url)
    assert caught.value.status == 413
    with pytest.raises(BackendError, match="say which file") as caught:
        await memory.moltworker_file(bucket.location, "", bucket.endpoint_url)
    assert caught.value.status == 400


async def test_wrong_credentials_are_said_with_the_variable_to_check(served_wrong_key: Served) -> None:
    bucket, memory = served_wrong_key.bucket, served_wrong_key.client.memory
    with pytest.raises(BackendError, match=r"access key id.*R2_ACCESS_KEY_ID") as caught:
        await memory.moltworker_file(bucket.location, "workspace/MEMORY.md", bucket.endpoint_url)
    assert caught.value.status == 409 and "not-the-secret-either" not in str(caught.value)
    with pytest.raises(BackendError, match=r"bucket s3://moltbot-data cannot be read: .*R2_ACCESS_KEY_ID"):
        await memory.moltworker(bucket.location, bucket.endpoint_url)


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_bucket_that_cannot_be_reached_is_a_503_that_says_to_check_the_endpoint(
    served: Served,
) -> None:
    memory, nowhere = served.client.memory, _closed_port()
    with pytest.raises(BackendError, match=r"cannot be read now: .*cannot be reached.*endpoint") as caught:
        await memory.moltworker_file("s3://moltbot-data", "workspace/MEMORY.md", nowhere)
    assert caught.value.status == 503
    with pytest.raises(BackendError, match="cannot be read now") as caught:
        await memory.moltworker("s3://moltbot-data", nowhere)
    assert caught.value.status == 503
    with pytest.raises(BackendError, match="nothing was imported") as caught:
        await memory.import_moltworker("s3://moltbot-data", nowhere)
    assert caught.value.status == 503
    with pytest.raises(BackendError, match="not s3:// or r2://") as caught:
        await memory.moltworker_file("ftp://moltbot-data", "workspace/MEMORY.md")
    assert caught.value.status == 409
