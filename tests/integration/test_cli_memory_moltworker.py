"""``moltconsole memory moltworker`` and ``memory import-moltworker`` against a Moltworker bucket on
a real S3 server (SeaweedFS, authentication on): the real CLI, the real backend app and keeper
(tests/unit/test_cli_memory.py serves them), the bucket reached with the keys under Moltworker's
variable names from the backend's environment, never from the CLI's."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest

from moltconsole.cli.choice import SANDBOX_ENV
from moltconsole_backend.memory.service import MemoryService
from moltconsole_backend.settings import MemorySettings, Settings
from moltconsole_shared.commands import EXIT_OK
from moltconsole_shared.paths import PathSettings
from moltconsole_shared.wire import memory as wire
from tests.integration import memory_conftest_fixtures
from tests.support.s3_server import S3Server
from tests.unit.test_cli_memory import moltconsole, serving_memory

s3_server = memory_conftest_fixtures.s3_server  # the session's SeaweedFS, shared with other memory tests

TREE = {
    "openclaw/openclaw.json": b'{"channels": {"telegram": {"botToken": "t"}}}',
    "workspace/MEMORY.md": b"# Memory\nThe user moved from Cloudflare.\n",
    "skills/weather/SKILL.md": b"# Weather\n",
    "workspace/draft.md.partial": b"an upload cut short",
}


def test_a_moltworker_bucket_browsed_then_imported_and_restored_from_the_cli(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    prefix = "cli-mw-" + secrets.token_hex(4)
    client = s3_server.client()
    for key, body in TREE.items():
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{key}", Body=body)
    location = f"s3://{s3_server.bucket}/{prefix}"
    env = {"R2_ACCESS_KEY_ID": s3_server.access_key, "R2_SECRET_ACCESS_KEY": s3_server.secret_key}

    def service(root: Path) -> MemoryService:
        settings = Settings(memory=MemorySettings(path_style=True),
                            paths=PathSettings(data_dir=root / "bdata", cache_dir=root / "bcache",
                                               runtime_dir=root / "brun"))
        return MemoryService(settings, env)

    with serving_memory(service) as backend:
        at = ["--endpoint-url", s3_server.endpoint_url]
        assert moltconsole(backend, "memory", "moltworker", location, *at) == EXIT_OK
        listing = capsys.readouterr().out
        assert listing.startswith(f"{location}: a Moltworker bucket (openclaw/), read-only\n")
        for path in ("openclaw.json", "workspace/MEMORY.md", "workspace/skills/weather/SKILL.md"):
            assert f"  {path}\n" in listing
        assert "left out (1):\n  workspace/draft.md.partial: " in listing

        # The state directory has files: the import is kept as a snapshot, nothing in place changes.
        assert moltconsole(backend, "memory", "import-moltworker", location, *at) == EXIT_OK
        out = capsys.readouterr().out.splitlines()
        snapshot = out[0].split("imported as snapshot ")[1].split(",")[0]
        assert ", import: 3 files, " in out[0] and "is not empty, so nothing in it changed" in out[1]
        assert not (backend.state / "workspace" / "skills").exists()
        assert moltconsole(backend, "memory", "restore", snapshot[-6:], "--yes") == EXIT_OK
        assert (backend.state / "workspace" / "MEMORY.md").read_bytes() == TREE["workspace/MEMORY.md"]
        assert not (backend.state / "workspace" / "memory").exists()  # not in the bucket
        capsys.readouterr()

        # An empty state directory (a new server): imported and put in place at once.
        shutil.rmtree(backend.state)
        backend.state.mkdir()
        assert moltconsole(backend, "memory", "import-moltworker", location, *at, "--json") == EXIT_OK
        result = wire.IMPORT_RESULT.read(json.loads(capsys.readouterr().out))
        assert result.restored and result.snapshot.reason == "import"
        skill = backend.state / "workspace" / "skills" / "weather" / "SKILL.md"
        assert skill.read_bytes() == TREE["skills/weather/SKILL.md"]

        # --no-restore leaves even an empty state directory alone.
        shutil.rmtree(backend.state)
        backend.state.mkdir()
        assert moltconsole(backend, "memory", "import-moltworker", location, *at, "--no-restore") == EXIT_OK
        assert not any(backend.state.iterdir())
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("imported as snapshot") and "memory restore " in out[1]
