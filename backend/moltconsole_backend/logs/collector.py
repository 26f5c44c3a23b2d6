"""The log collector: runs the sources, writes the spool, and serves subscribers.

Sources run on threads of their own and call ``ingest`` with parsed batches. Under one lock a
batch is numbered and written to the spool, the sources' cursors are saved next to it, and the
encoded lines are appended to an in-memory ring that live followers read from. A follower
first reads history from the spool (by seq, time or tail), then follows the ring; one that lags
past the ring reads from disk, and one that falls more than LIVE_LAG_LIMIT records behind skips
ahead and is told how many it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import docker

from moltconsole.settings import Settings
from moltconsole_backend.logs.record import LEVELS, Record
from moltconsole_backend.logs.sources import ContainerLogReader, FilePosition, FileTailer
from moltconsole_backend.logs.spool import Spool, line_seq
from moltconsole_backend.sandbox.engine import connect
from moltconsole_backend.sandbox.manager import RUNNING_STATES, SandboxManager

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

    @classmethod
    def from_json(cls, data: object) -> LogQuery:
        """Validate a client's request object."""
        if not isinstance(data, dict):
            raise QueryError("send a JSON object such as {\"tail\": 100, \"follow\": true}")
        unknown = set(data) - {"tail", "since_seq", "since_time", "follow", "grep", "levels"}
        if unknown:
            raise QueryError(f"unknown field(s): {', '.join(sorted(unknown))}")

        def integer(name: str) -> int | None:
            value = data.get(name)
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise QueryError(f"{name!r} must be a non-negative integer or null")
            return value

        since_time = data.get("since_time")
        if since_time is not None and (not isinstance(since_time, int | float)
                                       or isinstance(since_time, bool)):
            raise QueryError("'since_time' must be epoch seconds (a number) or null")
        follow = data.get("follow", True)
        if not isinstance(follow, bool):
            raise QueryError("'follow' must be true or false")
        grep = data.get("grep")
        pattern = None
        if grep is not None:
            if not isinstance(grep, str):
                raise QueryError("'grep' must be a regular expression string or null")
            try:
                pattern = re.compile(grep)
            except re.error as exc:
                raise QueryError(f"'grep' is not a valid regular expression: {exc}") from None
        levels = data.get("levels")
        level_set = None
        if levels is not None:
            if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels):
                raise QueryError("'levels' must be a list of level names or null")
            bad = [v for v in levels if v not in (*LEVELS, "")]
            if bad:
                raise QueryError(f"unknown level(s) {bad}; use {', '.join(LEVELS)} or \"\"")
            level_set = frozenset(levels)
        return cls(tail=integer("tail"), since_seq=integer("since_seq"),
                   since_time=float(since_time) if since_time is not None else None,
                   follow=follow, grep=pattern, levels=level_set)

    @property
    def filtered(self) -> bool:
        """Whether records must be decoded to be matched."""
        return self.grep is not None or self.levels is not None or self.since_time is not None

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a decoded record passes the filters."""
        if self.levels is not None and record["level"] not in self.levels:
            return False
        if self.since_time is not None and self.since_seq is None and record["time"] < self.since_time:
            return False
        grep = self.grep
        return grep is None or bool(grep.search(record["message"]) or grep.search(record["subsystem"]))


class LogCollector:
    """Collects one sandbox's logs into its spool and streams them to subscribers."""

    def __init__(self, settings: Settings, manager: SandboxManager,
                 client_factory: Callable[[], docker.DockerClient] = connect) -> None:
        self.settings = settings
        self.manager = manager
        self.directory = settings.sandbox_dir / "log-spool"
        self.log_file = settings.sandbox_dir / "logs" / LOG_FILE
        self._client_factory = client_factory
        self.spool: Spool | None = None
        self._lock = threading.Lock()
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
            Spool, self.directory, segment_bytes=logs.segment_mb << 20,
            history_bytes=logs.history_mb << 20,
        )
        self._ring_first = self.spool.next_seq
        self._cursors = await asyncio.to_thread(self._read_cursors)
        await asyncio.to_thread(self._compact_cursors)
        file_pos = FilePosition(**self._cursors.get("file", {}))
        self._tailer = FileTailer(self.log_file, file_pos, max_line_bytes=logs.max_line_bytes,
                                  sink=self.ingest)
        tailer = self._tailer
        self._tasks = [
            self._loop.create_task(self._supervise("log file", tailer.run)),
            self._loop.create_task(self._follow_container()),
        ]

    async def stop(self) -> None:
        """Stop the sources and close the spool (the cursors are already saved)."""
        self._closing = True
        if self._tailer is not None:
            self._tailer.stop()
        if self._reader is not None:
            self._reader.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._lock:
            if self.spool is not None:
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
        """Start the journal afresh with the current cursors (atomically)."""
        if self._journal is not None:
            self._journal.close()
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._cursors) + "\n", encoding="utf-8")
        tmp.replace(self._cursor_path)
        self._journal = open(self._cursor_path, "ab")  # noqa: SIM115 - appended per batch

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
        try:
            while not self._closing:
                status = self.manager.status
                if status.state in RUNNING_STATES and status.container_id:
                    try:
                        if client is None:
                            client = await asyncio.to_thread(self._client_factory)
                        reader = ContainerLogReader(
                            client.api, status.container_id,
                            last_ns={int(k): int(v)
                                     for k, v in (self._cursors.get("docker") or {}).items()},
                            max_line_bytes=self.settings.logs.max_line_bytes, sink=self.ingest,
                        )
                        self._reader = reader
                        await _in_own_thread(reader.run)
                    except Exception as exc:  # engine gone, container removed: wait and retry
                        log.info("container log stream ended: %s", exc)
                        client = None
                    finally:
                        self._reader = None
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
    def ingest(self, records: list[Record], cursor: dict[str, Any]) -> None:
        """Accept a batch from a source: number it, write it, save the cursor, wake followers."""
        spool = self.spool
        assert spool is not None
        with self._lock:
            if self._closing:
                # Stopping: not taken, so the cursors stay put and a restart reads these again.
                return
            lines = spool.append(records)
            self._cursors.update(cursor)
            self._save_cursors()
            ring = self._ring
            ring.extend(lines)
            self._ring_bytes += sum(len(line) for line in lines)
            if len(ring) > RING_RECORDS or self._ring_bytes > RING_BYTES:
                # Keep the newer half: trimming stays rare instead of happening every batch.
                drop = max(len(ring) // 2, len(ring) - RING_RECORDS // 2)
                self._ring_bytes -= sum(len(line) for line in ring[:drop])
                del ring[:drop]
                self._ring_first += drop
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._wake)

    def _save_cursors(self) -> None:
        # Saved with every batch, after the spool write, so a restart neither repeats nor
        # skips lines (a crash between the two writes repeats at most that one batch).
        try:
            journal = self._journal
            if journal is None:
                return
            journal.write(json.dumps(self._cursors).encode() + b"\n")
            journal.flush()
            if journal.tell() > JOURNAL_BYTES:
                self._compact_cursors()
        except OSError as exc:
            log.warning("cannot save the log cursors: %s", exc)

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def _wait_past(self, seq: int) -> None:
        """Return once a record with seq >= ``seq`` exists."""
        spool = self.spool
        assert spool is not None
        while spool.next_seq <= seq:
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    # --- subscribers -----------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """The seq the next accepted record will get."""
        assert self.spool is not None
        return self.spool.next_seq

    async def stream(self, query: LogQuery) -> AsyncGenerator[str]:
        """The messages for one subscriber, JSON-encoded: batches, ``caught_up``, live batches."""
        spool = self.spool
        assert spool is not None
        cursor = await asyncio.to_thread(self._start_seq, query)
        head = spool.next_seq  # the history is what exists now; later records are live
        dropped = 0
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
            if recent:
                selected = self._select(query, recent)
                if selected or dropped:
                    yield _batch(selected, dropped)
                    dropped = 0
                    last_flush = time.monotonic()
                continue
            await self._wait_past(cursor)
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


def _batch(lines: list[str], dropped: int) -> str:
    # Records are already JSON: join them instead of decoding and encoding again.
    return '{"type":"batch","records":[' + ",".join(lines) + '],"dropped":' + str(dropped) + "}"


def _in_own_thread(func: Callable[[], Any]) -> asyncio.Future[None]:
    """Run a long blocking loop on a daemon thread (never on the shared executor)."""
    return SandboxManager._in_own_thread(functools.partial(_discard, func))


def _discard(func: Callable[[], Any]) -> None:
    func()
