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

A full disk is survived, not fought. Before each batch the free space of the spool's filesystem
is checked against a floor (``logs.reserve_mb``; unset, the smaller of RESERVE_BYTES and
RESERVE_FRACTION of the filesystem), so the logs are not what fills the disk under the
sandbox; a batch that does not fit, or whose write fails anyway (ENOSPC, a quota, an I/O
error), is refused whole: both files are cut back to where the last whole record ends
(shrinking a file never needs space), the records get no seq, and they are counted in
``lines_not_kept`` (``/v1/status`` reports it). One warning says so and what to do; writing
resumes by itself once twice the floor is free again.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
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
# The free space the spool leaves on its filesystem: the smaller of the two, so a small disk
# is not declared full at 64 MiB free, nor a large one at 1%.
RESERVE_BYTES = 64 << 20
RESERVE_FRACTION = 0.01
# Once refusing, the spool writes again only when this many floors are free, so a disk that
# hovers at the floor does not flip it (and the log) on and off with every batch.
RESUME_FLOORS = 2
_APPEND = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: ``os.write`` may take less than it was given."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
    """The on-disk history of one sandbox's logs. Thread-safe; every call may block on I/O.

    ``reserve_bytes`` overrides the free-space floor (see the module docstring); 0 refuses a
    batch only when it would not fit at all.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int,
        history_bytes: int,
        index_every: int = 256,
        reserve_bytes: int | None = None,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.history_bytes = history_bytes
        self.index_every = index_every
        self.reserve_bytes = reserve_bytes
        self.lines_not_kept = 0  # records refused since the spool opened (counted, not written)
        self.problem: str | None = None  # why records are refused right now; None while writing
        self._lines_before_problem = 0
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._next_seq = 1
        self._max_time = 0.0
        self._since_index = 0
        # The last segment's files, opened on the first append (a full disk must not stop the
        # spool from opening) and written unbuffered: after a failed write no stale buffer
        # may reach the file later.
        self._data_fd: int | None = None
        self._index_fd: int | None = None
        self._index_bytes = 0  # whole entries in the open index file
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
        try:
            with open(segment.index_path, "wb") as fh:
                fh.write(b"".join(_ENTRY.pack(*e) for e in entries))
        except OSError as exc:
            # The entries in memory serve; the file is written again when the segment is
            # appended to, or rebuilt at the next start.
            log.warning("log spool %s: cannot write the rebuilt index: %s", segment.index_path, exc)
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
            log.warning("log spool %s: cutting %d bytes of a torn record", segment.path, segment.size - good)
            os.truncate(segment.path, good)
            segment.size = good
            kept = [e for e in segment.index if e[1] < good]
            if len(kept) < len(segment.index):
                # The index was ahead of the data (its entry for the torn record): count
                # again from the last entry that still holds.
                segment.index = kept
                self._recover_tail(segment)
                return
        self._next_seq = max(last_seq + 1, segment.first_seq)
        self._max_time = latest
        self._since_index = since_index if segment.index else self.index_every

    def _new_segment(self) -> _Segment:
        # Only in memory: the files are created by the first append to it.
        segment = _Segment(self._next_seq, self.directory / f"{self._next_seq:020d}.jsonl")
        self._segments.append(segment)
        self._since_index = self.index_every  # the first record of a segment is indexed
        return segment

    def _open_writer(self, segment: _Segment) -> None:
        """Open the last segment's files for appending, each ending where ``segment`` says."""
        data_fd = os.open(segment.path, _APPEND | os.O_WRONLY, 0o600)
        index_fd = None
        try:
            if os.fstat(data_fd).st_size > segment.size:
                os.ftruncate(data_fd, segment.size)  # bytes of a torn or refused record
            index_fd = os.open(segment.index_path, _APPEND | os.O_RDWR, 0o600)  # read to compare
            # The file must hold exactly the entries in memory: appended entries would
            # otherwise land after stale ones (from a cut record) or a torn one.
            expected = b"".join(_ENTRY.pack(*e) for e in segment.index)
            if os.fstat(index_fd).st_size != len(expected) or (
                expected and os.pread(index_fd, len(expected), 0) != expected
            ):
                os.ftruncate(index_fd, 0)
                _write_all(index_fd, expected)
        except BaseException:
            os.close(data_fd)
            if index_fd is not None:
                os.close(index_fd)
            raise
        self._data_fd, self._index_fd, self._index_bytes = data_fd, index_fd, len(expected)

    def _close_writer(self) -> None:
        for fd in (self._data_fd, self._index_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._data_fd = self._index_fd = None

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
        """Number, encode and write ``records``; return their encoded lines (for live readers).

        A batch the disk cannot take is refused whole: it returns ``[]``, the records get no
        seq, and ``lines_not_kept`` counts them.
        """
        with self._lock:
            lines: list[str] = []
            entries: list[tuple[int, int, float]] = []
            segment = self._segments[-1]
            offset = segment.size
            chunks: list[bytes] = []
            seq = self._next_seq
            max_time = self._max_time
            since_index = self._since_index
            for record in records:
                record.seq = seq
                seq += 1
                line = record.encode()
                data = line.encode("utf-8", "surrogateescape") + b"\n"
                if since_index >= self.index_every:
                    entries.append((record.seq, offset, max_time))
                    since_index = 0
                since_index += 1
                if record.time > max_time:
                    max_time = record.time
                offset += len(data)
                chunks.append(data)
                lines.append(line)
            blob = b"".join(chunks)
            problem = self._check_room(len(blob))
            out_of_space = True
            if problem is None:
                try:
                    self._write(segment, blob, entries)
                except OSError as exc:
                    out_of_space = exc.errno in _FULL_ERRNOS
                    problem = (
                        f"the disk holding {self.directory} is full ({exc.strerror})"
                        if out_of_space
                        else f"writing to {self.directory} fails ({exc.strerror or exc})"
                    )
            if problem is not None:
                for record in records:
                    record.seq = 0
                self._refuse(len(records), problem, out_of_space)
                return []
            # Written: only now does the batch count.
            self._next_seq = seq
            self._max_time = max_time
            self._since_index = since_index
            segment.index.extend(entries)
            segment.size = offset
            if self.problem is not None:
                self._resume()
            if segment.size >= self.segment_bytes:
                self._close_writer()
                self._new_segment()
            self._enforce_bound()
            return lines

    def _write(self, segment: _Segment, blob: bytes, entries: list[tuple[int, int, float]]) -> None:
        """Append a batch to the segment's files, or leave both as they were and raise."""
        try:
            if self._data_fd is None:
                self._open_writer(segment)
            assert self._data_fd is not None and self._index_fd is not None
            _write_all(self._data_fd, blob)
            if entries:
                packed = b"".join(_ENTRY.pack(*e) for e in entries)
                _write_all(self._index_fd, packed)
                self._index_bytes += len(packed)
        except OSError:
            self._cut_back(segment)
            raise

    def _cut_back(self, segment: _Segment) -> None:
        """Cut what a failed write left in the files (shrinking never needs free space)."""
        try:
            if self._data_fd is not None:
                os.ftruncate(self._data_fd, segment.size)
            if self._index_fd is not None:
                os.ftruncate(self._index_fd, self._index_bytes)
        except OSError:
            # Not even that: drop the files; reopening them for the next batch cuts them.
            self._close_writer()

    def _check_room(self, size: int) -> str | None:
        """Why a write of ``size`` bytes must not be tried now, or None if it may."""
        try:
            fs = os.statvfs(self.directory)
        except OSError:
            return None  # the write itself will tell
        free = fs.f_bavail * fs.f_frsize
        floor = self.reserve_bytes
        if floor is None:
            floor = min(RESERVE_BYTES, int(fs.f_blocks * fs.f_frsize * RESERVE_FRACTION))
        wanted = floor * RESUME_FLOORS if self.problem is not None else floor
        if free - size >= wanted:
            return None
        if self.problem is not None:
            return self.problem  # still full: keep the first reason
        return (
            f"the disk holding {self.directory} is nearly full ({_size(free)} free; the log "
            f"history leaves {_size(floor)} free, logs.reserve_mb)"
        )

    def _refuse(self, count: int, problem: str, out_of_space: bool) -> None:
        if self.problem is None:
            self.problem = problem
            self._lines_before_problem = self.lines_not_kept
            if out_of_space:
                advice = (
                    "until there is room again; writing resumes by itself then. Free disk "
                    f"space there, or lower logs.history_mb (now {_size(self.history_bytes)}) "
                    "so the history takes less"
                )
            else:
                advice = (
                    "while this lasts; every batch tries again. Check that disk (the kernel "
                    "log, whether it was remounted read-only)"
                )
            log.warning(
                "log history: %s. New log lines are dropped (and counted) instead of kept %s.",
                problem,
                advice,
            )
        self.lines_not_kept += count

    def _resume(self) -> None:
        log.warning(
            "log history: writing again; %d log lines were dropped while %s",
            self.lines_not_kept - self._lines_before_problem,
            self.problem,
        )
        self.problem = None

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
                got = self._read_segment(
                    segment.path, offset, sizes[position], next_seq, max_records - len(out)
                )
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


def _size(count: int) -> str:
    """``count`` bytes for people: 512 KiB, 63 MiB, 1.5 GiB."""
    if count >= 10 << 30:
        return f"{count / (1 << 30):.0f} GiB"
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GiB"
    if count >= 1 << 20:
        return f"{count >> 20} MiB"
    return f"{count >> 10} KiB"
