"""The memory API through the real app on a unix socket and the console's own client: status,
snapshots, files now and then, a file's versions and diffs, search, backup and restore; and
the refusals (memory off, a path that leaves the state directory, an unknown snapshot).

The sandbox manager runs against the stand-in engine of test_manager_events (no container); the
keeper keeps a real state directory in a local repository.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.service import create_app
from moltconsole_backend.fleet import Sandbox
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import MemorySettings, Settings
from moltconsole_shared.wire.memory import PruneRequest
from tests.support.memory_store import damage_blob
from tests.unit.test_client import serve_asgi
from tests.unit.test_manager_events import StubContainer, StubEngine, kill_container
from tests.unit.test_manager_events import settings as settings  # the fixture


class Stoppable(StubContainer):
    def stop(self, timeout: int) -> None:  # docker-py's stop: the engine then reports the death
        kill_container(self.engine, 0)


@dataclass
class Served:
    manager: SandboxManager
    keeper: MemoryKeeper
    client: BackendClient
    state: Path
    sandbox: Sandbox


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    engine = StubEngine()
    engine.container = Stoppable(engine)
    manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    state = root / "state"
    (state / "workspace" / "memory").mkdir(parents=True)
    (state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes tea.\n")
    (state / "openclaw.json").write_text('{"gateway": {"port": 18789}}\n')
    repo = Repository(LocalStore(root / "repo")).open()
    keeper = MemoryKeeper("unit", state, repo, None, MemorySettings(enabled=True, interval=0))
    app = create_app(manager)
    manager.memory = keeper
    app.fleet.default.memory = keeper  # type: ignore[attr-defined]
    await manager.open()
    try:
        async with serve_asgi(app, root / "s.sock"), BackendClient(root / "s.sock") as client:
            yield Served(manager, keeper, client, state, app.fleet.default)  # type: ignore[attr-defined]
    finally:
        await manager.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_backup_then_its_files_and_a_change_seen_as_versions_and_a_diff(served: Served) -> None:
    memory = served.client.memory
    first = await memory.backup()
    assert first.snapshot.reason == "manual" and first.snapshot.files == 2 and first.new_blobs == 2
    (served.state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes green tea.\n")
    (served.state / "workspace" / "memory" / "2026-12-03.md").write_text("Met Ana.\n")
    second = await memory.backup()
    assert second.read_files == 2  # openclaw.json was unchanged, and not read again

    listed = await memory.snapshots()
    assert [s.id for s in listed.snapshots] == [second.snapshot.id, first.snapshot.id]  # newest first
    then = await memory.files(first.snapshot.id)
    assert [f.path for f in then.files] == ["openclaw.json", "workspace/MEMORY.md"]
    now = await memory.files()
    assert now.snapshot is None and len(now.files) == 3
    assert await memory.read("workspace/MEMORY.md", first.snapshot.id) == b"# Memory\nThe user likes tea.\n"
    assert await memory.read("workspace/MEMORY.md") == b"# Memory\nThe user likes green tea.\n"

    history = await memory.log("workspace/MEMORY.md")
    assert [(v.snapshot, v.change) for v in history.versions] == [
        (first.snapshot.id, "added"), (second.snapshot.id, "changed"),
    ]
    diff = await memory.diff("workspace/MEMORY.md", first.snapshot.id, second.snapshot.id)
    assert "-The user likes tea." in diff.text and "+The user likes green tea." in diff.text
    added = await memory.diff("workspace/memory/2026-12-03.md", first.snapshot.id)
    assert "+Met Ana." in added.text  # absent then, there now
    assert (await memory.diff("openclaw.json", first.snapshot.id)).same


async def test_search_finds_lines_now_and_in_a_snapshot(served: Served) -> None:
    memory = served.client.memory
    snap = await memory.backup()
    (served.state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes coffee.\n")
    now = await memory.search("COFFEE")
    found = [(m.path, m.line, m.text) for m in now.matches]
    assert found == [("workspace/MEMORY.md", 2, "The user likes coffee.")]
    then = await memory.search("tea", snapshot=snap.snapshot.id)
    assert [m.path for m in then.matches] == ["workspace/MEMORY.md"] and then.snapshot == snap.snapshot.id


async def test_a_file_and_the_whole_sandbox_restore_with_a_safety_snapshot_first(served: Served) -> None:
    memory = served.client.memory
    good = await memory.backup()
    (served.state / "workspace" / "MEMORY.md").write_text("overwritten by mistake\n")
    (served.state / "workspace" / "notes.md").write_text("new since\n")

    one = await memory.restore(good.snapshot.id, "workspace/MEMORY.md")
    assert one.files == 1 and one.safety is not None and one.safety.reason == "safety"
    assert (served.state / "workspace" / "MEMORY.md").read_text() == "# Memory\nThe user likes tea.\n"
    assert (served.state / "workspace" / "notes.md").exists()  # a file restore keeps the others
    assert await memory.read("workspace/MEMORY.md", one.safety.id) == b"overwritten by mistake\n"

    assert served.manager.status.running
    whole = await memory.restore(good.snapshot.id)
    assert whole.path is None and whole.files == 2 and whole.restarted  # stopped for it, started again
    assert served.manager.status.running
    assert not (served.state / "workspace" / "notes.md").exists()
    assert whole.safety is not None
    assert await memory.read("workspace/notes.md", whole.safety.id) == b"new since\n"


async def test_refusals_say_what_is_wrong(served: Served) -> None:
    memory = served.client.memory
    with pytest.raises(BackendError, match="refusing the path") as caught:
        await memory.read("../../etc/passwd")
    assert caught.value.status == 400
    with pytest.raises(BackendError, match="no snapshot") as caught:
        await memory.files("20261203T000000000Z-abcdef")
    assert caught.value.status == 409
    with pytest.raises(BackendError, match="is not in snapshot"):
        snap = await memory.backup()
        await memory.restore(snap.snapshot.id, "workspace/never.md")
    with pytest.raises(BackendError, match="say what to search for"):
        await memory.search("  ")


async def test_memory_off_is_said_in_status_and_on_every_request(served: Served) -> None:
    status = await served.client.memory.status()
    assert status.enabled and status.repository.endswith("repo") and not status.encrypted
    assert (await served.client.status())["memory"]["enabled"] is True
    served.sandbox.memory = None  # as when [memory] enabled = false
    status = await served.client.memory.status()
    assert not status.enabled and status.problem == ""
    with pytest.raises(BackendError, match=r"memory is off in the config; set \[memory\] enabled = true"):
        await served.client.memory.snapshots()


async def test_the_default_sandbox_memory_is_reached_by_name_too(served: Served) -> None:
    await served.client.memory.backup()
    async with BackendClient(served.client.socket_path, sandbox="unit") as named:
        assert len((await named.memory.snapshots()).snapshots) == 1
    async with BackendClient(served.client.socket_path, sandbox="nosuch") as unknown:
        with pytest.raises(BackendError, match="no sandbox") as caught:
            await unknown.memory.status()
        assert caught.value.status == 404


async def test_verify_names_a_damaged_blob_with_the_snapshots_and_files_it_hurts(served: Served) -> None:
    memory = served.client.memory
    snap = await memory.backup()
    assert (await memory.verify()).ok
    repo_root = Path(served.keeper.repo.store.where)
    entry = next(f for f in served.keeper.last.files if f.path == "workspace/MEMORY.md")  # type: ignore[union-attr]
    damage_blob(served.keeper.repo, repo_root, entry.blob)
    report = await memory.verify()
    assert not report.ok
    assert [(d.blob, d.problem, d.snapshots, d.paths) for d in report.damaged] == [
        (entry.blob, "damaged", [snap.snapshot.id], ["workspace/MEMORY.md"]),
    ]
    with pytest.raises(BackendError, match="more than 0, at most 1"):
        await memory.verify(1.5)


async def test_prune_keeps_what_the_policy_says_and_a_dry_run_changes_nothing(served: Served) -> None:
    memory = served.client.memory
    ids = []
    for n in range(4):
        (served.state / "workspace" / "MEMORY.md").write_text(f"version {n}\n")
        ids.append((await memory.backup()).snapshot.id)
    dry = await memory.prune(PruneRequest(dry_run=True, keep_last=2, keep_hourly=0, keep_daily=0,
                                          keep_weekly=0, keep_monthly=0))
    assert dry.dry_run and sorted(dry.forgotten) == sorted(ids[:2])
    assert dry.blobs_removed == 2  # what the real prune below removes
    assert len((await memory.snapshots()).snapshots) == 4
    done = await memory.prune(PruneRequest(keep_last=2, keep_hourly=0, keep_daily=0, keep_weekly=0,
                                           keep_monthly=0))
    assert sorted(done.kept) == sorted(ids[2:]) and done.blobs_removed == 2  # versions 0 and 1
    assert [s.id for s in (await memory.snapshots()).snapshots] == [ids[3], ids[2]]
    assert (await memory.verify()).ok  # nothing a kept snapshot needs was removed
    with pytest.raises(BackendError, match="negative"):
        await memory.prune(PruneRequest(keep_last=-1))


async def test_an_edit_of_a_workspace_file_keeps_what_was_there_first(served: Served) -> None:
    memory = served.client.memory
    before = await memory.write("workspace/MEMORY.md", b"# Memory\nEdited by hand.\n")
    assert before.snapshot.reason == "before-edit"
    assert (served.state / "workspace" / "MEMORY.md").read_text() == "# Memory\nEdited by hand.\n"
    assert await memory.read("workspace/MEMORY.md", before.snapshot.id) == b"# Memory\nThe user likes tea.\n"
    with pytest.raises(BackendError, match="only files of the workspace"):
        await memory.write("openclaw.json", b"{}")
    with pytest.raises(BackendError, match="refusing the path"):
        await memory.write("workspace/../openclaw.json", b"{}")
    with pytest.raises(BackendError, match="at most 16 MiB") as caught:
        await memory.write("workspace/big.md", b"x" * (16 * 2**20 + 1))
    assert caught.value.status == 413


FIXTURE = Path(__file__).parent / "fixtures" / "openclaw_state"


async def test_openclaw_databases_and_transcripts_are_read_now_and_in_a_snapshot(served: Served) -> None:
    shutil.copytree(FIXTURE / "agents", served.state / "agents")
    shutil.copytree(FIXTURE / "state", served.state / "state")
    memory = served.client.memory
    agent_db = "agents/main/agent/openclaw-agent.sqlite"
    now = await memory.tables(agent_db)
    names = {t.name: t for t in now.tables}
    assert "transcript_events" in names and (names["transcript_events"].rows or 0) > 0
    page = await memory.rows(agent_db, "session_windows", limit=5)
    assert page.rows and len(page.rows) <= 5

    listed = await memory.sessions()
    assert listed.sessions
    talk = await memory.conversation(listed.sessions[0].ref)
    assert {turn.role for turn in talk.turns} >= {"user", "assistant"}

    snap = await memory.backup()
    (served.state / agent_db).unlink()  # gone now, still in the snapshot
    then = await memory.sessions(snapshot=snap.snapshot.id)
    assert [s.ref for s in then.sessions] == [s.ref for s in listed.sessions]
    again = await memory.conversation(listed.sessions[0].ref, snapshot=snap.snapshot.id)
    assert [t.text for t in again.turns] == [t.text for t in talk.turns]
    assert (await memory.tables(agent_db, snap.snapshot.id)).tables == now.tables

    with pytest.raises(BackendError, match="transcript_nope") as caught:
        await memory.rows("state/openclaw.sqlite", "transcript_nope")
    assert caught.value.status == 404
    with pytest.raises(BackendError, match="not a SQLite database") as caught:
        await memory.tables("workspace/MEMORY.md")
    assert caught.value.status == 409
    with pytest.raises(BackendError) as caught:
        await memory.conversation("db/main/no-such-session")
    assert caught.value.status in (400, 404)
