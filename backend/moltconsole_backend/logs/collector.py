"""The log collector: runs the sources, writes the spool, and serves subscribers.

Sources run on threads of their own and call ``offer`` with parsed batches. Under one lock the
batch goes through the ``SourceMerger`` (merge.py), which drops the console's copy of each event
the log file also has and orders what is left within its short wait; a clock thread releases
console lines whose twin did not come in time. What the merger lets through is numbered and
written to the spool, the sources' cursors (as far as nothing before them is still held) are
saved next to it, and the encoded lines are appended to an in-memory ring that live followers
read from. A follower first reads history from the spool (by seq, time or tail), then follows
the ring; one that lags past the ring reads from disk, and one that falls more than
LIVE_LAG_LIMIT records behind skips ahead and is told how many it lost.

When the disk is full the spool refuses batches (see spool.py): the sources go on, their cursors
advance past the lines, and every follower is told how many it lost, in ``dropped`` like any
other loss and in ``disk_full`` as well, so a client can say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import docker

from moltconsole_backend.logs.merge import SourceMerger
from moltconsole_backend.logs.record import Record
from moltconsole_backend.logs.sources import ContainerLogReader, FilePosition, FileTailer
from moltconsole_backend.logs.spool import Spool, line_seq
from moltconsole_backend.sandbox.engine import connect
from moltconsole_backend.sandbox.manager import RUNNING_STATES, SandboxManager
from moltconsole_backend.settings import Settings
from moltconsole_shared.wire.logs import LOG_QUERY, SOURCE_NAMES
from moltconsole_shared.wire.schema import WireFormatError

log = logging.getLogger(__name__)
BATCH_RECORDS = 2000
BATCH_INTERVAL = 0.05
RING_RECORDS = 50_000  # recent lines kept in memory for live followers
RING_BYTES = 16 << 20
LIVE_LAG_LIMIT = 200_000  # a follower further behind than this skips ahead (counted)
LOG_FILE = "openclaw.log"
JOURNAL_BYTES = 1 << 20


class QueryError(ValueError):
    """A subscription request that cannot be served; the message says what to fix."""


@dataclass(frozen=True)
class LogQuery:
    """What a subscriber asked for. ``since_seq`` wins over ``since_time``; ``tail`` keeps the
    last N matching records of that range; no start at all means the whole history."""

    tail: int | None = None
    since_seq: int | None = None
    since_time: float | None = None
    follow: bool = True
    grep: re.Pattern[str] | None = None
    levels: frozenset[str] | None = None
    sources: frozenset[str] | None = None  # record sources: file, stdout, stderr

    @classmethod
    def from_json(cls, data: object) -> LogQuery:
        """Check a client's request (``moltconsole_shared.wire.logs.LogQuery``) and compile it."""
        try:
            wire = LOG_QUERY.read(data)
        except WireFormatError as exc:
            raise QueryError(str(exc)) from None
        pattern = None
        sources = wire.sources
        if wire.grep is not None:
            try:
                pattern = re.compile(wire.grep)
            except re.error as exc:
                raise QueryError(f"log query.grep is not a valid regular expression: {exc}") from None
        return cls(
            tail=wire.tail,
            since_seq=wire.since_seq,
            since_time=wire.since_time,
            follow=wire.follow,
            grep=pattern,
            levels=frozenset(wire.levels) if wire.levels is not None else None,
            sources=None if sources is None else frozenset(n for v in sources for n in SOURCE_NAMES[v]),
        )

    @property
    def filtered(self) -> bool:
        """Whether records must be decoded to be matched."""
        return (
            self.grep is not None
            or self.levels is not None
            or self.sources is not None
            or self.since_time is not None
        )

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a decoded record passes the filters."""
        if self.levels is not None and record["level"] not in self.levels:
            return False
        if self.sources is not None and record["source"] not in self.sources:
            return False
        if self.since_time is not None and self.since_seq is None and record["time"] < self.since_time:
            return False
        grep = self.grep
        return grep is None or bool(grep.search(record["message"]) or grep.search(record["subsystem"]))


class LogCollector:
    """Collects one sandbox's logs into its spool and streams them to subscribers."""

    def __init__(
        self,
        settings: Settings,
        manager: SandboxManager,
        client_factory: Callable[[], docker.DockerClient] = connect,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.directory = settings.sandbox_dir / "log-spool"
        self.log_file = settings.sandbox_dir / "logs" / LOG_FILE
        self._client_factory = client_factory
        self.spool: Spool | None = None
        self._lock = threading.Lock()
        self._merger = SourceMerger(hold=settings.logs.twin_wait)
        self._clock = threading.Condition(self._lock)  # wakes the merger's clock thread
        self._clock_thread: threading.Thread | None = None
        self._ring: list[str] = []
        self._ring_first = 1
        self._ring_bytes = 0
        self._cursors: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._reader: ContainerLogReader | None = None
        self._tailer: FileTailer | None = None
        self._closing = False
        self._journal: BinaryIO | None = None
        self._cursors_failing = False

    @property
    def _cursor_path(self) -> Path:
        # A journal: one JSON line of cursors per batch, appended (cheaper than a rename per
        # batch); the last complete line is the truth, and it is compacted now and then.
        return self.directory / "sources.cursor"

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool and start following the container and the log file."""
        self._loop = asyncio.get_running_loop()
        logs = self.settings.logs
        self.spool = await asyncio.to_thread(
            Spool,
            self.directory,
            segment_bytes=logs.segment_mb << 20,
            history_bytes=logs.history_mb << 20,
            reserve_bytes=None if logs.reserve_mb is None else logs.reserve_mb << 20,
        )
        self._ring_first = self.spool.next_seq
        self._cursors = await asyncio.to_thread(self._read_cursors)
        try:
            await asyncio.to_thread(self._compact_cursors)
        except OSError as exc:  # a full disk: tried again with the first batch
            self._cursor_trouble(exc)
        file_pos = FilePosition(**self._cursors.get("file", {}))
        self._tailer = FileTailer(
            self.log_file, file_pos, max_line_bytes=logs.max_line_bytes, sink=self.offer
        )
        tailer = self._tailer
        self._clock_thread = threading.Thread(target=self._run_clock, name="log-merge-clock", daemon=True)
        self._clock_thread.start()
        self._tasks = [
            self._loop.create_task(self._supervise("log file", tailer.run)),
            self._loop.create_task(self._follow_container()),
        ]

    async def stop(self) -> None:
        """Stop the sources, keep what the merger still holds, and close the spool."""
        with self._lock:
            self._closing = True
            self._clock.notify_all()
        if self._tailer is not None:
            self._tailer.stop()
        if self._reader is not None:
            self._reader.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._clock_thread is not None:
            await asyncio.to_thread(self._clock_thread.join, 5)
        with self._lock:
            if self.spool is not None:
                # Lines still waiting for a twin are kept alone rather than read again later.
                self._accept(*self._merger.drain())
                self.spool.close()
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _read_cursors(self) -> dict[str, Any]:
        try:
            lines = self._cursor_path.read_bytes().splitlines()
        except OSError:
            return {}
        for line in reversed(lines):
            try:
                data = json.loads(line)
            except ValueError:
                continue  # torn by a crash mid-write
            if isinstance(data, dict):
                return data
        return {}

    def _compact_cursors(self) -> None:
        """Start the journal afresh with the current cursors (atomically).

        On failure (a full disk) the old journal stays in use and the error is raised.
        """
        tmp = self._cursor_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self._cursors) + "\n", encoding="utf-8")
            tmp.replace(self._cursor_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        old = self._journal
        # Unbuffered: after a failed write no stale buffer may reach the file later.
        self._journal = open(self._cursor_path, "ab", buffering=0)  # noqa: SIM115 - per batch
        if old is not None:
            old.close()

    async def _supervise(self, name: str, run: Callable[[], Any]) -> None:
        """Run a blocking source on its own thread; restart it if it fails."""
        while not self._closing:
            try:
                await _in_own_thread(run)
                return
            except Exception as exc:  # a source must outlive any error it meets
                log.warning("%s source failed, retrying: %s", name, exc)
            await asyncio.sleep(1.0)

    async def _follow_container(self) -> None:
        """Attach to the container's output whenever it runs; re-attach after each restart."""
        queue = self.manager.subscribe()
        client: docker.DockerClient | None = None
        # Per stream, the last line read. Ahead of the saved cursor while the merger still
        # holds lines: a re-attach starts after what was read, or those lines would come twice.
        read: dict[int, int] = {}
        try:
            while not self._closing:
                status = self.manager.status
                if status.state in RUNNING_STATES and status.container_id:
                    reader: ContainerLogReader | None = None
                    try:
                        if client is None:
                            client = await asyncio.to_thread(self._client_factory)
                        last = {int(k): int(v) for k, v in (self._cursors.get("docker") or {}).items()}
                        for stream, ns in read.items():
                            last[stream] = max(last.get(stream, 0), ns)
                        reader = ContainerLogReader(
                            client.api,
                            status.container_id,
                            last_ns=last,
                            max_line_bytes=self.settings.logs.max_line_bytes,
                            sink=self.offer,
                        )
                        self._reader = reader
                        await _in_own_thread(reader.run)
                    except Exception as exc:  # engine gone, container removed: wait and retry
                        log.info("container log stream ended: %s", exc)
                        client = None
                    finally:
                        self._reader = None
                        if reader is not None:
                            read.update(reader.last_ns)
                # The stream ends when the container stops; a status change says when to look
                # again (the timeout covers a restart that happened before we noticed).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), 2.0)
        finally:
            self.manager.unsubscribe(queue)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()

    # --- ingestion (any thread) ------------------------------------------------------------
    def offer(self, records: list[Record], cursor: dict[str, Any]) -> None:
        """A source's batch: merged with the other source's, then kept (see ``ingest``)."""
        with self._lock:
            if self._closing:
                # Stopping: not taken, so the cursors stay put and a restart reads these again.
                return
            kept, cursors = self._merger.add(records, cursor, time.monotonic())
            self._accept(kept, cursors)
            if self._merger.next_deadline() is not None:
                self._clock.notify()
        if kept:
            self._wake_loop()

    def ingest(self, records: list[Record], cursor: dict[str, Any]) -> None:
        """Keep a batch as it is: number it, write it, save the cursor, wake followers."""
        with self._lock:
            if self._closing:
                return
            self._accept(records, cursor)
        self._wake_loop()

    def _accept(self, records: list[Record], cursor: dict[str, Any]) -> None:
        """Write ``records`` and save ``cursor``; the lock is held."""
        spool = self.spool
        assert spool is not None
        if records:
            # An empty list back means the disk did not take the batch: the spool counted it,
            # and the cursors still move on (the lines are consumed, not kept).
            lines = spool.append(records)
            ring = self._ring
            ring.extend(lines)
            self._ring_bytes += sum(len(line) for line in lines)
            if len(ring) > RING_RECORDS or self._ring_bytes > RING_BYTES:
                # Keep the newer half: trimming stays rare instead of happening every batch.
                drop = max(len(ring) // 2, len(ring) - RING_RECORDS // 2)
                self._ring_bytes -= sum(len(line) for line in ring[:drop])
                del ring[:drop]
                self._ring_first += drop
        if cursor:
            self._cursors.update(cursor)
            self._save_cursors()

    def _run_clock(self) -> None:
        """Release console lines whose twin did not come in time (a thread of its own)."""
        with self._clock:
            while not self._closing:
                deadline = self._merger.next_deadline()
                if deadline is None:
                    self._clock.wait()
                    continue
                if deadline > time.monotonic():
                    self._clock.wait(deadline - time.monotonic())
                    continue
                kept, cursors = self._merger.release(time.monotonic())
                self._accept(kept, cursors)
                if kept:
                    self._wake_loop()

    def _wake_loop(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._wake)

    def _save_cursors(self) -> None:
        # Saved with every batch, after the spool write, so a restart neither repeats nor
        # skips lines (a crash between the two writes repeats at most that one batch).
        journal = self._journal
        try:
            if journal is None:
                self._compact_cursors()  # could not be opened yet (a full disk at start)
                self._cursor_trouble(None)
                return
            # The file's size, not tell(): after a short write the position is past the end.
            end = os.fstat(journal.fileno()).st_size
            try:
                data = json.dumps(self._cursors).encode() + b"\n"
                while data:
                    data = data[journal.write(data) or 0 :]
            except OSError:
                journal.truncate(end)  # no torn line in front of the next one
                journal.seek(end)
                raise
            if end > JOURNAL_BYTES:
                self._compact_cursors()
            self._cursor_trouble(None)
        except OSError as exc:
            self._cursor_trouble(exc)

    def _cursor_trouble(self, exc: OSError | None) -> None:
        """Warn once when the cursors cannot be saved (a restart would repeat lines), and
        once more when they can again, rather than with every batch."""
        if exc is not None and not self._cursors_failing:
            log.warning("cannot save the log cursors (a backend restart will show some lines again): %s", exc)
        elif exc is None and self._cursors_failing:
            log.warning("saving the log cursors again")
        self._cursors_failing = exc is not None

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def _wait_past(self, seq: int, not_kept: int) -> None:
        """Return once a record with seq >= ``seq`` exists, or more lines than ``not_kept``
        were refused by the spool."""
        spool = self.spool
        assert spool is not None
        while spool.next_seq <= seq and spool.lines_not_kept == not_kept:
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    # --- subscribers -----------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """The seq the next accepted record will get."""
        assert self.spool is not None
        return self.spool.next_seq

    @property
    def lines_not_kept(self) -> int:
        """Lines dropped since the backend started because the disk did not take them."""
        return self.spool.lines_not_kept if self.spool is not None else 0

    @property
    def disk_problem(self) -> str | None:
        """Why lines are being dropped right now (a full disk), or None while they are kept."""
        return self.spool.problem if self.spool is not None else None

    async def stream(self, query: LogQuery) -> AsyncGenerator[str]:
        """The messages for one subscriber, JSON-encoded: batches, ``caught_up``, live batches."""
        spool = self.spool
        assert spool is not None
        cursor = await asyncio.to_thread(self._start_seq, query)
        head = spool.next_seq  # the history is what exists now; later records are live
        dropped = 0
        not_kept = spool.lines_not_kept  # what the disk refused before this subscriber came
        disk_full = 0
        last_flush = 0.0
        live = False
        while True:
            limit = BATCH_RECORDS if live else min(BATCH_RECORDS, head - cursor)
            if not live and limit <= 0:
                yield '{"type":"caught_up"}'
                if not query.follow:
                    return
                live = True
                continue
            with self._lock:
                first = self._ring_first
                start = cursor - first
                recent = self._ring[start : start + limit] if start >= 0 else None
            if recent is None and live and spool.next_seq - cursor > LIVE_LAG_LIMIT:
                # Too far behind to ever catch up: skip to what memory holds, and say so.
                dropped += first - cursor
                cursor = first
                continue
            if recent is None:
                # Older than the ring (history, or a follower lagging a little): from disk.
                lines, after = await asyncio.to_thread(spool.read, cursor, limit)
                if not lines:  # nothing left on disk before the head
                    cursor = head
                    continue
                dropped += line_seq(lines[0]) - cursor  # dropped by the size bound meanwhile
                cursor = after
                recent = [line.decode("utf-8", "surrogateescape") for line in lines]
            else:
                cursor += len(recent)
            refused = spool.lines_not_kept - not_kept
            if refused:
                not_kept += refused
                disk_full += refused
                dropped += refused
            if recent or refused:
                selected = self._select(query, recent)
                if selected or dropped:
                    yield _batch(selected, dropped, disk_full)
                    dropped = disk_full = 0
                    last_flush = time.monotonic()
                continue
            await self._wait_past(cursor, not_kept)
            # Batch what arrives within the flush interval rather than send it line by line.
            pause = last_flush + BATCH_INTERVAL - time.monotonic()
            if pause > 0 and self.next_seq - cursor < BATCH_RECORDS:
                await asyncio.sleep(pause)

    def _select(self, query: LogQuery, lines: list[str]) -> list[str]:
        if not query.filtered:
            return lines
        return [line for line in lines if query.matches(json.loads(line))]

    def _start_seq(self, query: LogQuery) -> int:
        """Blocking: the first seq to read for ``query``."""
        spool = self.spool
        assert spool is not None
        if query.since_seq is not None:
            start = query.since_seq
        elif query.since_time is not None:
            start = spool.seq_for_time(query.since_time)
        elif query.tail is not None:
            start = spool.first_seq
        else:
            return spool.first_seq
        if query.tail is None:
            return start
        return self._tail_start(query, max(start, spool.first_seq))

    def _tail_start(self, query: LogQuery, floor: int) -> int:
        """The seq of the ``query.tail``-th matching record from the end (not before ``floor``)."""
        spool = self.spool
        assert spool is not None and query.tail is not None
        want = query.tail
        end = spool.next_seq
        if want == 0:
            return end
        if not query.filtered:
            return max(floor, end - want)
        window = 20_000
        found: list[int] = []
        high = end
        while high > floor and len(found) < want:
            low = max(floor, high - window)
            seqs: list[int] = []
            cursor = low
            while cursor < high:
                lines, after = spool.read(cursor, min(BATCH_RECORDS, high - cursor))
                if not lines:
                    break
                for line in lines:
                    record = json.loads(line)
                    if record["seq"] < high and query.matches(record):
                        seqs.append(record["seq"])
                cursor = after
            found = seqs + found
            high = low
        return found[-want] if len(found) >= want else floor


def _batch(lines: list[str], dropped: int, disk_full: int = 0) -> str:
    # Records are already JSON: join them instead of decoding and encoding again.
    # ``disk_full`` (only when not 0) is the part of ``dropped`` the disk did not take.
    tail = f',"disk_full":{disk_full}}}' if disk_full else "}"
    return '{"type":"batch","records":[' + ",".join(lines) + '],"dropped":' + str(dropped) + tail


def _in_own_thread(func: Callable[[], Any]) -> asyncio.Future[None]:
    """Run a long blocking loop on a daemon thread (never on the shared executor)."""
    return SandboxManager._in_own_thread(functools.partial(_discard, func))


def _discard(func: Callable[[], Any]) -> None:
    func()
