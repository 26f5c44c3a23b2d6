"""The ledger: every request the gateway served, what it cost, and the reports over them.

One SQLite file in WAL mode (layout in ``ledger_schema``, reports in ``ledger_queries``).

Writing never blocks the caller: ``record()`` appends to an in-memory queue and returns; one
writer thread takes up to ``batch_size`` records at a time and commits them, with their attempts
and the hourly rollups, in a single transaction. The writer lingers ``linger_s`` after the first
record of a batch before committing (``flush()`` and ``close()`` cut that short): under load,
requests end in bursts, and one commit per burst rather than per request keeps the writer from
competing with the gateway for the GIL while it relays the next ones. A record is removed from
the queue only after its transaction committed, so a failing disk (full, locked) keeps the rows
queued and the writer retries with backoff; ``close()`` returns only once the queue is empty.
Records are idempotent by id: the first write of an id wins and later ones are ignored. A record
that can never be stored (a malformed value) is logged as an error with its id and skipped, so
it cannot hold up the records behind it.

Durability is SQLite's ``synchronous=NORMAL`` in WAL mode: a committed row survives the process
crashing; a power cut may lose the last few commits.

Reading is synchronous and thread-safe; each thread gets its own read-only connection, and
each report runs in one read snapshot, so it never sees half a batch. Call it through
``asyncio.to_thread`` from async code.

Times are epoch seconds. Local days ("today", ``by_day``, month-to-date) are in ``tz``, or, when
it is None, in the process's local zone at the time of the call (``TZ`` + ``time.tzset()``).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import tzinfo
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.reports import DayUsage, ModelUsage, SeriesPoint, Summary

from . import ledger_queries as q
from .ledger_schema import (
    INSERT_ATTEMPT,
    INSERT_REQUEST,
    UPSERT_LATENCY,
    UPSERT_USAGE,
    LatencyKey,
    LedgerVersionError,
    UsageKey,
    add_to_rollups,
    attempt_row,
    connect,
    create_file,
    latency_rows,
    migrate,
    request_row,
    usage_rows,
)

log = logging.getLogger(__name__)

Listener = Callable[[RequestRecord], None]
# Errors that say a record itself cannot be stored; anything else is the disk's fault and retried.
_BAD_RECORD = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
)
_ID_CHUNK = 500  # ids per "id IN (...)" lookup, well under SQLite's variable limit


class Ledger:
    """The gateway's record of requests and their cost, in one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        *,
        tz: tzinfo | None = None,
        batch_size: int = 10_000,
        linger_s: float = 0.2,
        busy_timeout_s: float = 5.0,
        retry_max_s: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.tz = tz
        self.batch_size = batch_size
        self.linger_s = linger_s
        self._flushers = 0  # flush() calls waiting: the writer stops lingering
        self.busy_timeout_s = busy_timeout_s
        self.retry_max_s = retry_max_s
        self.rejected = 0  # records skipped because they could never be stored (each logged)
        self._cond = threading.Condition()
        self._queue: deque[RequestRecord] = deque()
        self._enqueued = 0
        self._done = 0  # committed or rejected
        self._closing = False
        self._writer: threading.Thread | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._meta_conn: sqlite3.Connection | None = None
        self._meta_lock = threading.Lock()
        self._retry_now = threading.Event()
        self._listeners: tuple[Listener, ...] = ()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._generation = 0  # bumped on close, so threads drop their old read connections

    # --- lifecycle ----------------------------------------------------------------------------
    def open(self) -> None:
        """Create or migrate the file and start the writer thread (blocking; call once)."""
        with self._cond:
            if self._writer is not None:
                raise RuntimeError("the ledger is already open")
        create_file(self.path)
        conn = connect(self.path, busy_timeout_s=self.busy_timeout_s)
        try:
            migrate(conn)
            # Checkpoint every 16 MiB of WAL rather than SQLite's 4 MiB: a batch dirties pages
            # all over the id and cost indexes, and each checkpoint copies and syncs them.
            conn.execute("PRAGMA wal_autocheckpoint = 4096")
            conn.execute(f"PRAGMA journal_size_limit = {64 << 20}")  # shrink the WAL after a backlog
            conn.execute("PRAGMA cache_size = -65536")
            meta = connect(self.path, busy_timeout_s=self.busy_timeout_s)
        except BaseException:
            conn.close()
            raise
        with self._cond:
            self._write_conn, self._meta_conn = conn, meta
            self._closing = False
            self._writer = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
            self._writer.start()

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then close the file.

        Raises TimeoutError when the queue could not be written within ``timeout`` (the disk is
        failing); the ledger then keeps retrying and ``close()`` may be called again.
        """
        with self._cond:
            writer = self._writer
            if writer is None:
                return
            self._closing = True
            self._cond.notify_all()
        self._retry_now.set()
        writer.join(timeout)
        if writer.is_alive():
            raise TimeoutError(
                f"{self.pending} ledger records are not written yet; the writer keeps retrying"
            )
        with self._cond:
            self._writer = None
            self._generation += 1
        assert self._write_conn is not None and self._meta_conn is not None
        with contextlib.suppress(sqlite3.Error):  # only tidies the WAL file; the data is safe
            self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._write_conn.close()
        with self._meta_lock:
            self._meta_conn.close()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def __enter__(self) -> Self:
        """Open (unless already open); the block's end closes."""
        if self._writer is None:
            self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------------
    def record(self, request: RequestRecord) -> None:
        """Queue one request for writing and return at once (safe from an event loop).

        The ledger keeps the object: do not change it afterwards.
        """
        with self._cond:
            self._check_accepting()
            self._queue.append(request)
            self._enqueued += 1
            if len(self._queue) == 1 or len(self._queue) == self.batch_size:
                self._cond.notify_all()  # otherwise the writer is lingering and will come back

    def record_many(self, requests: Iterable[RequestRecord]) -> None:
        """Queue many requests at once (an import)."""
        with self._cond:
            self._check_accepting()
            before = len(self._queue)
            self._queue.extend(requests)
            self._enqueued += len(self._queue) - before
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued before this call is committed; TimeoutError if not."""
        with self._cond:
            target = self._enqueued
            self._flushers += 1
            self._cond.notify_all()
            try:
                if not self._cond.wait_for(lambda: self._done >= target, timeout):
                    raise TimeoutError(f"{target - self._done} ledger records are not written yet")
            finally:
                self._flushers -= 1

    @property
    def pending(self) -> int:
        """Records queued and not yet committed."""
        with self._cond:
            return self._enqueued - self._done

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(record)`` on the writer thread after each new record is committed.

        Keep it short (e.g. ``loop.call_soon_threadsafe``): it delays the writer. A record
        recorded again under an id already stored is not announced again.
        """
        with self._cond:
            self._listeners = (*self._listeners, callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback`` (no error if it was not listening)."""
        with self._cond:
            self._listeners = tuple(c for c in self._listeners if c != callback)

    def _check_accepting(self) -> None:
        if self._writer is None or self._closing:
            raise RuntimeError("the ledger is not open; no record can be queued")

    def _run(self) -> None:
        delay = 0.0
        failing_since: float | None = None
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if self.linger_s > 0:
                    self._cond.wait_for(
                        lambda: self._closing or self._flushers or len(self._queue) >= self.batch_size,
                        self.linger_s,
                    )
                # Peek only: a record leaves the queue once it is committed.
                batch = list(islice(self._queue, self.batch_size))
            try:
                written, rejected = self._write(batch)
            except Exception as exc:
                delay = min(max(delay * 2, 0.05), self.retry_max_s)
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "the ledger cannot write to %s (%s); %d records stay queued in "
                        "memory and are retried every %.0f s at most",
                        self.path,
                        exc,
                        self.pending,
                        self.retry_max_s,
                    )
                else:
                    log.debug("ledger write retry failed: %s", exc)
                self._retry_now.wait(delay)
                self._retry_now.clear()
                continue
            if failing_since is not None:
                log.warning(
                    "the ledger writes again after %.1f s; nothing was lost", time.monotonic() - failing_since
                )
                failing_since, delay = None, 0.0
            self._announce(written)
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self._done += len(batch)
                self.rejected += rejected
                self._cond.notify_all()

    def _write(self, batch: list[RequestRecord]) -> tuple[list[RequestRecord], int]:
        """Commit a batch; returns the records new to the ledger and how many were rejected."""
        with contextlib.suppress(*_BAD_RECORD):
            return self._commit(batch), 0
        # Some record in the batch is malformed: find it by writing one at a time. If the disk
        # fails meanwhile, the batch is retried and the records written here are skipped by id,
        # so they are announced here, right after their own commit.
        rejected = 0
        for record in batch:
            try:
                self._announce(self._commit([record]))
            except _BAD_RECORD as exc:
                rejected += 1
                log.error(
                    "the ledger skips request %r, which cannot be stored: %r",
                    getattr(record, "id", None),
                    exc,
                )
        return [], rejected

    def _announce(self, records: list[RequestRecord]) -> None:
        for record in records:
            for listener in self._listeners:
                try:
                    listener(record)
                except Exception:
                    log.exception("a ledger listener failed on %s", record.id)

    def _commit(self, batch: list[RequestRecord]) -> list[RequestRecord]:
        conn = self._write_conn
        assert conn is not None
        unique: dict[str, tuple[RequestRecord, list[Any]]] = {}
        for r in batch:  # convert outside the transaction, to hold the write lock briefly
            if r.id not in unique:
                unique[r.id] = (r, request_row(r))
        ids = list(unique)
        conn.execute("BEGIN IMMEDIATE")
        try:
            existing: set[str] = set()
            for i in range(0, len(ids), _ID_CHUNK):
                chunk = ids[i : i + _ID_CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT id FROM requests WHERE id IN ({marks})"  # noqa: S608 - only ?s
                existing.update(row[0] for row in conn.execute(sql, chunk))
            new = [(r, row) for key, (r, row) in unique.items() if key not in existing]
            # Number the rows here (only this thread inserts), so attempts can refer to them
            # and are appended in order rather than scattered by a random id.
            seq = conn.execute("SELECT coalesce(max(seq), 0) FROM requests").fetchone()[0]
            attempts = []
            for r, row in new:
                seq += 1
                row[0] = seq
                attempts += [attempt_row(seq, a) for a in r.attempts]
            usage: dict[UsageKey, list[int]] = {}
            latency: dict[LatencyKey, int] = {}
            for r, _ in new:
                add_to_rollups(r, usage, latency)
            conn.executemany(INSERT_REQUEST, [row for _, row in new])
            conn.executemany(INSERT_ATTEMPT, attempts)
            conn.executemany(UPSERT_USAGE, usage_rows(usage))
            conn.executemany(UPSERT_LATENCY, latency_rows(latency))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [r for r, _ in new]

    # --- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A value importers stored, or None."""
        with self._snapshot() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a value, committed on return (independent of queued records: flush() first
        when the value must not get ahead of them)."""
        with self._meta_lock:
            conn = self._meta_conn
            if conn is None or self._writer is None:
                raise RuntimeError("the ledger is not open")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- reading ------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None or local.generation != self._generation:
            if self._writer is None:
                raise RuntimeError("the ledger is not open")
            conn = connect(self.path, busy_timeout_s=self.busy_timeout_s, readonly=True)
            local.conn, local.generation = conn, self._generation
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def summary(
        self, now: float | None = None, window_seconds: float = 86400, sandbox: str | None = None
    ) -> Summary:
        """Spend today (since local midnight), over 7 and 30 rolling days and month to date;
        the burn rate over the last hour; and over the last ``window_seconds``: requests,
        errors, unpriced requests, p50/p95 of duration and time to first byte (completed
        requests only), spend of heartbeat/background requests, and spend in clock hours
        without a user-triggered request. Every window ends at ``now`` inclusive. Budget
        fields are left None for the caller."""
        now = time.time() if now is None else now
        with self._snapshot() as conn:
            return q.summary(conn, now, window_seconds, sandbox, self.tz)

    def spend_nanos(self, since: float, sandbox: str | None = None) -> int:
        """Priced spend of requests started at or after ``since`` (for budgets)."""
        with self._snapshot() as conn:
            return q.spend_nanos(conn, since, sandbox)

    def spend_totals(
        self, windows: Sequence[tuple[float, str | None]], ids: Callable[[], Collection[str]]
    ) -> tuple[list[int], set[str]]:
        """For budgets, in one snapshot: the priced spend since each (since, sandbox), and which
        of the request ids ``ids()`` returns are stored. ``ids`` is called once the snapshot is
        taken, so a row written later is never among the ids found nor in the totals."""
        with self._snapshot() as conn:
            totals = [q.spend_nanos(conn, since, sandbox) for since, sandbox in windows]
            wanted = list(ids())
            found: set[str] = set()
            for at in range(0, len(wanted), 500):
                part = wanted[at : at + 500]
                marks = ",".join("?" * len(part))
                rows = conn.execute(f"SELECT id FROM requests WHERE id IN ({marks})", part)  # noqa: S608
                found.update(row[0] for row in rows)
        return totals, found

    def by_model(
        self, since: float, until: float | None = None, sandbox: str | None = None
    ) -> list[ModelUsage]:
        """Usage per (provider, model) in [since, until) (until None: now), costliest first."""
        until = time.time() if until is None else until
        with self._snapshot() as conn:
            return q.by_model(conn, since, until, sandbox)

    def by_day(self, since: float, until: float | None = None, sandbox: str | None = None) -> list[DayUsage]:
        """Usage per local calendar day in [since, until) (until None: now), oldest first; days
        without requests are left out. The first and last day count only their part in range."""
        until = time.time() if until is None else until
        with self._snapshot() as conn:
            return q.by_day(conn, since, until, sandbox, self.tz)

    def series(
        self, since: float, until: float, buckets: int, sandbox: str | None = None
    ) -> list[SeriesPoint]:
        """Spend and requests in ``buckets`` equal buckets over [since, until), zero-filled."""
        with self._snapshot() as conn:
            return q.series(conn, since, until, buckets, sandbox)

    def top(self, since: float, limit: int = 20, sandbox: str | None = None) -> list[RequestRecord]:
        """The most expensive priced requests since ``since`` (attempts left empty; see get)."""
        with self._snapshot() as conn:
            return q.top(conn, since, limit, sandbox)

    def errors(self, since: float, limit: int = 50, sandbox: str | None = None) -> list[RequestRecord]:
        """Requests with outcome "error" since ``since``, newest first (attempts left empty)."""
        with self._snapshot() as conn:
            return q.errors(conn, since, limit, sandbox)

    def recent(
        self, limit: int = 50, before: str | float | None = None, sandbox: str | None = None
    ) -> list[RequestRecord]:
        """The newest requests first (attempts left empty). ``before`` pages backwards: a
        request id (rows after it in this order) or epoch seconds (rows started earlier)."""
        with self._snapshot() as conn:
            return q.recent(conn, limit, before, sandbox)

    def get(self, request_id: str) -> RequestRecord | None:
        """One request with its attempts, or None."""
        with self._snapshot() as conn:
            return q.get(conn, request_id)

    def count(self) -> int:
        """Requests in the ledger (committed ones; see ``pending`` for the queue)."""
        with self._snapshot() as conn:
            return q.count(conn)


__all__ = ["Ledger", "LedgerVersionError", "Listener"]
