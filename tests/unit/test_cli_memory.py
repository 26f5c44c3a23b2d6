"""``moltconsole memory ...`` against the real backend app with a real keeper: the real parser and
``cli.main``, the real client on a unix socket, a real state directory kept in a local
repository. The app is served from a thread with its own event loop (the CLI runs its own); the
sandbox manager drives the stand-in engine of test_manager_events (no container).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from moltconsole import cli
from moltconsole.cli import memory_format
from moltconsole.cli.choice import SANDBOX_ENV
from moltconsole.cli.memory import Refused, pick_snapshot
from moltconsole.cli.parser import build_parser
from moltconsole.settings import load_settings
from moltconsole_backend.api.service import create_app
from moltconsole_backend.fleet import Sandbox
from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.service import MemoryService
from moltconsole_backend.memory.store import LocalStore
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_backend.settings import MemorySettings, SandboxSettings, Settings
from moltconsole_shared.commands import EXIT_FAILED, EXIT_NO_BACKEND, EXIT_OK, EXIT_USAGE
from moltconsole_shared.paths import PathSettings
from moltconsole_shared.wire import memory as wire
from tests.support.memory_store import damage_blob
from tests.unit.test_cost_routes import local_time_utc
from tests.unit.test_manager_events import StubEngine
from tests.unit.test_memory_api import Stoppable

T = TypeVar("T")
MEMORY_MD = "# Memory\nThe user likes tea.\n"


@dataclass
class Backend:
    """The real app on the socket the CLI's config points at, in a thread of its own."""

    root: Path
    state: Path
    config: Path
    loop: asyncio.AbstractEventLoop | None = None
    manager: SandboxManager | None = None
    sandbox: Sandbox | None = None
    keeper: MemoryKeeper | None = None
    snapshot_ids: list[str] = field(default_factory=list)

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the backend's loop (the keeper and manager live there)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(60)

    def backup(self) -> str:
        """A snapshot taken by the keeper itself; its id."""
        assert self.keeper is not None
        report = self.call(self.keeper.backup("manual"))
        self.snapshot_ids.append(report.snapshot.id)
        return report.snapshot.id


@contextlib.contextmanager
def serving_memory(memory_service: Callable[[Path], MemoryService] | None = None) -> Iterator[Backend]:
    """A state directory with two files, its keeper in a local repository, and the real app on
    the socket of a config file of its own; ``memory_service`` (given the root) stands for the
    backend's memory service (its settings and environment reach Moltworker buckets)."""
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    state = root / "state"
    (state / "workspace" / "memory").mkdir(parents=True)
    (state / "workspace" / "MEMORY.md").write_text(MEMORY_MD)
    (state / "openclaw.json").write_text('{"gateway": {"port": 18789}}\n')
    config = root / "config.toml"
    config.write_text(f'[paths]\ndata_dir = "{root}/data"\ncache_dir = "{root}/cache"\n'
                      f'runtime_dir = "{root}/run"\n')
    backend = Backend(root, state, config)
    socket_path = load_settings(config).socket_path
    socket_path.parent.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(socket_path))
    sock.listen(16)
    sock.setblocking(False)
    servers: list[uvicorn.Server] = []
    ready = threading.Event()
    failed: list[BaseException] = []

    async def serve() -> None:
        settings = Settings(
            sandbox=SandboxSettings(name="unit", gateway_port=9, restart_backoff_initial=0.05,
                                    readyz_interval=0.05, health_interval=0.05),
            paths=PathSettings(data_dir=root / "bdata", cache_dir=root / "bcache", runtime_dir=root / "brun"),
        )
        engine = StubEngine()
        engine.container = Stoppable(engine)
        manager = SandboxManager(settings, client_factory=lambda: engine)  # type: ignore[arg-type,return-value]
        repo = Repository(LocalStore(root / "repo")).open()
        keeper = MemoryKeeper("unit", state, repo, None, MemorySettings(enabled=True, interval=0))
        app = create_app(manager)
        manager.memory = keeper
        app.fleet.default.memory = keeper  # type: ignore[attr-defined]
        if memory_service is not None:
            app.fleet.memory = memory_service(root)  # type: ignore[attr-defined]
        await manager.open()
        backend.loop, backend.manager, backend.keeper = asyncio.get_running_loop(), manager, keeper
        backend.sandbox = app.fleet.default  # type: ignore[attr-defined]
        server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1,
        ))
        servers.append(server)
        ready.set()
        try:
            await server.serve(sockets=[sock])
        finally:
            await manager.close()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # said by the fixture, not lost in the thread
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="memory-api", daemon=True)
    thread.start()
    assert ready.wait(30) and not failed, failed
    try:
        yield backend
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(30)
        sock.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """:func:`serving_memory`, with no sandbox chosen by the environment and colour allowed."""
    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    with serving_memory() as served:
        yield served


def utc_time(snapshot_id: str) -> str:
    """The time a snapshot id holds (UTC), as the CLI shows it when local time is UTC."""
    return (f"{snapshot_id[:4]}-{snapshot_id[4:6]}-{snapshot_id[6:8]} "
            f"{snapshot_id[9:11]}:{snapshot_id[11:13]}:{snapshot_id[13:15]}")


def moltconsole(backend: Backend, *argv: str) -> int:
    return cli.main(["--config", str(backend.config), *argv])


class _Tty:
    """isatty() of a terminal, for stdin or stdout."""

    def isatty(self) -> bool:
        return True


def as_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.stdout (pytest's capture) says it is a terminal."""
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


# --- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["-s", "work", "memory", "ls"], ["memory", "ls", "-s", "work"], ["memory", "-s", "work", "ls"],
    ["memory", "-s", "work"], ["memory", "restore", "latest", "-s", "work", "--yes"],
])
def test_sandbox_is_taken_before_or_after_memory_and_its_verb(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).sandbox == "work"


def test_json_before_the_verb_is_kept() -> None:
    assert build_parser().parse_args(["memory", "--json", "snapshots"]).json is True
    assert build_parser().parse_args(["memory", "snapshots", "--json"]).json is True
    assert not hasattr(build_parser().parse_args(["memory", "snapshots"]), "json")


@pytest.mark.parametrize(("argv", "said"), [
    (["memory", "verify", "--sample", "0"], "not a fraction above 0 and at most 1"),
    (["memory", "verify", "--sample", "1.5"], "not a fraction above 0 and at most 1"),
    (["memory", "prune", "--keep-daily", "-1"], "not a whole number of 0 or more"),
    (["memory", "search", "x", "--limit", "5000"], "not a whole number from 1 to 1,000"),
])
def test_bad_numbers_are_usage_errors(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == EXIT_USAGE and said in capsys.readouterr().err


# --- snapshot ids --------------------------------------------------------------------------
SNAPS = [
    wire.SnapshotSummary(id="20261203T101500123Z-a1b2c3", time=3.0, reason="change", files=2, size=9),
    wire.SnapshotSummary(id="20261203T101000000Z-a1ffff", time=2.0, reason="manual", files=2, size=9),
    wire.SnapshotSummary(id="20261202T090000000Z-0d0e0f", time=1.0, reason="schedule", files=1, size=3),
]


@pytest.mark.parametrize(("given", "picked"), [
    ("latest", 0), (SNAPS[1].id, 1), ("20261202", 2), ("20261203T1015", 0), ("0d0", 2), ("a1b", 0),
])
def test_a_snapshot_is_named_by_latest_its_id_or_a_unique_prefix(given: str, picked: int) -> None:
    assert pick_snapshot(SNAPS, given, None) == SNAPS[picked]


def test_an_ambiguous_or_unknown_snapshot_is_refused_saying_what_to_do() -> None:
    with pytest.raises(Refused, match=r"'a1' could be any of 2 snapshots \(20261203T101500123Z-a1b2c3, "
                       r"20261203T101000000Z-a1ffff\); give more of the id"):
        pick_snapshot(SNAPS, "a1", None)
    with pytest.raises(Refused, match=r"sandbox work has no snapshot 'zz'; 'moltconsole -s work memory "
                       r"snapshots' lists them"):
        pick_snapshot(SNAPS, "zz", "work")
    with pytest.raises(Refused, match=r"the default sandbox has no snapshot yet; 'moltconsole memory "
                       "backup' takes one now"):
        pick_snapshot([], "latest", None)


# --- status and snapshots ------------------------------------------------------------------
def test_status_before_and_after_a_backup(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert moltconsole(backend, "memory") == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("memory     on for the default sandbox, not watching")
    assert f"repository {backend.root}/repo, not encrypted (it holds the agent's secrets)\n" in out
    assert "last       no snapshot yet ('moltconsole memory backup' takes one now)" in out
    assert "bucket" not in out  # the local repository only

    assert moltconsole(backend, "memory", "backup") == EXIT_OK
    taken = capsys.readouterr().out.splitlines()
    assert taken[0].startswith("snapshot 20") and taken[0].endswith("manual: 2 files, 58 B")
    assert taken[1].startswith("read 2 files (the others were unchanged), 2 new blobs, ")

    assert moltconsole(backend, "memory", "status", "--json") == EXIT_OK
    status = wire.MEMORY_STATUS.read(json.loads(capsys.readouterr().out))
    assert status.enabled and status.last_snapshot is not None and status.last_snapshot.files == 2


def test_status_lines_of_a_bucket_down_and_an_operation() -> None:
    status = wire.MemoryStatus(
        enabled=True, repository="/srv/memory", encrypted=True,
        bucket=wire.BucketStatus(where="r2://agent/mc", reachable=False, unreachable_since=940.0,
                                 last_error="connection refused\x1b[2J"),
        last_snapshot=SNAPS[0], pending=3, watching=True,
        operation=wire.Operation(kind="backup", started=990.0, done=1536, total=4096),
    )
    with local_time_utc():
        text = memory_format.format_status(status, 1000.0, "work")
    assert text == (
        "memory     on for sandbox work, watching for changes\n"
        "repository /srv/memory, encrypted\n"
        "bucket     r2://agent/mc: UNREACHABLE since 1970-01-01 00:15:40 (1m00s): connection refused"
        "\u241b[2J; snapshots wait in the local repository\n"
        "last       20261203T101500123Z-a1b2c3, 1970-01-01 00:00:03 (16m37s ago), change: 2 files, 9 B\n"
        "pending    3 snapshots not in the bucket yet\n"
        "running    backup for 10s: 1.5 KiB of 4.0 KiB (38%)"
    )


def test_memory_off_is_said_with_what_to_do(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert backend.sandbox is not None
    backend.sandbox.memory = None  # as with [memory] enabled = false
    assert moltconsole(backend, "memory") == EXIT_OK
    assert "memory     off for the default sandbox (the config's [memory] enabled = false); set it to " \
        "true and restart the backend" in capsys.readouterr().out
    assert moltconsole(backend, "memory", "ls") == EXIT_FAILED
    err = capsys.readouterr().err
    assert err == ("moltconsole: sandbox unit: memory is off in the config; set [memory] enabled = true and "
                   "restart the backend\n")


def test_no_backend_is_said_with_how_to_start_one(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    config = backend.root / "elsewhere.toml"
    config.write_text(f'[paths]\nruntime_dir = "{backend.root}/none"\n')
    assert cli.main(["--config", str(config), "memory", "snapshots"]) == EXIT_NO_BACKEND
    err = capsys.readouterr().err
    assert "no moltconsole backend answers" in err and "Start one with 'moltconsole serve'" in err
    assert "Traceback" not in err


def test_snapshots_newest_first_in_local_time(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert moltconsole(backend, "memory", "snapshots") == EXIT_OK
    assert capsys.readouterr().out == ("the default sandbox has no snapshot yet; 'moltconsole memory backup' "
                                       "takes one now\n")
    first = backend.backup()
    (backend.state / "workspace" / "notes.md").write_text("x\n")
    second = backend.backup()
    with local_time_utc():
        assert moltconsole(backend, "memory", "snapshots") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["snapshot", "time", "reason", "files", "size"]
    assert [line.split()[0] for line in lines[1:]] == [second, first]
    assert lines[1].split()[1:] == [*utc_time(second).split(), "manual", "3", "60", "B"]
    assert moltconsole(backend, "memory", "snapshots", "--json") == EXIT_OK
    listed = wire.SNAPSHOT_LIST.read(json.loads(capsys.readouterr().out))
    assert [s.id for s in listed.snapshots] == [second, first]


# --- ls, cat, log, diff, search ------------------------------------------------------------
def test_ls_now_and_in_a_snapshot_with_a_prefix(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    first = backend.backup()
    (backend.state / "workspace" / "memory" / "2026-12-03.md").write_text("Met Ana.\n")
    assert moltconsole(backend, "memory", "ls", "workspace/") == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in out[1:-1]] == [
        "workspace/MEMORY.md", "workspace/memory/2026-12-03.md",
    ]
    assert out[-1] == "2 files, 38 B"
    assert moltconsole(backend, "memory", "ls", "--snapshot", first[-6:], "workspace/") == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in out[1:-1]] == ["workspace/MEMORY.md"]
    assert moltconsole(backend, "memory", "ls", "--json", "--snapshot", "latest") == EXIT_OK
    listing = wire.FILE_LIST.read(json.loads(capsys.readouterr().out))
    assert listing.snapshot == first
    assert [f.path for f in listing.files] == ["openclaw.json", "workspace/MEMORY.md"]
    assert moltconsole(backend, "memory", "ls", "nowhere/") == EXIT_FAILED
    assert capsys.readouterr().err == ("moltconsole memory: no file in the state directory now starts with "
                                       "'nowhere/'; 'moltconsole memory ls' lists them all\n")


def test_ls_with_an_unknown_or_ambiguous_snapshot_says_so(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    backend.backup()
    backend.backup()
    assert moltconsole(backend, "memory", "ls", "--snapshot", "nosuch") == EXIT_FAILED
    assert capsys.readouterr().err == ("moltconsole memory: the default sandbox has no snapshot 'nosuch'; "
                                       "'moltconsole memory snapshots' lists them\n")
    assert moltconsole(backend, "memory", "ls", "--snapshot", "20") == EXIT_FAILED
    assert "'20' could be any of 2 snapshots" in capsys.readouterr().err


def test_cat_to_a_pipe_writes_the_bytes_as_they_are(
    backend: Backend, capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    raw = b"\x1b]52;c;aGk=\x07\x00\xff binary\n"
    (backend.state / "blob.bin").write_bytes(raw)
    snap = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("changed\n")
    assert moltconsole(backend, "memory", "cat", "blob.bin") == EXIT_OK
    assert capsysbinary.readouterr().out == raw
    assert moltconsole(backend, "memory", "cat", "workspace/MEMORY.md", "--snapshot", snap) == EXIT_OK
    assert capsysbinary.readouterr().out == MEMORY_MD.encode()


def test_cat_on_a_terminal_makes_text_inert_and_refuses_binary_unless_forced(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    (backend.state / "workspace" / "evil.md").write_bytes(b"hi \x1b]52;c;aGk=\x07there\r\nnext")
    database = backend.state / "state.sqlite"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("create table t (x)")
        db.commit()
    as_terminal(monkeypatch)
    assert moltconsole(backend, "memory", "cat", "workspace/evil.md") == EXIT_OK
    assert capsys.readouterr().out == "hi \u241b]52;c;aGk=\u2407there\nnext\n"
    assert moltconsole(backend, "memory", "cat", "state.sqlite") == EXIT_USAGE
    assert capsys.readouterr().err == (
        "moltconsole memory: state.sqlite is a SQLite database (8.0 KiB) and would garble the terminal; "
        "write it to a file: moltconsole memory cat state.sqlite > FILE (or add --force to see it with "
        "its control characters made visible)\n"
    )
    assert moltconsole(backend, "memory", "cat", "state.sqlite", "--force") == EXIT_OK
    shown = capsys.readouterr().out
    assert shown.startswith("SQLite format 3\u2400") and "\x00" not in shown and "\x1b" not in shown
    (backend.state / "my notes.bin").write_bytes(b"\x00\x01")
    assert moltconsole(backend, "memory", "cat", "my notes.bin") == EXIT_USAGE
    assert "write it to a file: moltconsole memory cat 'my notes.bin' > FILE" in capsys.readouterr().err


def test_cat_of_a_bad_path_says_which_and_what_to_do(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(backend, "memory", "cat", "../../etc/passwd") == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("moltconsole: refusing the path '../../etc/passwd'")
    assert err.endswith(
        "Give a path relative to the state directory, as 'moltconsole memory ls' shows them\n"
    )
    assert moltconsole(backend, "-s", "unit", "memory", "cat", "workspace/none.md") == EXIT_FAILED
    assert capsys.readouterr().err == (
        "moltconsole: cannot read workspace/none.md in sandbox unit: No such file or directory. "
        "'moltconsole -s unit memory ls' lists the files now; --snapshot ID reads one as it was\n"
    )


def test_log_lists_versions_and_says_when_no_snapshot_has_the_file(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    first = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes green tea.\n")
    second = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").unlink()
    third = backend.backup()
    assert moltconsole(backend, "memory", "log", "workspace/MEMORY.md") == EXIT_OK
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["snapshot", "time", "reason", "change", "size"]
    assert [(r[0], r[4], r[5:]) for r in rows[1:]] == [
        (first, "added", ["29", "B"]), (second, "changed", ["35", "B"]), (third, "removed", ["-"]),
    ]
    assert moltconsole(backend, "memory", "log", "workspace/never.md") == EXIT_FAILED
    assert capsys.readouterr().err == (
        "moltconsole memory: no snapshot of the default sandbox has workspace/never.md; 'moltconsole memory "
        "ls --snapshot latest' lists the files the newest one keeps\n"
    )


def test_diff_from_the_newest_snapshot_to_now_coloured_on_a_terminal_only(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes green tea.\n")
    assert moltconsole(backend, "memory", "diff", "workspace/MEMORY.md") == EXIT_OK
    plain = capsys.readouterr().out
    assert plain == (
        f"--- workspace/MEMORY.md ({first})\n+++ workspace/MEMORY.md (now)\n@@ -1,2 +1,2 @@\n # Memory\n"
        "-The user likes tea.\n+The user likes green tea.\n"
    )
    as_terminal(monkeypatch)
    assert moltconsole(backend, "memory", "diff", "workspace/MEMORY.md", "latest", "now") == EXIT_OK
    coloured = capsys.readouterr().out
    assert coloured == (
        f"\x1b[1m--- workspace/MEMORY.md ({first})\x1b[0m\n\x1b[1m+++ workspace/MEMORY.md (now)\x1b[0m\n"
        "\x1b[36m@@ -1,2 +1,2 @@\x1b[0m\n # Memory\n"
        "\x1b[31m-The user likes tea.\x1b[0m\n\x1b[32m+The user likes green tea.\x1b[0m\n"
    )
    monkeypatch.setenv("NO_COLOR", "1")
    assert moltconsole(backend, "memory", "diff", "workspace/MEMORY.md") == EXIT_OK
    assert capsys.readouterr().out == plain


def test_diff_between_two_snapshots_and_of_an_unchanged_file(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    first = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes coffee.\n")
    second = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("later\n")
    assert moltconsole(backend, "memory", "diff", "workspace/MEMORY.md", first[-6:], second[-6:]) == EXIT_OK
    out = capsys.readouterr().out
    assert "+The user likes coffee." in out and "later" not in out
    assert moltconsole(backend, "memory", "diff", "openclaw.json", first, "--json") == EXIT_OK
    diff = wire.FILE_DIFF.read(json.loads(capsys.readouterr().out))
    assert diff.same and diff.old == first and diff.new == "now"
    assert moltconsole(backend, "memory", "diff", "openclaw.json", first) == EXIT_OK
    assert capsys.readouterr().out == f"openclaw.json is the same in {first} and now\n"


def test_search_now_and_in_a_snapshot(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    snap = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("# Memory\nThe user likes coffee.\n")
    assert moltconsole(backend, "memory", "search", "COFFEE") == EXIT_OK
    assert capsys.readouterr().out == ("workspace/MEMORY.md:2: The user likes coffee.\n"
                                       "1 line in 1 file (2 files of the state directory now searched)\n")
    assert moltconsole(backend, "memory", "search", "tea", "--snapshot", "latest", "--json") == EXIT_OK
    result = wire.SEARCH_RESULT.read(json.loads(capsys.readouterr().out))
    assert result.snapshot == snap and [m.line for m in result.matches] == [2]
    assert moltconsole(backend, "memory", "search", "zebra") == EXIT_OK
    assert capsys.readouterr().out.startswith("no line holds 'zebra' in 2 files of the state directory now")


# --- backup and restore --------------------------------------------------------------------
def test_restore_of_a_file_says_where_what_was_there_is(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    good = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("overwritten by mistake\n")
    assert moltconsole(backend, "memory", "restore", good[:15], "workspace/MEMORY.md", "--yes") == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"restored workspace/MEMORY.md from snapshot {good}: 1 file, 29 B"
    safety = out[1].split("safety snapshot ")[1].split(" ")[0]
    assert out[1] == (f"what was there before is in the safety snapshot {safety} (undo: moltconsole memory "
                      f"restore {safety} workspace/MEMORY.md)")
    assert (backend.state / "workspace" / "MEMORY.md").read_text() == MEMORY_MD
    assert moltconsole(backend, "memory", "cat", "workspace/MEMORY.md", "--snapshot", safety) == EXIT_OK
    assert capsys.readouterr().out == "overwritten by mistake\n"


def test_restore_of_the_whole_sandbox_stops_and_starts_it(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    good = backend.backup()
    (backend.state / "workspace" / "notes.md").write_text("new since\n")
    assert moltconsole(backend, "memory", "restore", "latest", "--yes", "--json") == EXIT_OK
    result = wire.RESTORE_RESULT.read(json.loads(capsys.readouterr().out))
    assert result.snapshot == good and result.path is None and result.restarted
    assert result.safety is not None and result.safety.reason == "safety"
    assert not (backend.state / "workspace" / "notes.md").exists()
    assert backend.manager is not None and backend.manager.status.running


def test_restore_without_a_terminal_needs_yes(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    backend.backup()
    assert moltconsole(backend, "memory", "restore", "latest", "workspace/MEMORY.md") == EXIT_USAGE
    assert capsys.readouterr().err == (
        "moltconsole memory: restore replaces files of the default sandbox; when not run interactively, "
        "confirm with: moltconsole memory restore latest workspace/MEMORY.md --yes\n"
    )


def test_restore_asks_saying_what_is_kept_and_no_restores_nothing(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = backend.backup()
    (backend.state / "workspace" / "MEMORY.md").write_text("now\n")
    (backend.state / "workspace" / "memory" / "a.md").write_text("a\n")
    folder = backend.backup()
    (backend.state / "workspace" / "memory" / "a.md").write_text("a changed\n")
    asked: list[str] = []
    answers = iter(["n", "n", "y"])

    def answer(question: str = "") -> str:
        asked.append(question)
        return next(answers)

    monkeypatch.setattr("sys.stdin", _Tty())
    monkeypatch.setattr("builtins.input", answer)
    with local_time_utc():
        assert moltconsole(backend, "memory", "restore", good) == EXIT_OK
        assert moltconsole(backend, "memory", "restore", good[-6:], "workspace/MEMORY.md") == EXIT_OK
        assert capsys.readouterr().out == "nothing restored\nnothing restored\n"
        assert (backend.state / "workspace" / "MEMORY.md").read_text() == "now\n"
        assert moltconsole(backend, "memory", "restore", folder, "workspace/memory/") == EXIT_OK
    when = utc_time(good)
    assert asked[0] == (
        f"Restore all of the default sandbox's memory to snapshot {good} ({when}, manual), 2 files, 58 B? "
        "The sandbox is stopped and started again; what is there now is first kept in a safety snapshot; "
        "files that are not in the snapshot are removed from the state directory (the safety snapshot "
        "keeps them). [y/N] "
    )
    assert asked[1] == (
        f"Put workspace/MEMORY.md of the default sandbox back as it was in snapshot {good} ({when}, manual)? "
        "What is there now is first kept in a safety snapshot; no other file is touched. [y/N] "
    )
    assert asked[2].startswith("Put the 1 file under workspace/memory/ of the default sandbox back as they "
                               f"were in snapshot {folder} (")
    assert asked[2].endswith("What is there now is first kept in a safety snapshot; files under "
                             "workspace/memory/ that the snapshot does not have are kept, and no other file "
                             "is touched. [y/N] ")
    assert (backend.state / "workspace" / "memory" / "a.md").read_text() == "a\n"
    assert "restored workspace/memory/ from snapshot" in capsys.readouterr().out


def test_restore_of_a_path_the_snapshot_lacks_is_refused_before_asking(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    snap = backend.backup()
    monkeypatch.setattr("sys.stdin", _Tty())
    monkeypatch.setattr("builtins.input", lambda question="": pytest.fail("asked"))
    assert moltconsole(backend, "memory", "restore", snap, "workspace/never.md") == EXIT_FAILED
    assert capsys.readouterr().err == (
        f"moltconsole memory: workspace/never.md is not in snapshot {snap}; 'moltconsole memory log "
        "workspace/never.md' lists the snapshots that have a file, 'moltconsole memory ls --snapshot "
        f"{snap}' what that one has\n"
    )
    assert moltconsole(backend, "memory", "restore", snap, "workspace/never.md", "--yes") == EXIT_FAILED
    assert "workspace/never.md is not in snapshot" in capsys.readouterr().err


# --- what reaches a terminal ---------------------------------------------------------------
def test_a_coloured_diff_still_makes_the_agents_text_inert() -> None:
    diff = wire.FileDiff(path="a.md", old="x", new="now",
                         text="--- a.md (x)\n+++ a.md (now)\n@@ -1 +1 @@\n-old\n+\x1b]52;c;aGk=\x07\u202e\n")
    shown = memory_format.format_diff(diff, colour=True)
    assert shown.endswith("\x1b[32m+\u241b]52;c;aGk=\u2407\ufffd\x1b[0m")
    assert shown.replace("\x1b[0m", "").replace("\x1b[1m", "").count("\x1b") == 3  # one colour a line


def test_a_backend_without_the_route_is_told_to_restart() -> None:
    from moltconsole.cli.memory import _with_hint
    from moltconsole.client import BackendError

    args = build_parser().parse_args(["memory", "verify"])
    message = "the backend answered POST /v1/memory/verify with HTTP 404: Not Found"
    assert _with_hint(message, BackendError(message, "backend", 404), args, None) == (
        f"{message}. This backend has no 'memory verify' yet: restart it on this version ('moltconsole "
        "serve', or stop it and run 'moltconsole')"
    )
    unknown = "no sandbox named nope; there are: unit"  # the backend's own 404 says enough
    assert _with_hint(unknown, BackendError(unknown, "not_found", 404), args, "nope") == unknown


def test_times_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Etc/GMT-2")  # two hours east of UTC (POSIX signs are reversed)
    time.tzset()
    try:
        assert memory_format.local_time(0.0) == "1970-01-01 02:00:00"
    finally:
        monkeypatch.undo()
        time.tzset()


# --- verify, prune and Moltworker buckets as printed ---------------------------------------
def test_verify_names_each_hurt_blob_with_its_files_and_snapshots() -> None:
    result = wire.VerifyResult(
        ok=False, snapshots=3, blobs_checked=40, bytes_read=5 * 2**20, seconds=1.25,
        damaged=[wire.DamagedBlob(blob="ab12", problem="damaged", snapshots=[SNAPS[0].id, SNAPS[1].id],
                                  paths=["workspace/MEMORY.md"])],
        bad_manifests=["snapshots/unit/x.json: not JSON"],
    )
    assert memory_format.format_verify(result) == (
        "checked 3 snapshots and 40 blobs (5.0 MiB read) in 1.2 s\n"
        "  ! blob ab12 is damaged: it holds workspace/MEMORY.md in 2 snapshots "
        f"({SNAPS[0].id}, {SNAPS[1].id})\n"
        "  ! manifest snapshots/unit/x.json: not JSON\n"
        "damaged: restore those files from a snapshot that does not need the blob ('moltconsole memory log "
        "PATH' lists the versions), or take a new backup so the next snapshot holds them whole"
    )


def test_prune_says_what_would_go_on_a_dry_run() -> None:
    result = wire.PruneResult(dry_run=True, kept=["a", "b"], forgotten=["c"], blobs_removed=1,
                              bytes_freed=2048, blobs_kept=7)
    assert memory_format.format_prune(result) == (
        "would keep 2 snapshots, would forget 1 snapshot\n"
        "  - c\n"
        "would remove 1 blob no kept snapshot needs (2.0 KiB); 7 blobs kept\n"
        "nothing was changed (--dry-run)"
    )


def test_a_moltworker_bucket_and_its_import_as_printed() -> None:
    listing = wire.MoltworkerListing(
        location="r2://agent", layout="openclaw",
        files=[wire.FileInfo(path="workspace/MEMORY.md", size=29, mtime=0.0)],
        skipped=["openclaw/../x: leaves the state directory"],
    )
    with local_time_utc():
        assert memory_format.format_moltworker(listing) == (
            "r2://agent: a Moltworker bucket (openclaw), read-only\n"
            "size  modified  path\n"
            "29 B  -         workspace/MEMORY.md\n"
            "1 file, 29 B\n"
            "left out (1):\n"
            "  openclaw/../x: leaves the state directory"
        )
        kept = wire.ImportResult(snapshot=SNAPS[2])
        assert memory_format.format_import(kept, 61.0) == (
            "imported as snapshot 20261202T090000000Z-0d0e0f, 1970-01-01 00:00:01 (1m00s ago), schedule: "
            "1 file, 3 B\n"
            "not put in place; to do so: moltconsole memory restore 20261202T090000000Z-0d0e0f"
        )
        said = wire.ImportResult(snapshot=SNAPS[2], message="imported; 'moltconsole -s work memory restore "
                                 "20261202T090000000Z-0d0e0f' puts it in place")
        assert memory_format.format_import(said, 61.0).splitlines()[1:] == [said.message]  # said once


# --- verify, prune and Moltworker buckets through the real routes ---------------------------
def test_verify_is_whole_then_names_a_damaged_blob_and_exits_1(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    snap = backend.backup()
    assert moltconsole(backend, "memory", "verify") == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("checked 1 snapshot and 2 blobs (") and out[1] == "all whole"
    assert backend.keeper is not None and backend.keeper.last is not None
    entry = next(f for f in backend.keeper.last.files if f.path == "workspace/MEMORY.md")
    damage_blob(backend.keeper.repo, backend.root / "repo", entry.blob)
    assert moltconsole(backend, "memory", "verify") == EXIT_FAILED
    assert f"  ! blob {entry.blob} is damaged: it holds workspace/MEMORY.md in 1 snapshot ({snap})\n" \
        in capsys.readouterr().out
    assert moltconsole(backend, "memory", "verify", "--sample", "1", "--json") == EXIT_FAILED
    result = wire.VERIFY_RESULT.read(json.loads(capsys.readouterr().out))
    assert not result.ok and [d.blob for d in result.damaged] == [entry.blob]


def test_prune_dry_run_then_for_real_by_the_policy_given(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    ids = []
    for n in range(4):
        (backend.state / "workspace" / "MEMORY.md").write_text(f"version {n}\n")
        ids.append(backend.backup())
    policy = ["--keep-last", "2", "--keep-hourly", "0", "--keep-daily", "0", "--keep-weekly", "0",
              "--keep-monthly", "0"]
    assert moltconsole(backend, "memory", "prune", "--dry-run", *policy) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "would keep 2 snapshots, would forget 2 snapshots"
    assert sorted(out[1:3]) == sorted(f"  - {i}" for i in ids[:2])
    assert out[-1] == "nothing was changed (--dry-run)"
    assert moltconsole(backend, "memory", "prune", *policy, "--json") == EXIT_OK
    result = wire.PRUNE_RESULT.read(json.loads(capsys.readouterr().out))
    assert sorted(result.kept) == sorted(ids[2:]) and result.blobs_removed == 2
    assert moltconsole(backend, "memory", "snapshots", "--json") == EXIT_OK
    left = wire.SNAPSHOT_LIST.read(json.loads(capsys.readouterr().out))
    assert [s.id for s in left.snapshots] == [ids[3], ids[2]]


def test_a_moltworker_bucket_without_credentials_says_what_to_set(
    backend: Backend, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(backend, "memory", "moltworker", "r2://agent-memory") == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("moltconsole: cannot read the Moltworker bucket 'r2://agent-memory': ")
    assert err.endswith("or CF_ACCOUNT_ID\n")  # what to set, and no hint that does not fit after it
    assert "Traceback" not in err
    assert moltconsole(backend, "memory", "import-moltworker", "r2://agent-memory") == EXIT_FAILED
    assert "cannot read the Moltworker bucket 'r2://agent-memory'" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_a_long_operation_shows_its_progress_on_a_terminal_then_clears_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moltconsole.cli import memory as memory_cli

    monkeypatch.setattr(memory_cli, "PROGRESS_EVERY", 0.01)
    looked = asyncio.Event()

    class Memory:
        async def status(self) -> wire.MemoryStatus:
            looked.set()
            return wire.MemoryStatus(enabled=True, operation=wire.Operation(
                kind="restore", started=0.0, done=50 * 2**20, total=200 * 2**20))

    class Client:
        memory = Memory()

    async def work() -> str:
        await looked.wait()
        return "done"

    terminal = _Terminal()
    result = await memory_cli.with_progress(Client(), work(), terminal)  # type: ignore[arg-type]
    assert result == "done"
    shown = terminal.getvalue()
    assert "restore  25%" in shown and "50.0 MiB of 200.0 MiB" in shown
    assert shown.endswith("\r\x1b[K")  # the line is cleared before the result is printed
    piped = io.StringIO()
    assert await memory_cli.with_progress(Client(), work(), piped) == "done"  # type: ignore[arg-type]
    assert piped.getvalue() == ""
