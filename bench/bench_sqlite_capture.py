"""Capturing OpenClaw's live SQLite databases: the online backup API from the host against
``openclaw backup sqlite create`` inside the sandbox (issue 11, "What is kept").

A backend (in this process) runs a fresh sandbox of the real OpenClaw image, with the fake
Anthropic provider behind the AI gateway, and runs a few agent turns; ``--pad-mib`` then grows
each database by that much (rows in a table of the bench's own) to see how each way scales.
(The real fixture of tests/unit/fixtures/openclaw_state is not used: it has no workspace, and
OpenClaw refuses agent turns on such a state directory, "WORKSPACE_VANISHED".)

Then, for the shared database (``state/openclaw.sqlite``) and the agent's
(``agents/main/agent/openclaw-agent.sqlite``), it takes ``--runs`` captures each way and checks
every one:

- host: ``sqlite_image(path)`` of memory/capture.py (what moltconsole does), from this process;
- host one-step (``--methods host1``): the same backup API in one step (``pages=-1``), for
  comparison: ``sqlite_image`` copies 1,024 pages a step, and SQLite restarts such a backup
  whenever another process commits between two steps;
- openclaw: ``docker exec <sandbox> openclaw backup sqlite create --global|--agent main
  --repository /data/state/tmp/... --json`` as the sandbox's user, then the snapshot's
  ``database.sqlite`` read on the host from the mounted state directory (the time is split into
  exec and fetch). The repository cannot be the sandbox's own /tmp: that is a tmpfs, and
  Docker's archive API (``docker cp``) does not see a container's tmpfs mounts (404).

Each image is written to a file, opened, and must pass ``PRAGMA integrity_check`` and hold every
row committed before its capture started (a read of the live database just before it starts).

Phases: ``quiet`` (nothing writes); ``writer`` (a process on the host, as the sandbox's user,
commits a row every few milliseconds into a table of its own in both live databases, WAL mode,
and logs every commit's latency: the captures' effect on a writer is read from it); ``turns``
(real agent turns run back to back inside the sandbox while the captures run); ``lock`` (a
writer holds a write transaction on both databases for a while); ``paused`` (the container is
frozen, as a hung one); ``stopped`` (the sandbox is stopped: the host reads the files, and
OpenClaw's command needs a one-off container on the same state directory). For each openclaw
run it also reads the sandbox's cgroup: the memory peak above what the sandbox used before, and
the CPU seconds spent in the sandbox.

Usage: .venv/bin/python bench/bench_sqlite_capture.py [--runs N] [--pad-mib N] [--phases a,b,...]
       [--methods host,host1,openclaw]
Uses its own sandbox name, ports and directories; removes its container and directories at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import docker

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.memory.capture import sqlite_image
from moltconsole_backend.sandbox.spec import STATE_MOUNT
from moltconsole_backend.settings import GatewaySettings, ProviderSettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake provider the tests use, run as a script from anywhere
from tests.support.fake_llm import FakeServer, Reply  # noqa: E402

KEY = "sk-ant-bench-sqlite-0123456789"
MIB = 2**20
PHASES = ("quiet", "writer", "turns", "lock", "paused", "stopped")
METHODS = ("host", "host1", "openclaw")  # host1: the backup API in one step, for comparison
REPO_REL = "tmp/mc-bench-sqlite"  # under the state directory; tmp/* is left out of memory snapshots
REPO_IN_SANDBOX = f"{STATE_MOUNT}/{REPO_REL}"
WRITER_TABLE = "bench_capture_writes"


@dataclass(frozen=True)
class Database:
    """One of OpenClaw's databases: its path under the state directory and the flag that
    names it to ``openclaw backup sqlite create``."""

    label: str
    rel: str
    flag: list[str]
    marker_table: str  # a table whose row count only grows while the agent works

    def host_path(self, state: Path) -> Path:
        return state / self.rel


DATABASES = (
    Database("global", "state/openclaw.sqlite", ["--global"], "backup_runs"),
    Database("agent", "agents/main/agent/openclaw-agent.sqlite", ["--agent", "main"], "transcript_events"),
)


@dataclass
class Run:
    """One capture: how long it took, and what the check of its image said."""

    started: float  # time.time(), to line it up with the writer's commits
    seconds: float
    ok: bool
    note: str = ""
    exec_seconds: float = 0.0
    fetch_seconds: float = 0.0
    size: int = 0
    integrity: bool = False
    rows_kept: bool | None = None  # None: nothing to compare in this phase
    mem_extra: int | None = None  # bytes above the sandbox's usage before the run
    cpu_seconds: float | None = None  # in the sandbox (openclaw) or in this process (host)


@dataclass
class Series:
    """The runs of one method on one database in one phase."""

    phase: str
    method: str
    db: str
    runs: list[Run] = field(default_factory=list)


# --- the two ways of capturing -----------------------------------------------------------------
def one_step_image(path: Path) -> bytes:
    """The online backup API in one step (``pages=-1``): one read transaction from the first
    page to the last, so a writer in another process cannot make it start over (with WAL it is
    never blocked by one either). For comparison with ``sqlite_image``, which copies 1,024
    pages a step and so restarts whenever the agent commits between two steps."""
    with tempfile.TemporaryDirectory(prefix="mc-sqlite-") as tmp:
        copy = Path(tmp) / "copy.sqlite"
        source = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
        return copy.read_bytes()


def host_capture(
    db: Database, state: Path, image_of: Callable[[Path], bytes] = sqlite_image
) -> tuple[bytes | None, Run]:
    """``sqlite_image`` as the memory keeper calls it (or another way, ``image_of``)."""
    wall, cpu = time.time(), _own_cpu()
    began = time.perf_counter()
    try:
        image = image_of(db.host_path(state))
    except sqlite3.Error as exc:  # the keeper keeps the last snapshot's copy then
        return None, Run(wall, time.perf_counter() - began, False, f"sqlite_image failed: {exc}")
    seconds = time.perf_counter() - began
    return image, Run(wall, seconds, True, size=len(image), cpu_seconds=_own_cpu() - cpu)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Cgroup:
    """The sandbox's memory and CPU accounting, read on the host (cgroup v1 or v2)."""

    def __init__(self, container_id: str) -> None:
        v1_mem = Path(f"/sys/fs/cgroup/memory/docker/{container_id}")
        v1_cpu = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}")
        v2 = [Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope"),
              Path(f"/sys/fs/cgroup/docker/{container_id}")]
        self.usage = self.peak = self.cpu = None
        self.cpu_scale = 1e-9
        if v1_mem.exists():
            self.usage, self.peak = v1_mem / "memory.usage_in_bytes", v1_mem / "memory.max_usage_in_bytes"
            self.cpu = v1_cpu / "cpuacct.usage"
        else:
            for base in v2:
                if base.exists():
                    self.usage, self.peak, self.cpu = base / "memory.current", base / "memory.peak", None
                    self.cpu_scale = 1e-6
                    self._cpu_stat = base / "cpu.stat"

    def reset_peak(self) -> int | None:
        """The usage now, after resetting the peak (so the next peak is this run's)."""
        if self.usage is None or self.peak is None:
            return None
        with contextlib.suppress(OSError):
            self.peak.write_text("0")
        return int(self.usage.read_text())

    def read_peak(self) -> int | None:
        return int(self.peak.read_text()) if self.peak is not None else None

    def cpu_seconds(self) -> float | None:
        if self.cpu is not None:
            return int(self.cpu.read_text()) * self.cpu_scale
        stat = getattr(self, "_cpu_stat", None)
        if stat is None:
            return None
        for line in stat.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) * self.cpu_scale
        return None


def fetch_snapshot(state: Path, snapshot: str) -> bytes:
    """The snapshot's database.sqlite, read on the host. ``snapshot`` is a path the sandbox
    printed: it is untrusted, so it must lie in the bench's repository and no link is followed
    (a link planted by the agent could make root on the host read any file)."""
    repo = state / REPO_REL
    rel = Path(snapshot).relative_to(REPO_IN_SANDBOX)  # ValueError when it points elsewhere
    if len(rel.parts) != 1 or rel.parts[0] in ("", ".", ".."):
        raise ValueError(f"unexpected snapshot path {snapshot!r}")
    folder = os.open(repo / rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open("database.sqlite", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def openclaw_capture(
    container: Any, state: Path, db: Database, cgroup: Cgroup | None
) -> tuple[bytes | None, Run]:
    """``openclaw backup sqlite create`` in the sandbox, then its database.sqlite to the host."""
    wall = time.time()
    before = cgroup.reset_peak() if cgroup else None
    cpu0 = cgroup.cpu_seconds() if cgroup else None
    began = time.perf_counter()
    try:
        code, (out, err) = container.exec_run(
            ["openclaw", "backup", "sqlite", "create", *db.flag, "--repository", REPO_IN_SANDBOX, "--json"],
            demux=True,
        )
    except docker.errors.APIError as exc:
        seconds = time.perf_counter() - began
        return None, Run(wall, seconds, False, f"docker exec refused: {exc.explanation or exc}",
                         exec_seconds=seconds)
    exec_seconds = time.perf_counter() - began
    run = Run(wall, exec_seconds, False, exec_seconds=exec_seconds)
    if cgroup and before is not None:
        peak = cgroup.read_peak()
        run.mem_extra = (peak - before) if peak is not None else None
        cpu1 = cgroup.cpu_seconds()
        run.cpu_seconds = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    try:
        result = json.loads((out or b"").decode())
    except ValueError:
        run.note = f"exit {code}, not JSON: {(out or b'')[:120]!r} {(err or b'')[-200:]!r}"
        return None, run
    if code != 0 or not result.get("ok"):
        run.note = f"exit {code}: {json.dumps(result.get('error'))[:200]}"
        return None, run
    snapshot = str(result["snapshotPath"])
    fetched = time.perf_counter()
    try:
        image = fetch_snapshot(state, snapshot)
    except (OSError, ValueError) as exc:
        run.note = f"cannot read the snapshot {snapshot!r}: {exc}"
        return None, run
    run.fetch_seconds = time.perf_counter() - fetched
    run.seconds = time.perf_counter() - began
    run.ok, run.size = True, len(image)
    if run.size != int(result["manifest"]["artifact"]["sizeBytes"]):
        run.ok, run.note = False, "fetched size differs from the manifest's"
    shutil.rmtree(state / REPO_REL / Path(snapshot).name, ignore_errors=True)  # not timed
    return image, run


def openclaw_oneoff(
    client: docker.DockerClient, image_id: str, user: str, state: Path, db: Database
) -> tuple[bytes | None, Run]:
    """OpenClaw's command when the sandbox is stopped: a one-off container on its state dir."""
    wall = time.time()
    began = time.perf_counter()
    try:
        out = client.containers.run(
            image_id, entrypoint=["openclaw"], user=user, remove=True, network_mode="none", read_only=True,
            tmpfs={"/tmp": "rw,size=256m"}, volumes={str(state): {"bind": STATE_MOUNT, "mode": "rw"}},
            command=["backup", "sqlite", "create", *db.flag, "--repository", REPO_IN_SANDBOX, "--json"],
            stderr=False,
        )
    except docker.errors.ContainerError as exc:
        return None, Run(wall, time.perf_counter() - began, False, f"exit {exc.exit_status}")
    seconds = time.perf_counter() - began
    result = json.loads(out.decode())
    if not result.get("ok"):
        return None, Run(wall, seconds, False, json.dumps(result.get("error"))[:200])
    snapshot = str(result["snapshotPath"])
    image = fetch_snapshot(state, snapshot)
    shutil.rmtree(state / REPO_REL / Path(snapshot).name, ignore_errors=True)
    run = Run(wall, time.perf_counter() - began, True, exec_seconds=seconds, size=len(image))
    run.fetch_seconds = run.seconds - seconds
    return image, run


# --- checking an image -------------------------------------------------------------------------
def check_image(image: bytes, scratch: Path, expect: dict[str, int]) -> tuple[bool, bool | None, str]:
    """(integrity ok, rows committed before kept, note) for one captured image."""
    path = scratch / f"check-{uuid.uuid4().hex}.sqlite"
    path.write_bytes(image)
    try:
        conn = sqlite3.connect(path)
        # The agent database's CHECK constraints call octet_length (SQLite 3.43+); older hosts lack it.
        conn.create_function("octet_length", 1, lambda v: None if v is None else len(
            v.encode() if isinstance(v, str) else v if isinstance(v, bytes) else str(v).encode()))
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            integrity = rows == [("ok",)]
            kept: bool | None = None
            notes = [] if integrity else [f"integrity: {rows[:3]}"]
            for table, count in expect.items():
                found = _max_rowid(conn, table)
                kept = (kept is not False) and found >= count
                if found < count:
                    notes.append(f"{table}: {found} < {count} committed before")
            return integrity, kept, "; ".join(notes)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return False, False, f"does not open: {exc}"
    finally:
        path.unlink(missing_ok=True)


def _max_rowid(conn: sqlite3.Connection, table: str) -> int:
    try:
        row = conn.execute(f'SELECT coalesce(max(rowid), 0) FROM "{table}"').fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def live_count(db: Database, state: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db.host_path(state)}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


def committed(db: Database, state: Path, tables: list[str]) -> dict[str, int]:
    """The largest rowid of each table as a reader sees it now (what a capture must keep)."""
    conn = sqlite3.connect(f"file:{db.host_path(state)}?mode=ro", uri=True, timeout=10)
    try:
        return {t: _max_rowid(conn, t) for t in tables}
    finally:
        conn.close()


# --- what writes meanwhile ---------------------------------------------------------------------
WRITER = r"""
import sqlite3, sys, time
paths, table, every, hold = sys.argv[1].split(","), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
conns = [sqlite3.connect(p, timeout=30, isolation_level=None) for p in paths]
for c in conns:
    c.execute("PRAGMA busy_timeout=30000")
    c.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY, at REAL, pad BLOB)")
if hold:  # hold a write transaction on every database, then leave
    for c in conns:
        c.execute("BEGIN IMMEDIATE")
        c.execute(f"INSERT INTO {table}(at, pad) VALUES (?, randomblob(200))", (time.time(),))
    print("held", flush=True)
    time.sleep(hold)
    for c in conns:
        c.execute("COMMIT")
    print(f"released {time.time():.6f}", flush=True)
    sys.exit(0)
while True:
    for i, c in enumerate(conns):
        began = time.time()
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute(f"INSERT INTO {table}(at, pad) VALUES (?, randomblob(200))", (began,))
            c.execute("COMMIT")
            print(f"{i} {began:.6f} {time.time() - began:.6f}", flush=True)
        except sqlite3.OperationalError as exc:
            print(f"{i} {began:.6f} error {exc}", flush=True)
            if c.in_transaction:
                c.execute("ROLLBACK")
    time.sleep(every)
"""


PAD = r"""
import sqlite3, sys
paths, table, mib = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
for p in paths:
    c = sqlite3.connect(p, timeout=30)
    c.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY, pad BLOB)")
    for _ in range(mib):
        c.executemany(f"INSERT INTO {table}(pad) VALUES (randomblob(4000))", [()] * 256)
        c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
"""


def pad_databases(state: Path, uid: int, gid: int, mib: int) -> None:
    """Grow each live database by about ``mib`` MiB of rows in a table of the bench's own."""
    paths = ",".join(str(db.host_path(state)) for db in DATABASES)
    subprocess.run(["/usr/bin/python3", "-c", PAD, paths, "bench_capture_pad", str(mib)],
                   user=uid, group=gid, cwd="/", check=True)


class Writer:
    """The host-side writer, as the sandbox's user (the files are theirs; root would leave
    root-owned -wal/-shm files the agent could not open)."""

    def __init__(self, state: Path, uid: int, gid: int, log: Path, every: float = 0.005,
                 hold: float = 0.0, dbs: tuple[Database, ...] = DATABASES) -> None:
        paths = ",".join(str(db.host_path(state)) for db in dbs)
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-c", WRITER, paths, WRITER_TABLE, str(every), str(hold)],
            user=uid, group=gid, cwd="/", stdout=self._out, stderr=subprocess.STDOUT,
        )

    def wait_started(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # no event to await across processes: watch its log
            if self.log.stat().st_size > 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"the writer exited: {self.log.read_text()[-500:]}")
            time.sleep(0.02)
        raise RuntimeError("the writer did not start")

    def stop(self) -> list[tuple[int, float, float | None]]:
        """(database index, commit start, latency or None for an error) of every commit."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)
        self._out.close()
        commits = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                latency = None if parts[2] == "error" else float(parts[2])
                commits.append((int(parts[0]), float(parts[1]), latency))
        return commits


class Turns:
    """Agent turns back to back inside the sandbox, in a thread, until stopped."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.stop = threading.Event()
        self.done: list[tuple[int, float]] = []  # exit code, seconds
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        turn = 0
        while not self.stop.is_set():
            turn += 1
            began = time.monotonic()
            message = f"Capture bench turn {turn}: say hello"
            command = ["openclaw", "agent", "--agent", "main", "-m", message, "--json"]
            code, _ = self.container.exec_run(command)
            self.done.append((code, time.monotonic() - began))

    def __enter__(self) -> Turns:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(300)


# --- the phases --------------------------------------------------------------------------------
@dataclass
class Bench:
    """Everything the phases share."""

    state: Path
    scratch: Path
    container: Any
    cgroup: Cgroup | None
    runs: int
    uid: int
    gid: int
    methods: tuple[str, ...] = METHODS
    series: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def measure(self, phase: str, method: str, db: Database, runs: int,
                capture: Callable[[], tuple[bytes | None, Run]], tables: list[str]) -> Series:
        series = Series(phase, method, db.label)
        for _ in range(runs):
            expect = committed(db, self.state, tables) if tables else {}
            image, run = capture()
            if image is not None:
                run.integrity, run.rows_kept, note = check_image(image, self.scratch, expect)
                if not tables:
                    run.rows_kept = None
                run.ok = run.ok and run.integrity and run.rows_kept is not False
                run.note = "; ".join(n for n in (run.note, note) if n)
            series.runs.append(run)
        self.series.append(series)
        return series

    def both(self, phase: str, runs: int, tables_for: Callable[[Database], list[str]]) -> None:
        for db in DATABASES:
            if "host" in self.methods:
                self.measure(phase, "host", db, runs, partial(host_capture, db, self.state), tables_for(db))
            if "host1" in self.methods:
                one_step = partial(host_capture, db, self.state, one_step_image)
                self.measure(phase, "host one-step", db, runs, one_step, tables_for(db))
            if "openclaw" in self.methods:
                exec_capture = partial(openclaw_capture, self.container, self.state, db, self.cgroup)
                self.measure(phase, "openclaw", db, runs, exec_capture, tables_for(db))


def writer_effect(bench: Bench, commits: list[tuple[int, float, float | None]], phase: str) -> None:
    """The writer's commit latencies while each method ran (its windows in this phase)."""
    for series in bench.series:
        if series.phase != phase:
            continue
        windows = [(r.started, r.started + r.seconds) for r in series.runs]
        lats = [lat for _, at, lat in commits if lat is not None and any(a <= at <= b for a, b in windows)]
        errors = sum(1 for _, at, lat in commits if lat is None and any(a <= at <= b for a, b in windows))
        if lats:
            lats.sort()
            bench.notes.append(
                f"{phase}: writer's commits while {series.method} captured {series.db}: {len(lats)}, "
                f"p50 {lats[len(lats) // 2] * 1000:.1f} ms, p99 {lats[int(len(lats) * 0.99)] * 1000:.1f} ms, "
                f"max {lats[-1] * 1000:.1f} ms, errors {errors}")
    quiet = sorted(lat for _, _, lat in commits if lat is not None)
    if quiet:
        bench.notes.append(f"{phase}: writer overall: {len(quiet)} commits, "
                           f"p50 {quiet[len(quiet) // 2] * 1000:.1f} ms, max {quiet[-1] * 1000:.1f} ms")


def table_counts(image: bytes, scratch: Path) -> dict[str, int]:
    path = scratch / f"count-{uuid.uuid4().hex}.sqlite"
    path.write_bytes(image)
    try:
        conn = sqlite3.connect(path)
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            counts = {}
            for name in names:
                with contextlib.suppress(sqlite3.OperationalError):  # a virtual table of a module we lack
                    counts[name] = int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            return counts
        finally:
            conn.close()
    finally:
        path.unlink(missing_ok=True)


def fidelity(bench: Bench) -> None:
    """What OpenClaw's snapshot leaves out or adds: row counts per table against the host's
    image, taken one after the other on the quiet sandbox."""
    for db in DATABASES:
        host_image, host_run = host_capture(db, bench.state)
        claw_image, run = openclaw_capture(bench.container, bench.state, db, None)
        if claw_image is None or host_image is None:
            bench.notes.append(f"fidelity {db.label}: a capture failed: {host_run.note} {run.note}")
            continue
        host, claw = table_counts(host_image, bench.scratch), table_counts(claw_image, bench.scratch)
        diffs = [f"{t} {host.get(t, '-')}->{claw.get(t, '-')}"
                 for t in sorted(set(host) | set(claw)) if host.get(t) != claw.get(t)]
        bench.notes.append(f"fidelity {db.label}: {len(host)} tables; rows host->openclaw differ in: "
                           + (", ".join(diffs) or "none"))


def phase_writer(bench: Bench) -> None:
    writer = Writer(bench.state, bench.uid, bench.gid, bench.scratch / "writer.log")
    try:
        writer.wait_started()
        bench.both("writer", bench.runs, writer_tables)
    finally:
        commits = writer.stop()
    writer_effect(bench, commits, "writer")


def phase_turns(bench: Bench) -> None:
    with Turns(bench.container) as turns:
        bench.both("turns", bench.runs, markers)
    codes = [c for c, _ in turns.done]
    secs = sorted(s for _, s in turns.done)
    bench.notes.append(f"turns: {len(codes)} agent turns ran meanwhile, exit codes {sorted(set(codes))}, "
                       f"median {secs[len(secs) // 2] if secs else 0:.1f} s each")


HOLD_SECONDS = 15.0


def phase_lock(bench: Bench) -> None:
    """A writer holds a write transaction (BEGIN IMMEDIATE) for HOLD_SECONDS on one database,
    the one captured or the other; each method captures each database once under each."""
    for db in DATABASES:
        for held in DATABASES:
            for method in ("host", "openclaw"):
                log = bench.scratch / "hold.log"
                writer = Writer(bench.state, bench.uid, bench.gid, log, hold=HOLD_SECONDS, dbs=(held,))
                try:
                    writer.wait_started()

                    def capture(db: Database = db, method: str = method) -> tuple[bytes | None, Run]:
                        if method == "host":
                            return host_capture(db, bench.state)
                        return openclaw_capture(bench.container, bench.state, db, bench.cgroup)

                    series = bench.measure(f"lock:{held.label}", method, db, 1, capture, [])
                finally:
                    writer.proc.wait(60)
                    writer.stop()
                released = [float(line.split()[1]) for line in log.read_text().splitlines()
                            if line.startswith("released ")]
                run = series.runs[0]
                if released:
                    ended = run.started + run.seconds
                    when = ("after" if ended >= released[0] else "before")
                    run.note = "; ".join(n for n in (
                        run.note, f"ended {abs(ended - released[0]):.2f}s {when} the lock was released") if n)


def phase_paused(bench: Bench, client: docker.DockerClient) -> None:
    bench.container.pause()
    try:
        for db in DATABASES:
            bench.measure("paused", "host", db, 5, partial(host_capture, db, bench.state), [])
            exec_capture = partial(openclaw_capture, bench.container, bench.state, db, None)
            bench.measure("paused", "openclaw", db, 1, exec_capture, [])
    finally:
        bench.container.unpause()


def phase_stopped(bench: Bench, client: docker.DockerClient, user: str, image: str) -> None:
    for db in DATABASES:
        bench.measure("stopped", "host", db, bench.runs, partial(host_capture, db, bench.state), [])
        exec_capture = partial(openclaw_capture, bench.container, bench.state, db, None)
        bench.measure("stopped", "openclaw", db, 1, exec_capture, [])
        oneoff = partial(openclaw_oneoff, client, image, user, bench.state, db)
        bench.measure("stopped", "openclaw one-off", db, max(3, bench.runs // 4), oneoff, [])


# --- report ------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(bench: Bench) -> None:
    print()
    print(f"{'phase':8} {'db':6} {'method':17} {'runs':>4} {'ok':>3} {'p50 ms':>9} {'p95 ms':>9} "
          f"{'max ms':>9} {'exec p50':>9} {'fetch p50':>9} {'size KiB':>8} {'mem+ MiB':>8} {'cpu s':>6}"
          "  notes")
    for s in bench.series:
        secs = [r.seconds * 1000 for r in s.runs]
        good = [r for r in s.runs if r.ok]
        execs = [r.exec_seconds * 1000 for r in s.runs if r.exec_seconds]
        fetches = [r.fetch_seconds * 1000 for r in s.runs if r.fetch_seconds]
        mems = [r.mem_extra / MIB for r in s.runs if r.mem_extra is not None]
        cpus = [r.cpu_seconds for r in s.runs if r.cpu_seconds is not None]
        notes = sorted({r.note for r in s.runs if r.note})
        exec_p50 = f"{pct(execs, .5):.1f}" if execs else "-"
        fetch_p50 = f"{pct(fetches, .5):.1f}" if fetches else "-"
        mem = f"{max(mems):.0f}" if mems else "-"
        cpu = f"{statistics.median(cpus):.2f}" if cpus else "-"
        print(f"{s.phase:8} {s.db:6} {s.method:17} {len(s.runs):>4} {len(good):>3} {pct(secs, .5):>9.1f} "
              f"{pct(secs, .95):>9.1f} {max(secs):>9.1f} {exec_p50:>9} {fetch_p50:>9} "
              f"{(good[0].size // 1024 if good else 0):>8} {mem:>8} {cpu:>6}  " + " | ".join(notes)[:160])
    print()
    print("mem+ is the highest peak of the sandbox's cgroup above its usage before the run; cpu s the median")
    print("CPU seconds per run (openclaw: in the sandbox's cgroup; host: this process).")
    for note in bench.notes:
        print(note)


# --- the sandbox -------------------------------------------------------------------------------
def markers(db: Database) -> list[str]:
    return [db.marker_table]


def writer_tables(db: Database) -> list[str]:
    return [WRITER_TABLE]


def sizes(state: Path) -> list[str]:
    """Each database's size and its -wal file's, now."""
    out = []
    for db in DATABASES:
        path = db.host_path(state)
        wal = Path(f"{path}-wal")
        out.append(f"{db.label}: {path.stat().st_size // 1024} KiB, -wal "
                   f"{wal.stat().st_size // 1024 if wal.exists() else 0} KiB at the start")
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mc-sqlcap-", dir="/tmp"))
    root.chmod(0o711)  # the writer runs as the sandbox's user and must reach the state directory
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def run(args: argparse.Namespace, cache_dir: Path) -> None:
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")
    methods = tuple(m for m in args.methods.split(",") if m)
    if set(methods) - set(METHODS):
        wrong = sorted(set(methods) - set(METHODS))
        raise SystemExit(f"unknown methods {wrong}; choose from {','.join(METHODS)}")
    docker_client = docker.from_env(timeout=300)
    name = f"sqlcap{uuid.uuid4().hex[:6]}"
    with workdir() as root:
        data_dir = root / "data"
        state = data_dir / "sandboxes" / name / "state"
        scratch = root / "scratch"
        scratch.mkdir()
        async with FakeServer() as fake:
            fake.provider.default = Reply(text="Capture bench: this turn went through. " * 20, chunks=16)
            settings = Settings(
                sandbox=SandboxSettings(name=name, gateway_port=free_port()),
                gateway=GatewaySettings(
                    port=free_port(), retry_backoff=0.0,
                    providers={"anthropic": ProviderSettings(api="anthropic", base_url=fake.url,
                                                             api_key=KEY)},
                ),
                paths=PathSettings(data_dir=data_dir, cache_dir=cache_dir, runtime_dir=root / "run"),
            )
            try:
                async with BackendService(settings) as service, BackendClient(service.socket_path) as client:
                    started = time.monotonic()
                    await client.action("start")
                    await service.manager.wait_for(lambda s: s.state.value == "ready", timeout=240)
                    container = docker_client.containers.get(f"moltconsole-{name}")
                    ready = time.monotonic() - started
                    print(f"sandbox ready in {ready:.1f}s ({container.name})", flush=True)
                    for turn in range(args.warm_turns):  # so the agent database has turns in it
                        code, _ = await asyncio.to_thread(
                            container.exec_run,
                            ["openclaw", "agent", "--agent", "main", "-m", f"Warm-up turn {turn}", "--json"])
                        print(f"warm-up turn {turn + 1}: exit {code}", flush=True)
                    info = (state / DATABASES[1].rel).stat()
                    for folder in (data_dir, state.parent.parent, state.parent):
                        # The writer runs as the sandbox's user: let it reach the state directory.
                        folder.chmod(folder.stat().st_mode | 0o011)
                    user = str(container.attrs["Config"]["User"])
                    image = str(container.attrs["Image"])
                    floors = {}
                    probes = (("docker exec true", ["true"]),
                              ("openclaw --version", ["openclaw", "--version"]))
                    for label, cmd in probes:
                        times = []
                        for _ in range(5):
                            began = time.perf_counter()
                            await asyncio.to_thread(container.exec_run, cmd)
                            times.append((time.perf_counter() - began) * 1000)
                        floors[label] = statistics.median(times)
                    cgroup = Cgroup(str(container.id))
                    if args.pad_mib:
                        await asyncio.to_thread(pad_databases, state, info.st_uid, info.st_gid, args.pad_mib)
                    bench = Bench(state, scratch, container, cgroup, args.runs, info.st_uid, info.st_gid,
                                  methods=methods)
                    bench.notes.append(
                        "floors (median of 5): " + ", ".join(f"{k} {v:.0f} ms" for k, v in floors.items()))
                    bench.notes.extend(sizes(state))
                    backup_runs = live_count(DATABASES[0], state, "backup_runs")
                    for phase in phases:
                        print(f"phase {phase}...", flush=True)
                        began = time.monotonic()
                        if phase == "quiet":
                            await asyncio.to_thread(bench.both, "quiet", args.runs, markers)
                            if "openclaw" in methods:
                                await asyncio.to_thread(fidelity, bench)
                        elif phase == "writer":
                            await asyncio.to_thread(phase_writer, bench)
                        elif phase == "turns":
                            await asyncio.to_thread(phase_turns, bench)
                        elif phase == "lock":
                            await asyncio.to_thread(phase_lock, bench)
                        elif phase == "paused":
                            await asyncio.to_thread(phase_paused, bench, docker_client)
                        elif phase == "stopped":
                            await client.action("stop")
                            await asyncio.to_thread(phase_stopped, bench, docker_client, user, image)
                        print(f"phase {phase}: {time.monotonic() - began:.0f}s", flush=True)
                    attempts = sum(len(x.runs) for x in bench.series if x.method.startswith("openclaw"))
                    after = live_count(DATABASES[0], state, "backup_runs")
                    bench.notes.append(
                        f"backup_runs rows in the live shared database: {backup_runs} before, "
                        f"{after} after {attempts} openclaw attempts "
                        "(+2 for the fidelity check; refused execs write nothing)")
                    report(bench)
                    await client.action("destroy")
            finally:
                with contextlib.suppress(docker.errors.NotFound):
                    docker_client.containers.get(f"moltconsole-{name}").remove(force=True)
                docker_client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pad-mib", type=int, default=0, help="grow each database by this much first")
    parser.add_argument("--runs", type=int, default=20, help="captures per method, database and phase")
    parser.add_argument("--warm-turns", type=int, default=2, help="agent turns before measuring")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="the quiet, writer and turns phases measure these (host1: one-step backup API)")
    cache_dir = Path("~/.cache/moltconsole").expanduser()  # the prepared image inputs, shared
    asyncio.run(run(parser.parse_args(), cache_dir))


if __name__ == "__main__":
    main()
