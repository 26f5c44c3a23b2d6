"""The file tailer across rotation, truncation and restarts; the HTTP de-chunker."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from moltconsole_backend.logs.record import Record
from moltconsole_backend.logs.sources import FilePosition, FileTailer, _Dechunker, docker_ns


class Collected:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.cursor: dict[str, Any] = {}
        self.changed = threading.Condition()

    def __call__(self, records: list[Record], cursor: dict[str, Any]) -> None:
        with self.changed:
            self.messages.extend(r.message for r in records)
            self.cursor = cursor
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.messages) >= count, timeout=10), self.messages
            return list(self.messages)


def line(n: int) -> str:
    return '{"time":"2026-11-25T12:00:00Z","_meta":{"logLevelName":"INFO"},"message":"m' + str(n) + '"}\n'


def run(tailer: FileTailer) -> threading.Thread:
    thread = threading.Thread(target=tailer.run, daemon=True)
    thread.start()
    return thread


def test_follows_rotation_and_resumes_after_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "openclaw.log"
    log.write_text(line(1) + line(2) + '{"partial')
    sink = Collected()
    tailer = FileTailer(log, FilePosition(), max_line_bytes=1024, sink=sink, interval=0.01)
    thread = run(tailer)
    assert sink.wait_for(2) == ["m1", "m2"]  # the incomplete line waits for its end
    with open(log, "a") as fh:
        fh.write('":1}\n' + line(3))
    sink.wait_for(4)
    # OpenClaw rotates: the old file is renamed; new lines go to a fresh file.
    with open(log, "a") as fh:
        fh.write(line(4))
    os.rename(log, tmp_path / "openclaw.1.log")
    log.write_text(line(5))
    assert sink.wait_for(6)[-2:] == ["m4", "m5"]
    tailer.stop()
    thread.join(5)
    saved = FilePosition(**sink.cursor["file"])

    # While the backend is away: more lines, and another rotation.
    with open(log, "a") as fh:
        fh.write(line(6))
    os.rename(tmp_path / "openclaw.1.log", tmp_path / "openclaw.2.log")
    os.rename(log, tmp_path / "openclaw.1.log")
    log.write_text(line(7))
    again = Collected()
    tailer = FileTailer(log, saved, max_line_bytes=1024, sink=again, interval=0.01)
    thread = run(tailer)
    assert again.wait_for(2) == ["m6", "m7"]  # nothing repeated, nothing lost
    tailer.stop()
    thread.join(5)


def test_truncation_starts_over_and_long_lines_are_cut(tmp_path: Path) -> None:
    log = tmp_path / "openclaw.log"
    log.write_text(line(1) + line(2))
    sink = Collected()
    tailer = FileTailer(log, FilePosition(), max_line_bytes=300, sink=sink, interval=0.01)
    thread = run(tailer)
    sink.wait_for(2)
    log.write_text(line(3))  # truncated in place (copytruncate)
    assert sink.wait_for(3)[-1] == "m3"
    with open(log, "a") as fh:
        fh.write("y" * 5000 + "\n")
    assert sink.wait_for(4)[-1] == "y" * 300
    tailer.stop()
    thread.join(5)


def test_dechunker_handles_any_split() -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    for size in (1, 2, 3, 7, len(body)):
        dechunker = _Dechunker()
        out = b"".join(dechunker.feed(body[i : i + size]) for i in range(0, len(body), size))
        assert out == b"hello world" and dechunker.finished


def test_docker_timestamps() -> None:
    assert docker_ns(b"1970-01-01T00:01:02.5Z") == 62_500_000_000
    assert docker_ns(b"1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert docker_ns(b"1970-01-01T00:00:03Z") == 3_000_000_000
    with pytest.raises(ValueError):
        docker_ns(b"garbage")
