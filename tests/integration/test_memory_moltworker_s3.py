"""A Moltworker bucket on a real S3 server (SeaweedFS, authentication on), imported and restored:
the tree is uploaded with boto3 as rclone leaves it (its ``mtime`` metadata, a live SQLite
database with its -wal and -shm, names with spaces, ``@`` and non-ASCII letters, more than one
list page of keys), then read through an S3Store under Moltworker's variable names, imported
into a repository in the same server, restored into an empty state directory, and compared
byte for byte.

SeaweedFS refuses keys with '.' or '..' parts and names over 255 bytes (KeyTooLongError), which
R2 holds; those are served by a scripted endpoint in tests/unit/test_memory_moltworker.py."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from moltconsole_backend.memory.moltworker import MoltworkerBucket, import_snapshot
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.restore import restore_snapshot
from moltconsole_backend.memory.s3 import S3Location, S3Store, s3_store_from
from tests.integration import memory_conftest_fixtures
from tests.support.s3_server import S3Server

s3_server = memory_conftest_fixtures.s3_server  # the session's SeaweedFS, shared with other memory tests

MTIME = "1760000000.123456789"  # as rclone writes it: seconds since the epoch, with a fraction


def store_on(server: S3Server, prefix: str) -> S3Store:
    location = S3Location(
        bucket=server.bucket, prefix=prefix, endpoint_url=server.endpoint_url, path_style=True,
    )
    env = {"R2_ACCESS_KEY_ID": server.access_key, "R2_SECRET_ACCESS_KEY": server.secret_key}
    return s3_store_from(location, env)


def live_database(tmp_path: Path) -> dict[str, bytes]:
    """A WAL-mode database as rclone copies it while open: its newest rows only in the -wal."""
    db = tmp_path / "main.sqlite"
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT)")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.executemany("INSERT INTO chunks (text) VALUES (?)", [(f"remembered {i}",) for i in range(50)])
        conn.commit()
        return {suffix: Path(f"{db}{suffix}").read_bytes() for suffix in ("", "-wal", "-shm")}
    finally:
        conn.close()


def upload(client: Any, bucket: str, prefix: str, tree: dict[str, bytes]) -> None:
    for key, body in tree.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body, Metadata={"mtime": MTIME})


def test_a_moltworker_bucket_imports_and_restores_byte_for_byte(s3_server: S3Server, tmp_path: Path) -> None:
    base = "mw-" + secrets.token_hex(4)
    config = {
        "agents": {"defaults": {"workspace": "/root/clawd"}}, "channels": {"telegram": {"botToken": "t"}},
    }
    kept = {  # bucket key -> path in the state directory, bytes unchanged
        "openclaw/credentials/telegram-allowFrom.json": "credentials/telegram-allowFrom.json",
        "openclaw/credentials/whatsapp/default/sender-key-1203@g.us--1.json":
            "credentials/whatsapp/default/sender-key-1203@g.us--1.json",
        "openclaw/agents/main/sessions/0b6c.jsonl": "agents/main/sessions/0b6c.jsonl",
        "workspace/AGENTS.md": "workspace/AGENTS.md",
        "workspace/My Notes ü.md": "workspace/My Notes ü.md",
        "skills/weather/SKILL.md": "workspace/skills/weather/SKILL.md",
    }
    tree = {key: f"content of {key}\n".encode() for key in kept}
    notes = [f"workspace/memory/2026-02-{i:04d}.md" for i in range(1100)]  # more than a list page
    tree |= {key: f"note {key}\n".encode() for key in notes}
    kept |= {key: key for key in notes}
    tree["openclaw/openclaw.json"] = json.dumps(config).encode()
    for suffix, body in live_database(tmp_path).items():
        tree[f"openclaw/memory/main.sqlite{suffix}"] = body
    left_out = {
        "clawdbot/clawdbot.json": b"{}",  # the Clawdbot era's copy: openclaw/ is used
        "workspace/draft.md.partial": b"cut short",
        "workspace/.AGENTS.md.x7Yq2Z": b"rsync's temporary name",
        "openclaw/tmp/scratch": b"excluded",
        "workspace/bell\x07.md": b"control character",
    }
    tree |= left_out
    client = s3_server.client()
    upload(client, s3_server.bucket, f"{base}/moltbot-data", tree)

    bucket = MoltworkerBucket(store_on(s3_server, f"{base}/moltbot-data"))
    layout = bucket.detect()
    assert layout.config_prefix == "openclaw/" and set(layout.prefixes) == {
        "openclaw/", "clawdbot/", "workspace/", "skills/",
    }
    repo = Repository(store_on(s3_server, f"{base}/repository")).open()
    seen: list[tuple[int, int]] = []
    report = import_snapshot(repo, "box", bucket, lambda done, total: seen.append((done, total)))

    assert {item.key for item in report.left_out} >= {
        "clawdbot/clawdbot.json", "workspace/draft.md.partial", "workspace/.AGENTS.md.x7Yq2Z",
        "openclaw/tmp/scratch", "workspace/bell\\x07.md", "openclaw/memory/main.sqlite-shm",
    }
    assert len(report.left_out) == len(left_out) + 1  # and the -shm
    assert seen[-1] == (report.read_bytes, report.read_bytes)
    assert report.read_bytes == sum(
        len(body) for key, body in tree.items() if key not in left_out and not key.endswith("-shm")
    )

    # A new server: the repository read back from the bucket alone, restored into an empty state.
    fresh = Repository(store_on(s3_server, f"{base}/repository")).open(create=False)
    snapshot = fresh.latest("box")
    assert snapshot is not None and snapshot.reason == "import"
    state = tmp_path / "sandboxes" / "box" / "state"
    restore_snapshot(fresh, snapshot, state)
    restored = {p.relative_to(state).as_posix(): p.read_bytes() for p in state.rglob("*") if p.is_file()}
    assert sorted(restored) == sorted([*kept.values(), "openclaw.json", "memory/main.sqlite"])
    for key, path in kept.items():
        assert restored[path] == tree[key], path
    assert (state / "workspace" / "AGENTS.md").stat().st_mtime_ns == 1_760_000_000_123_456_789

    expected_config = {"agents": {"defaults": {}}, "channels": config["channels"]}  # the workspace taken out
    assert json.loads(restored["openclaw.json"]) == expected_config
    with sqlite3.connect(state / "memory" / "main.sqlite") as conn:
        assert conn.execute("SELECT count(*), max(text) FROM chunks").fetchone() == (50, "remembered 9")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
