"""The log spool on a full disk: a real, small filesystem (tmpfs) filled to the last byte.

Nothing crashes, what was written stays readable (files and indexes), refused lines are counted
and reach followers as dropped, one warning says what to do, and writing resumes by itself
once space is back. A few cases a real disk cannot produce on cue (an index write failing after
its data went through, an I/O error) are injected at the spool's write call instead.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moltconsole_backend.api.service import create_app
from moltconsole_backend.logs import spool as spool_module
from moltconsole_backend.logs.collector import LogCollector, LogQuery
from moltconsole_backend.logs.record import Record
from moltconsole_backend.logs.spool import Spool
from moltconsole_backend.sandbox.state import SandboxState, SandboxStatus
from moltconsole_backend.settings import LogSettings, Settings
from moltconsole_shared.paths import PathSettings

DISK_BYTES = 2 << 20
PAGE = 4096


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 2 MiB tmpfs, unmounted afterwards.

    As root it is mounted here directly. Otherwise a user namespace of our own mounts it, and a
    holder process keeps that namespace (and the mount) alive while the test reaches into it
    through /proc/PID/root.
    """
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    options = f"size={DISK_BYTES},mode=0700"
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "moltconsole-test", str(mount_point)],
                       check=True)
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)
        return
    needs = ("these tests need a small real filesystem: run them as root, or where unprivileged "
             "user namespaces may mount a tmpfs (util-linux `unshare -rm`)")
    try:
        holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
             f"mount -t tmpfs -o {options} moltconsole-test '{mount_point}' && echo mounted "
             "&& exec cat"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
    except OSError as exc:
        pytest.fail(f"{needs}: {exc}")
    assert holder.stdin is not None and holder.stdout is not None
    try:
        if holder.stdout.readline().strip() != "mounted":
            pytest.fail(needs)
        yield Path(f"/proc/{holder.pid}/root") / mount_point.relative_to("/")
    finally:
        holder.stdin.close()  # `cat` ends, and the namespace with it
        holder.wait(30)


def free_bytes(disk: Path) -> int:
    fs = os.statvfs(disk)
    return fs.f_bavail * fs.f_frsize


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` until the kernel says ENOSPC, then give ``leave`` bytes back."""
    ballast = disk / "ballast"
    with open(ballast, "ab", buffering=0) as fh:
        while True:
            try:
                fh.write(b"\0" * PAGE)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    assert free_bytes(disk) == 0
    if leave:
        os.truncate(ballast, ballast.stat().st_size - leave)
    return ballast


def records(count: int, start: int = 0, size: int = 100) -> list[Record]:
    return [Record(time=1000.0 + start + i, level="info", subsystem="t",
                   message=f"line {start + i} " + "m" * size, source="stdout", raw="r")
            for i in range(count)]


def read_all(spool: Spool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = 1
    while True:
        lines, start = spool.read(start, 500)
        if not lines:
            return out
        out.extend(json.loads(line) for line in lines)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def cursor_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot save the log cursors" in r.getMessage()]


def spool_problem_text(directory: Path) -> str:
    return f"the disk holding {directory} is full (No space left on device)"


def disk_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith("log history:")]


def test_a_write_that_meets_a_full_disk_is_cut_back_and_counted(
    small_disk: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = small_disk / "log-spool"
    spool = Spool(directory, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=4)
    assert len(spool.append(records(100))) == 100
    before = files(directory)
    # With the free-space floor out of the way, the write itself runs into the full disk: the
    # kernel takes what fits of the batch, then says ENOSPC.
    monkeypatch.setattr(Spool, "_check_room", lambda self, size: None)
    ballast = fill(small_disk, leave=3 * PAGE)
    with caplog.at_level(logging.WARNING):
        assert spool.append(records(200, start=100)) == []
        assert spool.append(records(100, start=300)) == []
    assert spool.lines_not_kept == 300 and spool.next_seq == 101
    assert "is full" in str(spool.problem)  # (no narrowing: mypy would think it stays set)
    assert files(directory) == before  # the partly written batch is cut off, index too
    assert [r["seq"] for r in read_all(spool)] == list(range(1, 101))
    warnings = disk_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "No space left on device" in warnings[0] and "logs.history_mb" in warnings[0]

    ballast.unlink()  # space is back: the next batch is written, numbered on from 101
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert [json.loads(x)["seq"] for x in spool.append(records(5, start=400))] == [
            101, 102, 103, 104, 105]
    assert spool.problem is None and spool.lines_not_kept == 300
    assert disk_warnings(caplog) == ["log history: writing again; 300 log lines were dropped "
                                     f"while {spool_problem_text(directory)}"]
    spool.close()
    # A restart finds nothing torn and every kept record.
    with caplog.at_level(logging.WARNING):
        again = Spool(directory, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=4)
    assert not [r for r in caplog.records if "torn" in r.getMessage()]
    got = read_all(again)
    assert [r["seq"] for r in got] == list(range(1, 106)) and again.next_seq == 106
    assert got[100]["message"].startswith("line 400 ")
    lines, _ = again.read(103, 1)  # seeks through the index
    assert json.loads(lines[0])["seq"] == 103
    again.close()


def test_the_floor_refuses_before_the_disk_is_full_and_waits_for_twice_the_floor(
    small_disk: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    directory = small_disk / "log-spool"
    spool = Spool(directory, segment_bytes=1 << 20, history_bytes=1 << 20)
    spool.append(records(10))
    floor = int(DISK_BYTES * spool_module.RESERVE_FRACTION)  # 1% of 2 MiB: below 64 MiB
    ballast = fill(small_disk, leave=floor // PAGE * PAGE)  # the batch would fit, barely
    with caplog.at_level(logging.WARNING):
        assert spool.append(records(3, start=10)) == []
    assert "nearly full" in str(spool.problem)
    assert free_bytes(small_disk) > 0  # refused by the floor, not by the disk
    # Just above the floor is not enough to start again...
    os.truncate(ballast, ballast.stat().st_size - 2 * PAGE)
    assert floor < free_bytes(small_disk) < 2 * floor
    assert spool.append(records(3, start=13)) == []
    # ...twice the floor is.
    os.truncate(ballast, ballast.stat().st_size - floor - 2 * PAGE)
    assert len(spool.append(records(3, start=16))) == 3
    assert spool.lines_not_kept == 6 and spool.problem is None
    assert [r["message"][:7] for r in read_all(spool)][-3:] == ["line 16", "line 17", "line 18"]
    assert len(disk_warnings(caplog)) == 2  # one when it stopped, one when it went on
    spool.close()


def test_the_spool_opens_on_a_full_disk(small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = small_disk / "log-spool"
    directory.mkdir()
    ballast = fill(small_disk)
    with caplog.at_level(logging.WARNING):
        spool = Spool(directory, segment_bytes=1 << 20, history_bytes=1 << 20)
        assert spool.append(records(4)) == []
    assert spool.lines_not_kept == 4 and spool.read(1, 10) == ([], 1)
    ballast.unlink()
    assert [json.loads(x)["seq"] for x in spool.append(records(2))] == [1, 2]
    spool.close()


def test_an_index_write_that_fails_takes_its_data_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data of a batch went in, its index entries did not: both files are cut back."""
    spool = Spool(tmp_path, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=2)
    spool.append(records(10))
    before = files(tmp_path)
    real_write = spool_module._write_all
    calls: list[int] = []

    def index_fails(fd: int, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:  # the index, after the data: half of it, then the disk is full
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    monkeypatch.setattr(spool_module, "_write_all", index_fails)
    assert spool.append(records(10, start=10)) == []
    assert files(tmp_path) == before and spool.lines_not_kept == 10
    monkeypatch.setattr(spool_module, "_write_all", real_write)
    assert len(spool.append(records(10, start=20))) == 10
    spool.close()
    again = Spool(tmp_path, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=2)
    got = read_all(again)
    assert [r["seq"] for r in got] == list(range(1, 21))
    assert [r["message"][:7] for r in got[10:12]] == ["line 20", "line 21"]
    for seq in range(1, 21):  # every index entry leads to its record
        assert json.loads(again.read(seq, 1)[0][0])["seq"] == seq
    again.close()


def test_other_write_errors_are_survived_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    spool = Spool(tmp_path, segment_bytes=1 << 20, history_bytes=1 << 20)

    def broken(fd: int, data: bytes) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(spool_module, "_write_all", broken)
    with caplog.at_level(logging.WARNING):
        assert spool.append(records(3)) == []
    assert spool.problem == f"writing to {tmp_path} fails (Input/output error)"
    warnings = disk_warnings(caplog)
    assert len(warnings) == 1 and "remounted read-only" in warnings[0]
    assert spool.append(records(3)) == [] and spool.lines_not_kept == 6
    spool.close()


def test_index_entries_of_a_cut_record_are_not_reused(tmp_path: Path) -> None:
    """A crash left the index ahead of the data: the stale entries go before new ones follow."""
    spool = Spool(tmp_path, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=1)
    spool.append(records(10))
    spool.close()
    segment = sorted(tmp_path.glob("*.jsonl"))[0]
    os.truncate(segment, segment.stat().st_size - 50)  # record 10 torn; its entry stays
    again = Spool(tmp_path, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=1)
    assert again.next_seq == 10
    again.append(records(5, start=100, size=300))  # longer records: old offsets would lie
    again.close()
    third = Spool(tmp_path, segment_bytes=1 << 20, history_bytes=1 << 20, index_every=1)
    for seq in range(1, 15):
        assert json.loads(third.read(seq, 1)[0][0])["seq"] == seq
    assert segment.with_suffix(".idx").stat().st_size == 14 * 24
    third.close()


class StoppedSandbox:
    """Just enough of SandboxManager: a sandbox that is not running."""

    status = SandboxStatus(state=SandboxState.STOPPED)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return asyncio.Queue()

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        pass


async def test_a_follower_is_told_what_the_full_disk_dropped(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        paths=PathSettings(data_dir=small_disk, cache_dir=tmp_path, runtime_dir=tmp_path / "run"),
        logs=LogSettings(history_mb=1, segment_mb=1),
    )
    collector = LogCollector(settings, StoppedSandbox())  # type: ignore[arg-type]
    await collector.start()
    stream = collector.stream(LogQuery(tail=0))
    try:
        assert json.loads(await anext(stream)) == {"type": "caught_up"}
        collector.ingest(records(20), {"file": {"dev": 1, "ino": 2, "offset": 100}})
        batch = json.loads(await asyncio.wait_for(anext(stream), 5))
        assert len(batch["records"]) == 20 and batch["dropped"] == 0 and "disk_full" not in batch

        ballast = fill(small_disk)
        with caplog.at_level(logging.WARNING):
            for round_ in range(3):  # the sources go on; nothing raises
                collector.ingest(records(10, start=100 + 10 * round_),
                                 {"file": {"dev": 1, "ino": 2, "offset": 200 + round_}})
            lost = 0
            while lost < 30:
                batch = json.loads(await asyncio.wait_for(anext(stream), 5))
                assert batch["records"] == [] and batch["dropped"] == batch["disk_full"]
                lost += batch["dropped"]
            assert lost == 30 and collector.lines_not_kept == 30
            assert "nearly full" in str(collector.disk_problem)
            warnings = disk_warnings(caplog)
            assert len(warnings) == 1 and "logs.history_mb (now 1 MiB)" in warnings[0]
            # The cursor journal is on the same disk; its last page has room for a few more
            # cursors, then it fails too: said once, however many batches follow.
            for offset in range(300, 1300):
                collector.ingest(records(1, start=offset), {"file": {"dev": 1, "ino": 2, "offset": offset}})
                if cursor_warnings(caplog):
                    break
            for offset in range(1300, 1400):
                collector.ingest(records(1, start=offset), {"file": {"dev": 1, "ino": 2, "offset": offset}})
        assert len(cursor_warnings(caplog)) == 1
        assert collector.lines_not_kept > 130

        ballast.unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            collector.ingest(records(5, start=500), {"file": {"dev": 1, "ino": 2, "offset": 9000}})
            while True:  # the rest of the drops, then (perhaps with them) the records
                batch = json.loads(await asyncio.wait_for(anext(stream), 5))
                assert batch["dropped"] == batch.get("disk_full", 0)
                lost += batch["dropped"]
                if batch["records"]:
                    break
        assert [r["seq"] for r in batch["records"]] == [21, 22, 23, 24, 25]
        assert lost == collector.lines_not_kept and collector.disk_problem is None
        assert [r.getMessage() for r in caplog.records if "cursors" in r.getMessage()] == [
            "saving the log cursors again"]
    finally:
        await stream.aclose()
        await collector.stop()

    # After a restart: the kept history, and the cursors of the last batch.
    again = LogCollector(settings, StoppedSandbox())  # type: ignore[arg-type]
    await again.start()
    try:
        got = [r for text in [t async for t in again.stream(LogQuery(follow=False))]
               for r in json.loads(text).get("records", [])]
        assert [r["seq"] for r in got] == list(range(1, 26))
        assert again._cursors["file"]["offset"] == 9000  # no torn journal line before it
    finally:
        await again.stop()


async def test_the_floor_is_the_reserve_mb_setting(small_disk: Path, tmp_path: Path) -> None:
    def settings(**logs: Any) -> Settings:
        return Settings(
            paths=PathSettings(data_dir=small_disk, cache_dir=tmp_path, runtime_dir=tmp_path / "run"),
            logs=LogSettings(history_mb=1, segment_mb=1, **logs),
        )

    ballast = fill(small_disk, leave=512 << 10)  # far more than 1% of the disk, less than 1 MiB
    roomy = LogCollector(settings(), StoppedSandbox())  # type: ignore[arg-type]
    await roomy.start()
    roomy.ingest(records(5), {})
    assert roomy.lines_not_kept == 0
    await roomy.stop()

    strict = LogCollector(settings(reserve_mb=1), StoppedSandbox())  # type: ignore[arg-type]
    await strict.start()
    try:
        strict.ingest(records(5, start=5), {})
        assert strict.lines_not_kept == 5
        assert "the log history leaves 1 MiB free, logs.reserve_mb" in str(strict.disk_problem)
        # /v1/status says how many lines were not kept.
        app = create_app(StoppedSandbox(), strict)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as api:
            assert (await api.get("/v1/status")).json()["log_lines_not_kept"] == 5
    finally:
        await strict.stop()
    ballast.unlink()
