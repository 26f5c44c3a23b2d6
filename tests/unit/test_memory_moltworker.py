"""A Moltworker bucket read as OpenClaw state and imported as a sandbox's first snapshot: a
directory laid out like a real bucket (rclone era: openclaw/, workspace/, skills/; the Clawdbot
era's clawdbot/), hostile keys (``../``, absolute, NUL, control characters, too long), uploads
cut short, a live SQLite database copied with its WAL, old config names, the workspace in two
places, and an import cut short by the bucket.

Hostile keys a file system cannot hold are served by an in-memory bucket that keeps
BucketObjects' protocol, and by a scripted S3 endpoint on the real wire (S3Objects)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from moltconsole_backend.memory.moltworker import (
    BucketObject,
    DirectoryObjects,
    ImportReport,
    LeftOut,
    MoltworkerBucket,
    MoltworkerError,
    NotMoltworkerData,
    S3Objects,
    StoredObject,
    StoreObjects,
    TooLarge,
    UnsafeKey,
    bucket_objects,
    import_snapshot,
    shown_key,
)
from moltconsole_backend.memory.repo import Repository, Snapshot, new_snapshot_id
from moltconsole_backend.memory.restore import restore_snapshot
from moltconsole_backend.memory.retention import PruneReport, prune
from moltconsole_backend.memory.s3 import S3Location, S3Store, s3_store_from
from moltconsole_backend.memory.store import LocalStore, ObjectMissing, StoreError, StoreUnreachable
from tests.support.s3_wire import ScriptedS3, Seen, list_xml, scripted_s3

MOLTWORKER_CONFIG = {
    "gateway": {"port": 18789, "mode": "local", "auth": {"token": "gw-token-from-moltworker"}},
    "agents": {"defaults": {"workspace": "/root/clawd", "heartbeat": {"every": "30m"}}},
    "skills": {"load": {"extraDirs": ["/root/clawd/skills"]}},
    "channels": {"telegram": {"botToken": "123:telegram", "enabled": True}},
}


class MemoryBucket:
    """A bucket in memory that holds any key (as AWS S3 and R2 do), for keys no file system or
    SeaweedFS would hold. Reads of ``fail_on`` raise ``error``; ``gone`` keys vanish after the
    listing."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.data = dict(objects)
        self.gone: set[str] = set()
        self.fail_on: set[str] = set()
        self.error: Exception = StoreUnreachable("the bucket cannot be reached")
        self.reads: list[str] = []
        self.hold: set[str] = set()  # reads of these wait for `go`, after setting `reached`
        self.reached = threading.Event()
        self.go = threading.Event()

    @property
    def where(self) -> str:
        return "mem://moltbot-data"

    def objects(self, prefix: str) -> Iterator[BucketObject]:
        for key in sorted(self.data):
            if key.startswith(prefix):
                yield BucketObject(key, len(self.data[key]), 1_700_000_000_000_000_000)

    def read(self, key: str) -> StoredObject:
        self.reads.append(key)
        if key in self.hold:
            self.reached.set()
            assert self.go.wait(30)
        if key in self.fail_on:
            raise self.error
        if key in self.gone or key not in self.data:
            raise ObjectMissing(f"{key} is gone")
        return StoredObject(self.data[key])

    def has(self, key: str) -> bool:
        return key in self.data


def put(root: Path, key: str, data: bytes | str) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def live_sqlite_copy(root: Path, key: str) -> None:
    """Copy a database in WAL mode as rclone does while the agent has it open: the main file,
    its -wal holding the newest rows (not yet checkpointed), and its -shm."""
    work = root.parent / "live-db"
    work.mkdir(exist_ok=True)
    db = work / "main.sqlite"
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT)")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("INSERT INTO chunks (text) VALUES ('the user likes tea'), ('only in the wal')")
        conn.commit()
        assert (work / "main.sqlite-wal").stat().st_size > 0
        for suffix in ("", "-wal", "-shm"):
            put(root, key + suffix, (work / f"main.sqlite{suffix}").read_bytes())
    finally:
        conn.close()


@pytest.fixture
def bucket_dir(tmp_path: Path) -> Path:
    """A directory laid out like a Moltworker bucket of the rclone era."""
    root = tmp_path / "moltbot-data"
    put(root, "openclaw/openclaw.json", json.dumps(MOLTWORKER_CONFIG, indent=2))
    put(root, "openclaw/credentials/telegram-allowFrom.json", '{"version": 1, "allowFrom": ["42"]}')
    put(root, "openclaw/agents/main/sessions/0b6c-session.jsonl", '{"role": "user", "text": "hi"}\n')
    put(root, "openclaw/devices/paired.json", "{}")
    put(root, "openclaw/tmp/scratch.txt", "not kept")
    put(root, "openclaw/cache/models.json", "{}")
    live_sqlite_copy(root, "openclaw/memory/main.sqlite")
    put(root, "clawdbot/clawdbot.json", '{"old": true}')
    put(root, "workspace/AGENTS.md", "# Agents\n")
    put(root, "workspace/MEMORY.md", "# Memory\nThe user likes tea.\n")
    put(root, "workspace/memory/2026-02-10.md", "Met Ada.\n")
    put(root, "workspace/memory/notes from @home ü.md", "a name no repository key could hold\n")
    put(root, "workspace/.MEMORY.md.Ab3dE9", "rsync's temporary copy, cut short")
    put(root, "workspace/draft.md.partial", "rclone's partial upload")
    put(root, "workspace/skills/weather/SKILL.md", "stale copy from before skills/ had its prefix")
    put(root, "skills/weather/SKILL.md", "# Weather\n")
    put(root, "skills/weather/scripts/run.sh", "#!/bin/sh\necho sunny\n")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalStore(tmp_path / "repo")).open()


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def reasons(left_out: list[LeftOut]) -> dict[str, str]:
    return {item.key: item.reason for item in left_out}


# --- layout -----------------------------------------------------------------------------------


def test_detect_names_the_prefixes_and_prefers_openclaw_over_clawdbot(bucket_dir: Path) -> None:
    layout = MoltworkerBucket(LocalStore(bucket_dir)).detect()
    assert layout.prefixes == ("openclaw/", "clawdbot/", "workspace/", "skills/")
    assert layout.config_prefix == "openclaw/" and not layout.legacy
    assert any("openclaw/ is used" in note and "clawdbot/ is left out" in note for note in layout.notes)


def test_a_bucket_without_moltworker_data_says_what_to_check(tmp_path: Path) -> None:
    put(tmp_path / "other", "blobs/ab/abc", "not Moltworker's")
    with pytest.raises(NotMoltworkerData) as caught:
        MoltworkerBucket(LocalStore(tmp_path / "other")).detect()
    message = str(caught.value)
    assert "openclaw/, clawdbot/, workspace/, skills/" in message and "R2_BUCKET_NAME" in message
    with pytest.raises(NotMoltworkerData):
        MoltworkerBucket(LocalStore(tmp_path / "missing")).scan()


def test_clawdbot_is_used_when_openclaw_holds_no_config(tmp_path: Path) -> None:
    root = tmp_path / "b"
    put(root, "openclaw/workspace/AGENTS.md", "# Agents\n")
    put(root, "clawdbot/clawdbot.json", "{}")
    put(root, "clawdbot/devices/paired.json", "{}")
    scan = MoltworkerBucket(LocalStore(root)).scan()
    assert scan.layout.config_prefix == "clawdbot/" and scan.layout.legacy
    assert {f.path for f in scan.files} == {"openclaw.json", "devices/paired.json"}
    assert reasons(scan.left_out) == {
        "openclaw/workspace/AGENTS.md": "openclaw/ is not used: clawdbot/ holds the config",
    }


# --- the files --------------------------------------------------------------------------------


def test_files_map_each_prefix_onto_the_state_directory(bucket_dir: Path) -> None:
    files = {f.path: f for f in MoltworkerBucket(LocalStore(bucket_dir)).files()}
    assert sorted(files) == [
        "agents/main/sessions/0b6c-session.jsonl",
        "credentials/telegram-allowFrom.json",
        "devices/paired.json",
        "memory/main.sqlite",
        "openclaw.json",
        "workspace/AGENTS.md",
        "workspace/MEMORY.md",
        "workspace/memory/2026-02-10.md",
        "workspace/memory/notes from @home ü.md",
        "workspace/skills/weather/SKILL.md",
        "workspace/skills/weather/scripts/run.sh",
    ]
    assert files["workspace/skills/weather/SKILL.md"].key == "skills/weather/SKILL.md"
    assert files["memory/main.sqlite"].companions == ("openclaw/memory/main.sqlite-wal",)
    assert files["workspace/AGENTS.md"].size == len("# Agents\n")


def test_what_the_mapping_leaves_out_comes_with_the_reason(bucket_dir: Path) -> None:
    scan = MoltworkerBucket(LocalStore(bucket_dir)).scan()
    assert reasons(scan.left_out) == {
        "openclaw/tmp/scratch.txt": "left out of every snapshot (memory.excludes: tmp/*)",
        "openclaw/cache/models.json": "left out of every snapshot (memory.excludes: cache/*)",
        "openclaw/memory/main.sqlite-shm": "SQLite's shared-memory index; SQLite rebuilds it",
        "clawdbot/clawdbot.json": "clawdbot/ is not used: openclaw/ holds the config",
        "workspace/.MEMORY.md.Ab3dE9": "an upload cut short (rclone or rsync's temporary name)",
        "workspace/draft.md.partial": "an upload cut short (rclone or rsync's temporary name)",
        "workspace/skills/weather/SKILL.md": "skills/weather/SKILL.md gives this path instead",
    }


def test_a_dotfile_like_rsyncs_temporary_name_is_kept_without_the_file_it_would_copy(tmp_path: Path) -> None:
    root = tmp_path / "b"
    put(root, "workspace/.env.backup", "kept: there is no workspace/env beside it")
    assert [f.path for f in MoltworkerBucket(LocalStore(root)).files()] == ["workspace/.env.backup"]


HOSTILE = {
    "openclaw/../escape.txt": "not safe as a path",
    "openclaw/a/../../escape.txt": "not safe as a path",
    "openclaw//etc/passwd": "not safe as a path",
    "openclaw/./x": "not safe as a path",
    "workspace/a\\..\\b.md": "not safe as a path",
    "workspace/nul\x00.md": "not safe as a path",
    "workspace/bell\x07\x1b[31m.md": "a name with control characters",
    "workspace/invoice\u202egpj.exe": "a name with bidirectional-text controls",
    "workspace/" + "a" * 256 + ".md": "a name longer than a file system takes",
    "workspace/" + "/".join(["d" * 200] * 16) + "/x.md": "a path longer than the import takes",
    "skills/weather/": "a directory marker",
    "skills/": "a directory marker",
}


def test_hostile_keys_are_left_out_with_the_reason_and_shown_escaped() -> None:
    bucket = MemoryBucket({"openclaw/openclaw.json": b"{}", **{k: b"x" for k in HOSTILE}})
    scan = MoltworkerBucket(bucket).scan()
    assert [f.path for f in scan.files] == ["openclaw.json"]
    found = reasons(scan.left_out)
    assert len(found) == len(HOSTILE)
    for key, reason in HOSTILE.items():
        assert found[shown_key(key)].startswith(reason), key
    for item in scan.left_out:
        assert item.key.isascii() and item.key.isprintable() and len(item.key) <= 203
        assert item.path is None  # a path was never made of them


def test_hostile_keys_never_reach_a_manifest_or_the_disk(repo: Repository, tmp_path: Path) -> None:
    bucket = MemoryBucket({"openclaw/openclaw.json": b"{}", **{k: b"x" for k in HOSTILE}})
    report = import_snapshot(repo, "box", MoltworkerBucket(bucket))
    assert [f.path for f in report.snapshot.files] == ["openclaw.json"]
    assert set(bucket.reads) == {"openclaw/openclaw.json"}  # nothing hostile was even read
    restore_snapshot(repo, report.snapshot, tmp_path / "sandbox" / "state")
    assert sorted(p.name for p in (tmp_path / "sandbox").iterdir()) == ["state"]
    assert tree(tmp_path / "sandbox" / "state") == {"openclaw.json": b"{}"}


def test_links_in_a_local_copy_are_listed_as_links_and_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the bucket")
    root = tmp_path / "b"
    put(root, "openclaw/openclaw.json", "{}")
    (root / "openclaw" / "stolen.txt").symlink_to(secret)
    (root / "workspace").mkdir()
    (root / "workspace" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    scan = MoltworkerBucket(LocalStore(root)).scan()
    assert [f.path for f in scan.files] == ["openclaw.json"]
    assert reasons(scan.left_out) == {
        "openclaw/stolen.txt": "not a regular file (a link or a device in a local copy)",
        "workspace/elsewhere": "not a regular file (a link or a device in a local copy)",
    }
    objects = DirectoryObjects(root)
    with pytest.raises(StoreError):
        objects.read("openclaw/stolen.txt")  # O_NOFOLLOW
    with pytest.raises(StoreError, match="it is a link"):
        objects.read("workspace/elsewhere/secret.txt")
    with pytest.raises(StoreError, match="not a plain path"):
        objects.read("openclaw/../../secret.txt")
    assert not objects.has("workspace/elsewhere/secret.txt")


def test_a_plain_object_store_is_read_through_its_own_keys(tmp_path: Path) -> None:
    class Plain:  # an ObjectStore that is neither S3Store nor LocalStore
        def __init__(self, inner: LocalStore) -> None:
            self.inner = inner
            self.where = inner.where
            self.put, self.get, self.exists = inner.put, inner.get, inner.exists
            self.list, self.delete, self.get_range = inner.list, inner.delete, inner.get_range

    root = tmp_path / "b"
    put(root, "openclaw/openclaw.json", "{}")
    put(root, "workspace/AGENTS.md", "# A\n")
    bucket = MoltworkerBucket(Plain(LocalStore(root)))
    assert isinstance(bucket.objects, StoreObjects)
    scan = bucket.scan()
    assert sorted(f.path for f in scan.files) == ["openclaw.json", "workspace/AGENTS.md"]
    assert any("lists only keys of letters" in note for note in scan.layout.notes)
    assert isinstance(bucket_objects(LocalStore(root)), DirectoryObjects)


# --- config names and the workspace ---------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "renamed", "kept"),
    [
        (["clawdbot.json"], "clawdbot.json", []),
        (["moltbot.json", "clawdbot.json"], "moltbot.json", ["clawdbot.json"]),
        (["openclaw.json", "moltbot.json", "clawdbot.json"], None, ["moltbot.json", "clawdbot.json"]),
    ],
)
def test_old_config_names_become_the_one_openclaw_reads(
    tmp_path: Path, names: list[str], renamed: str | None, kept: list[str]
) -> None:
    root = tmp_path / "b"
    for name in names:
        put(root, f"openclaw/{name}", json.dumps({"from": name}))
    files = {f.path: f for f in MoltworkerBucket(LocalStore(root)).files()}
    assert sorted(files) == sorted(["openclaw.json", *kept])
    config = files["openclaw.json"]
    assert config.key == f"openclaw/{renamed or 'openclaw.json'}"
    assert ("renamed from" in config.note) == (renamed is not None)


def test_the_config_decides_which_workspace_wins_a_path_both_hold(tmp_path: Path) -> None:
    root = tmp_path / "b"
    put(root, "openclaw/workspace/MEMORY.md", "OpenClaw's default workspace")
    put(root, "openclaw/workspace/SOUL.md", "only here")
    put(root, "workspace/MEMORY.md", "/root/clawd")
    put(root, "openclaw/openclaw.json", "{}")  # no workspace named: OpenClaw's own default
    scan = MoltworkerBucket(LocalStore(root)).scan()
    files = {f.path: f.key for f in scan.files}
    assert files["workspace/MEMORY.md"] == "openclaw/workspace/MEMORY.md"
    assert files["workspace/SOUL.md"] == "openclaw/workspace/SOUL.md"
    assert scan.layout.workspace_from == "openclaw/"
    assert reasons(scan.left_out) == {
        "workspace/MEMORY.md": "openclaw/workspace/MEMORY.md gives this path instead",
    }

    put(root, "openclaw/openclaw.json", json.dumps({"agents": {"defaults": {"workspace": "/root/clawd"}}}))
    scan = MoltworkerBucket(LocalStore(root)).scan()
    assert {f.path: f.key for f in scan.files}["workspace/MEMORY.md"] == "workspace/MEMORY.md"
    assert scan.layout.workspace_from == "workspace/"
    assert any("names /root/clawd as the workspace" in note for note in scan.layout.notes)


# --- import -------------------------------------------------------------------------------------


def test_import_then_restore_gives_the_state_directory_moltworker_kept(
    bucket_dir: Path, repo: Repository, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    report = import_snapshot(repo, "box", MoltworkerBucket(LocalStore(bucket_dir)),
                             lambda done, total: seen.append((done, total)))
    snap = report.snapshot
    assert snap.reason == "import" and snap.parent is None and repo.snapshots("box") == [snap]
    assert report.files == 11 and report.new_blobs == 11 and report.uploaded_bytes > 0
    state = tmp_path / "sandboxes" / "box" / "state"
    restore_snapshot(repo, snap, state)
    restored = tree(state)

    for key in ["credentials/telegram-allowFrom.json", "agents/main/sessions/0b6c-session.jsonl",
                "devices/paired.json"]:
        assert restored[key] == (bucket_dir / "openclaw" / key).read_bytes()
    for key in ["AGENTS.md", "MEMORY.md", "memory/2026-02-10.md", "memory/notes from @home ü.md"]:
        assert restored[f"workspace/{key}"] == (bucket_dir / "workspace" / key).read_bytes()
    assert restored["workspace/skills/weather/SKILL.md"] == b"# Weather\n"
    assert os.stat(state / "workspace/skills/weather/scripts/run.sh").st_mode & 0o777 == 0o700
    assert os.stat(state / "workspace/MEMORY.md").st_mode & 0o777 == 0o600

    # The live database's newest rows were only in its -wal: folded in, no log files restored.
    assert not any(k.endswith(("-wal", "-shm")) for k in restored)
    with sqlite3.connect(state / "memory" / "main.sqlite") as conn:
        assert [r[0] for r in conn.execute("SELECT text FROM chunks ORDER BY id")] == [
            "the user likes tea", "only in the wal",
        ]
    assert any("memory/main.sqlite: its -wal folded" in change for change in report.changes)

    # Moltworker's workspace path is taken out of the config; the rest of it is kept.
    config = json.loads(restored["openclaw.json"])
    assert "workspace" not in config["agents"]["defaults"]
    assert config["agents"]["defaults"]["heartbeat"] == {"every": "30m"}
    assert config["channels"] == MOLTWORKER_CONFIG["channels"]
    assert any("skills.load.extraDirs[0]" in w for w in report.warnings)

    total = sum((bucket_dir / "openclaw" / k).stat().st_size for k in ["memory/main.sqlite",
                                                                          "memory/main.sqlite-wal"])
    assert seen[-1][0] == seen[-1][1] == report.read_bytes > total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len({t for _, t in seen}) == 1  # the total was known from the listing


def test_the_mtime_of_each_file_comes_along(bucket_dir: Path, repo: Repository) -> None:
    os.utime(bucket_dir / "workspace" / "AGENTS.md", ns=(1_760_000_000_123_456_789,) * 2)
    report = import_snapshot(repo, "box", MoltworkerBucket(LocalStore(bucket_dir)))
    entry = next(f for f in report.snapshot.files if f.path == "workspace/AGENTS.md")
    assert entry.mtime_ns == 1_760_000_000_123_456_789


def test_a_legacy_bucket_imports_its_config_as_openclaw_json(repo: Repository, tmp_path: Path) -> None:
    root = tmp_path / "b"
    put(root, "clawdbot/clawdbot.json", json.dumps({"agents": {"defaults": {"workspace": "/root/clawd"}}}))
    put(root, "skills/weather/SKILL.md", "# Weather\n")
    report = import_snapshot(repo, "box", MoltworkerBucket(LocalStore(root)))
    assert report.layout.legacy
    paths = sorted(f.path for f in report.snapshot.files)
    assert paths == ["openclaw.json", "workspace/skills/weather/SKILL.md"]
    assert any("renamed from clawdbot.json" in c for c in report.changes)
    assert any("agents.defaults.workspace (/root/clawd) taken out" in c for c in report.changes)


def test_a_json5_config_is_imported_as_it_is_with_a_warning(repo: Repository, tmp_path: Path) -> None:
    root = tmp_path / "b"
    text = "{ agents: { defaults: { workspace: '/root/clawd' } }, } // JSON5\n"
    put(root, "openclaw/openclaw.json", text)
    report = import_snapshot(repo, "box", MoltworkerBucket(LocalStore(root)))
    assert repo.get_blob(report.snapshot.files[0].blob) == text.encode()
    assert any("not plain JSON" in w and "/root/clawd" in w for w in report.warnings)


def test_an_import_into_a_sandbox_with_snapshots_is_refused_unless_asked(
    bucket_dir: Path, repo: Repository
) -> None:
    bucket = MoltworkerBucket(LocalStore(bucket_dir))
    first = import_snapshot(repo, "box", bucket)
    with pytest.raises(MoltworkerError, match="has 1 snapshot"):
        import_snapshot(repo, "box", bucket)
    second = import_snapshot(repo, "box", bucket, allow_existing=True)
    assert second.new_blobs == 0 and second.uploaded_bytes == 0  # every blob was there already
    assert [s.id for s in repo.snapshots("box")] == [first.snapshot.id, second.snapshot.id]


def test_a_sandbox_name_that_cannot_be_a_key_is_refused_before_any_read(repo: Repository) -> None:
    bucket = MemoryBucket({"openclaw/openclaw.json": b"{}"})
    with pytest.raises(MoltworkerError, match="cannot be a sandbox name"):
        import_snapshot(repo, "../box", MoltworkerBucket(bucket))
    assert bucket.reads == []


def test_a_bucket_that_fails_mid_import_leaves_no_snapshot(repo: Repository) -> None:
    data = {f"workspace/memory/{i:03d}.md": f"note {i}".encode() for i in range(40)}
    bucket = MemoryBucket({"openclaw/openclaw.json": b"{}", **data})
    bucket.fail_on = {"workspace/memory/030.md"}
    with pytest.raises(StoreUnreachable):
        import_snapshot(repo, "box", MoltworkerBucket(bucket))
    assert list(repo.snapshot_ids("box")) == []  # the manifest is written last, and was not
    bucket.fail_on = set()
    report = import_snapshot(repo, "box", MoltworkerBucket(bucket))
    assert report.files == 41 and report.new_blobs < 41  # blobs of the first try are used again


def test_a_prune_beside_an_import_waits_for_its_manifest(
    repo: Repository, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A blob stored by a snapshot since forgotten: the import finds it stored and does not
    # write it again, so until its manifest names it, only the repository's lock keeps it.
    blob, _ = repo.put_blob(b"The user likes tea.\n")
    gone = Snapshot(new_snapshot_id(), "old", 0.0, "manual")
    repo.write_snapshot(gone)
    repo.delete_snapshot(gone)
    bucket = MemoryBucket({"workspace/MEMORY.md": b"The user likes tea.\n", "workspace/z.md": b"z"})
    bucket.hold = {"workspace/z.md"}
    results: list[object] = []
    importing = threading.Thread(
        target=lambda: results.append(import_snapshot(repo, "box", MoltworkerBucket(bucket))))
    importing.start()
    assert bucket.reached.wait(30)  # MEMORY.md's blob found stored; z.md not read yet

    blocked_or_done = threading.Event()  # the prune waits for the import, or (unprotected) ends
    monkeypatch.setattr(repo.access, "waiting", blocked_or_done.set)
    pruned: list[PruneReport] = []

    def run_prune() -> None:
        try:
            pruned.append(prune(repo))
        finally:
            blocked_or_done.set()

    pruning = threading.Thread(target=run_prune)
    pruning.start()
    try:
        assert blocked_or_done.wait(30)
        assert pruned == []  # still waiting for the import's manifest
    finally:
        bucket.go.set()
    importing.join(30)
    pruning.join(30)
    assert pruned[0].blobs_removed == 0
    report = results[0]
    assert isinstance(report, ImportReport) and report.new_blobs == 1  # MEMORY.md's was reused
    assert repo.get_blob(blob) == b"The user likes tea.\n"


def test_a_file_gone_since_the_listing_is_left_out_and_said(repo: Repository) -> None:
    bucket = MemoryBucket({"openclaw/openclaw.json": b"{}", "workspace/MEMORY.md": b"m"})
    bucket.gone = {"workspace/MEMORY.md"}
    report = import_snapshot(repo, "box", MoltworkerBucket(bucket))
    assert [f.path for f in report.snapshot.files] == ["openclaw.json"]
    assert "gone from the bucket since it was listed" in reasons(report.left_out)["workspace/MEMORY.md"]


def test_a_damaged_database_and_its_log_are_imported_as_they_are(repo: Repository) -> None:
    damaged = b"SQLite format 3\x00" + b"\xff" * 4080
    bucket = MemoryBucket({"openclaw/memory/main.sqlite": damaged, "openclaw/memory/main.sqlite-wal": b"w"})
    report = import_snapshot(repo, "box", MoltworkerBucket(bucket))
    assert sorted(f.path for f in report.snapshot.files) == ["memory/main.sqlite", "memory/main.sqlite-wal"]
    assert any("could not fold" in w for w in report.warnings)


def test_a_file_named_like_a_log_without_its_database_follows_the_excludes(repo: Repository) -> None:
    bucket = MemoryBucket({"workspace/trading-journal": b"notes", "workspace/x.md": b"x"})
    scan = MoltworkerBucket(bucket).scan()
    assert [f.path for f in scan.files] == ["workspace/x.md"]
    assert reasons(scan.left_out) == {
        "workspace/trading-journal": "left out of every snapshot (memory.excludes: *-journal)",
    }
    scan = MoltworkerBucket(bucket, excludes=["*.lock"]).scan()
    assert [f.path for f in scan.files] == ["workspace/trading-journal", "workspace/x.md"]


# --- an S3 bucket, on the wire ------------------------------------------------------------------


@pytest.fixture
def scripted() -> Iterator[ScriptedS3]:
    with scripted_s3() as fake:
        yield fake


def s3_store(endpoint: str, prefix: str = "") -> S3Store:
    location = S3Location(bucket="moltbot-data", prefix=prefix, endpoint_url=endpoint, path_style=True)
    return s3_store_from(location, {"R2_ACCESS_KEY_ID": "id", "R2_SECRET_ACCESS_KEY": "not-shown-secret"})


def test_an_s3_bucket_is_listed_raw_so_any_file_name_comes_along(scripted: ScriptedS3) -> None:
    keys = {
        "openclaw/": ["openclaw/openclaw.json", "openclaw/../../etc/cron.d/x", "/openclaw/abs",
                      "openclaw/credentials/whatsapp/default/sender-key-1@g.us--0.json"],
        "workspace/": ["workspace/My Notes ü.md", "workspace/" + "n" * 300],
    }

    def answer(seen: Seen) -> tuple[int, bytes] | None:
        if seen.method != "GET" or "list-type" not in seen.query:
            return None
        prefix = seen.query.get("prefix", [""])[0]
        return 200, list_xml("moltbot-data", keys.get(prefix, []))

    scripted.rules.append(answer)
    scripted.rules.append(lambda seen: (200, b"content of " + seen.path.encode()))
    bucket = MoltworkerBucket(s3_store(scripted.endpoint_url))
    assert isinstance(bucket.objects, S3Objects)
    scan = bucket.scan()
    assert sorted(f.path for f in scan.files) == [
        "credentials/whatsapp/default/sender-key-1@g.us--0.json", "openclaw.json", "workspace/My Notes ü.md",
    ]
    found = reasons(scan.left_out)
    assert found["openclaw/../../etc/cron.d/x"].startswith("not safe as a path")
    assert found[shown_key("workspace/" + "n" * 300)].startswith("a name longer than a file system takes")
    assert all(item.key != "/openclaw/abs" for item in scan.left_out)  # not under the prefix asked for
    listed = [s for s in scripted.seen if "list-type" in s.query]
    assert all(s.query["max-keys"] == ["1000"] for s in listed)

    read = bucket.objects.read("workspace/My Notes ü.md")
    assert read.data == b"content of /moltbot-data/workspace/My%20Notes%20%C3%BC.md"


def test_an_s3_bucket_that_is_down_is_said_without_the_secret(scripted: ScriptedS3) -> None:
    scripted.rules.append(lambda _seen: (503, b"<Error><Code>SlowDown</Code></Error>"))
    with pytest.raises(StoreUnreachable) as caught:
        MoltworkerBucket(s3_store(scripted.endpoint_url)).detect()
    assert "not-shown-secret" not in str(caught.value) and "s3://moltbot-data" in str(caught.value)


def test_a_prefix_on_the_store_is_where_moltworkers_layout_starts(scripted: ScriptedS3) -> None:
    def answer(seen: Seen) -> tuple[int, bytes] | None:
        prefix = seen.query.get("prefix", [""])[0]
        if prefix == "shared/moltworker/workspace/":
            return 200, list_xml("moltbot-data", ["shared/moltworker/workspace/AGENTS.md"])
        return 200, list_xml("moltbot-data", [])

    scripted.rules.append(answer)
    scan = MoltworkerBucket(s3_store(scripted.endpoint_url, prefix="shared/moltworker")).scan()
    assert [(f.key, f.path) for f in scan.files] == [("workspace/AGENTS.md", "workspace/AGENTS.md")]
    assert sorted(s.query["prefix"][0] for s in scripted.seen) == [
        f"shared/moltworker/{p}" for p in ("clawdbot/", "openclaw/", "skills/", "workspace/")
    ]


# --- one file read to be shown ------------------------------------------------------------------


def test_one_file_of_a_copied_bucket_is_read_capped_and_never_through_a_link(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    (root / "workspace" / "memory").mkdir(parents=True)
    (root / "workspace" / "MEMORY.md").write_bytes(b"# Memory\n")
    (root / "workspace" / "memory" / "big.md").write_bytes(b"x" * 100)
    (root / "workspace" / "link.md").symlink_to(tmp_path / "outside.md")
    (tmp_path / "outside.md").write_bytes(b"outside\n")
    os.mkfifo(root / "workspace" / "pipe.md")
    bucket = MoltworkerBucket(LocalStore(root))
    assert bucket.read("workspace/MEMORY.md", 64) == b"# Memory\n"
    with pytest.raises(TooLarge) as too_large:
        bucket.read("workspace/memory/big.md", 64)
    assert too_large.value.size == 100
    with pytest.raises(StoreError):
        bucket.read("workspace/link.md", 64)  # O_NOFOLLOW: a link is not followed out
    with pytest.raises(StoreError, match="not a regular file"):
        bucket.read("workspace/pipe.md", 64)  # answered at once, never waited on
    with pytest.raises(ObjectMissing):
        bucket.read("workspace/gone.md", 64)
    with pytest.raises(UnsafeKey, match="not under one of Moltworker's prefixes"):
        bucket.read("../outside.md", 64)


def test_a_bucket_without_a_capped_read_is_capped_after_reading() -> None:
    bucket = MoltworkerBucket(MemoryBucket({"workspace/MEMORY.md": b"x" * 10}))
    assert bucket.read("workspace/MEMORY.md", 10) == b"x" * 10
    with pytest.raises(TooLarge):
        bucket.read("workspace/MEMORY.md", 9)
