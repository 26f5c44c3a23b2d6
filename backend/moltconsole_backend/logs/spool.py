"""A bounded log history on disk: JSON-lines segment files plus a small seek index each.

Layout of ``<sandbox_dir>/log-spool/``::

    00000000000000000001.jsonl   records, one JSON object a line, ``{"seq":N,...`` first
    00000000000000000001.idx     fixed-size entries (seq, byte offset, latest time before it)

The file name is the segment's first seq. Like Toolong, readers never load a whole file: they
bisect the in-memory index (an entry every ``index_every`` records) and read forward from its
offset. The history is bounded by dropping whole segments, oldest first, once the total size
passes ``history_bytes``; that is the only way an accepted record is ever lost. Sequence
numbers continue across restarts: the last segment is read back (and a torn last line, left by
a crash mid-write, is cut off) when the spool opens.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from moltconsole_backend.logs.record import Record

log = logging.getLogger(__name__)
_ENTRY = struct.Struct("<qqd")  # seq, offset, max time of the records before this one
_SEQ_PREFIX = b'{"seq":'
READ_CHUNK = 1 << 20


def line_seq(line: bytes) -> int:
    """The seq of an encoded record line (it is always the first key)."""
    if not line.startswith(_SEQ_PREFIX):
        raise ValueError("not a spool record")
    return int(line[len(_SEQ_PREFIX) : line.index(b",", len(_SEQ_PREFIX))])


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int = 0  # bytes of complete records: readers never look past it
    index: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.path.with_suffix(".idx")


class Spool:
    """The on-disk history of one sandbox's logs. Thread-safe; every call may block on I/O."""

    def __init__(
        self, directory: Path, *, segment_bytes: int, history_bytes: int, index_every: int = 256
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.history_bytes = history_bytes
        self.index_every = index_every
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._next_seq = 1
        self._max_time = 0.0
        self._since_index = 0
        self._data: object | None = None  # the open file of the last segment
        self._open()

    # --- opening ---------------------------------------------------------------------------
    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob("*.jsonl")):
            try:
                first = int(path.stem)
            except ValueError:
                continue
            segment = _Segment(first, path, path.stat().st_size)
            segment.index = self._load_index(segment)
            self._segments.append(segment)
        if self._segments:
            self._recover_tail(self._segments[-1])
        else:
            self._new_segment()
        self._writer()

    def _load_index(self, segment: _Segment) -> list[tuple[int, int, float]]:
        try:
            raw = segment.index_path.read_bytes()
        except FileNotFoundError:
            raw = b""
        usable = len(raw) - len(raw) % _ENTRY.size
        entries = [e for e in _ENTRY.iter_unpack(raw[:usable]) if e[1] < segment.size]
        if entries or segment.size == 0:
            return entries
        return self._rebuild_index(segment)  # lost or empty index: scan the segment once

    def _rebuild_index(self, segment: _Segment) -> list[tuple[int, int, float]]:
        entries: list[tuple[int, int, float]] = []
        offset = 0
        latest = 0.0
        count = 0
        with open(segment.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                try:
                    seq = line_seq(line)
                    when = float(json.loads(line)["time"])
                except (ValueError, KeyError, TypeError):
                    break
                if count % self.index_every == 0:
                    entries.append((seq, offset, latest))
                latest = max(latest, when)
                offset += len(line)
                count += 1
        with open(segment.index_path, "wb") as fh:
            fh.write(b"".join(_ENTRY.pack(*e) for e in entries))
        return entries

    def _recover_tail(self, segment: _Segment) -> None:
        """Find the last seq and time; cut off a torn last line left by a crash."""
        start_seq, offset, latest = segment.index[-1] if segment.index else (segment.first_seq, 0, 0.0)
        last_seq = start_seq - 1
        since_index = 0
        with open(segment.path, "rb") as fh:
            fh.seek(offset)
            good = offset
            for line in fh:
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("torn line")
                    seq = line_seq(line)
                    latest = max(latest, float(json.loads(line)["time"]))
                except (ValueError, KeyError, TypeError):
                    break
                last_seq = seq
                good += len(line)
                since_index += 1
        if good < segment.size:
            log.warning("log spool %s: cutting %d bytes of a torn record", segment.path,
                        segment.size - good)
            os.truncate(segment.path, good)
            segment.size = good
        self._next_seq = max(last_seq + 1, segment.first_seq)
        self._max_time = latest
        self._since_index = since_index if segment.index else self.index_every

    def _new_segment(self) -> _Segment:
        segment = _Segment(self._next_seq, self.directory / f"{self._next_seq:020d}.jsonl")
        segment.path.touch()
        segment.index_path.write_bytes(b"")
        self._segments.append(segment)
        self._since_index = self.index_every  # the first record of a segment is indexed
        return segment

    def _writer(self) -> None:
        self._close_writer()
        segment = self._segments[-1]
        self._data = open(segment.path, "ab")  # noqa: SIM115 - kept open while appending
        self._idx = open(segment.index_path, "ab")  # noqa: SIM115

    def _close_writer(self) -> None:
        for name in ("_data", "_idx"):
            fh = getattr(self, name, None)
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
                setattr(self, name, None)

    def close(self) -> None:
        """Close the files; the spool can be opened again later."""
        with self._lock:
            self._close_writer()

    # --- writing ---------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """The seq the next record will get."""
        return self._next_seq

    @property
    def first_seq(self) -> int:
        """The oldest seq still on disk (== next_seq when the spool is empty)."""
        with self._lock:
            return self._segments[0].first_seq

    def append(self, records: list[Record]) -> list[str]:
        """Number, encode and write ``records``; return their encoded lines (for live readers)."""
        with self._lock:
            lines: list[str] = []
            entries: list[bytes] = []
            segment = self._segments[-1]
            offset = segment.size
            chunks: list[bytes] = []
            for record in records:
                record.seq = self._next_seq
                self._next_seq += 1
                line = record.encode()
                data = line.encode("utf-8", "surrogateescape") + b"\n"
                if self._since_index >= self.index_every:
                    entries.append(_ENTRY.pack(record.seq, offset, self._max_time))
                    segment.index.append((record.seq, offset, self._max_time))
                    self._since_index = 0
                self._since_index += 1
                if record.time > self._max_time:
                    self._max_time = record.time
                offset += len(data)
                chunks.append(data)
                lines.append(line)
            data_fh = self._data
            assert data_fh is not None
            data_fh.write(b"".join(chunks))  # type: ignore[attr-defined]
            data_fh.flush()  # type: ignore[attr-defined]
            if entries:
                self._idx.write(b"".join(entries))
                self._idx.flush()
            segment.size = offset
            if segment.size >= self.segment_bytes:
                self._new_segment()
                self._writer()
            self._enforce_bound()
            return lines

    def _enforce_bound(self) -> None:
        total = sum(s.size + len(s.index) * _ENTRY.size for s in self._segments)
        while total > self.history_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            total -= oldest.size + len(oldest.index) * _ENTRY.size
            for path in (oldest.path, oldest.index_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # --- reading ---------------------------------------------------------------------------
    def seq_for_time(self, when: float) -> int:
        """A seq from which reading finds every record with ``time >= when``.

        Times are nearly but not strictly ordered (two sources), so the index keeps the
        latest time *before* each entry: everything before the returned seq is older.
        """
        with self._lock:
            candidates = [e for s in self._segments for e in s.index]
            first = self._segments[0].first_seq
        position = bisect.bisect_left([e[2] for e in candidates], when)
        # Entries before `position` have only older records before them; the records between
        # entry position-1 and position may still be newer than `when`.
        if position == 0:
            return first
        return candidates[position - 1][0]

    def read(self, start_seq: int, max_records: int) -> tuple[list[bytes], int]:
        """Up to ``max_records`` encoded lines from ``start_seq`` on, and the seq after them.

        If ``start_seq`` was dropped by the size bound, reading starts at the oldest record
        kept (the returned lines' seqs show the gap).
        """
        with self._lock:
            segments = list(self._segments)
            sizes = [s.size for s in segments]
        start_seq = max(start_seq, segments[0].first_seq)
        position = bisect.bisect_right([s.first_seq for s in segments], start_seq) - 1
        out: list[bytes] = []
        next_seq = start_seq
        while position < len(segments) and len(out) < max_records:
            segment = segments[position]
            entries = segment.index
            at = bisect.bisect_right(entries, (next_seq, 1 << 62, 0.0)) - 1
            offset = entries[at][1] if at >= 0 else 0
            try:
                got = self._read_segment(segment.path, offset, sizes[position], next_seq,
                                         max_records - len(out))
            except FileNotFoundError:
                got = []  # dropped while we read: go on with the next one
            if got:
                out.extend(got)
                next_seq = line_seq(got[-1]) + 1
            if len(out) < max_records:
                position += 1
                if position < len(segments):
                    next_seq = max(next_seq, segments[position].first_seq)
        return out, next_seq

    @staticmethod
    def _read_segment(path: Path, offset: int, end: int, start_seq: int, limit: int) -> list[bytes]:
        out: list[bytes] = []
        with open(path, "rb") as fh:
            while offset < end and len(out) < limit:
                fh.seek(offset)
                chunk = fh.read(min(READ_CHUNK, end - offset))
                if not chunk:
                    break
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:  # one line longer than the chunk: read it whole
                    chunk += fh.read(end - offset - len(chunk))
                    cut = len(chunk)
                lines = chunk[:cut].splitlines()
                offset += cut
                for line in lines:
                    if len(out) >= limit:
                        break
                    if line_seq(line) >= start_seq:
                        out.append(line)
        return out
