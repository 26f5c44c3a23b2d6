"""The ledger's SQLite layout: tables, migrations, file permissions, and rows <-> records.

Tables (schema version 1, kept in ``PRAGMA user_version``)::

    requests        one row per RequestRecord (unique ``id``, numbered by ``seq`` in write
                    order); usage and cost flattened; cost_nanos NULL = unpriced
    attempts        one row per AttemptRecord, keyed (request_seq, attempt), FK to requests:
                    keyed by the write-order number rather than the random id, so inserts
                    append instead of touching pages all over the table
    usage_hourly    rollup per (hour, sandbox, provider, model): counts, token and money sums
    latency_hourly  rollup per (metric, sandbox, hour, bin): log-scale histograms of duration
                    and time to first byte of completed requests, each also under the
                    pseudo-sandbox "*" (sandbox names cannot contain it), so a report over
                    every sandbox reads one histogram per hour instead of one per sandbox

Indexes: ``requests(started_at, sandbox, cost_nanos)`` (time ranges, the live tail; covers the
chart's reads of cut hours), ``requests(cost_nanos, started_at, sandbox)`` for priced rows
(most expensive first) and ``requests(started_at)`` for errors only.
    meta            key/value strings for importers (e.g. the Cloudflare cursor)

``hour`` is ``floor(epoch seconds / 3600)``: UTC clock hours, so every time zone whose offset is
a whole number of hours has its local days made of whole rollup hours. The rollups are written
in the same transaction as the rows they count, so they are never out of step.
"""
# ruff: noqa: S608 - SQL text is built only from this module's constant names; values are ? parameters

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from moltconsole_shared.wire.records import (
    Api,
    AttemptRecord,
    Cost,
    Outcome,
    RequestRecord,
    Trigger,
    Usage,
    UsageSource,
)

SCHEMA_VERSION = 1
HOUR = 3600

# Latency histograms: bin 0 holds [0, 1) ms, bin b >= 1 holds [RATIO**(b-1), RATIO**b) ms; the
# last bin takes everything longer. A percentile is reported as the bin's geometric middle, so
# it is within sqrt(RATIO) - 1 (4.9 %) of the exact value, or 0.5 ms below 1 ms.
BIN_RATIO = 1.1
MAX_BIN = 220  # 1.1**219 ms is about 14 days
_LOG_RATIO = math.log(BIN_RATIO)
METRIC_DURATION = 0
METRIC_TTFB = 1

# The latency histograms' name for "every sandbox".
ALL_SANDBOXES = "*"
# Request triggers whose spend counts as "background" in the summary.
BACKGROUND_TRIGGERS = ("heartbeat", "background")


def hour_of(epoch: float) -> int:
    """The rollup hour of an instant (float floor division is exact, unlike floor(x / 3600))."""
    return int(epoch // HOUR)


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency in milliseconds."""
    if not ms >= 1.0:  # also catches NaN and negatives
        return 0
    return min(MAX_BIN, 1 + int(math.log(ms) / _LOG_RATIO))


def bin_value(b: int) -> float:
    """The value a bin stands for: the geometric middle of its bounds."""
    if b <= 0:
        return 0.5
    return float(BIN_RATIO ** (b - 0.5))


# --- DDL and migrations ------------------------------------------------------------------------
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
_TOKEN_DDL = ",\n".join(f"    {name} INTEGER NOT NULL" for name in _TOKENS)

_V1 = f"""
CREATE TABLE requests (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    started_at REAL NOT NULL,
    sandbox TEXT NOT NULL,
    api TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error_message TEXT,
    ttfb_ms REAL,
    duration_ms REAL NOT NULL,
    overhead_ms REAL,
{_TOKEN_DDL},
    usage_source TEXT NOT NULL,
    cost_nanos INTEGER,
    cache_savings_nanos INTEGER NOT NULL,
    pricing_version TEXT NOT NULL,
    long_context INTEGER NOT NULL,
    triggered_by TEXT NOT NULL,
    origin TEXT NOT NULL
);
CREATE INDEX requests_by_time ON requests (started_at, sandbox, cost_nanos);
CREATE INDEX requests_by_cost ON requests (cost_nanos, started_at, sandbox)
    WHERE cost_nanos IS NOT NULL;
CREATE INDEX requests_errors_by_time ON requests (started_at) WHERE outcome = 'error';

CREATE TABLE attempts (
    request_seq INTEGER NOT NULL REFERENCES requests (seq) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_at REAL NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_kind TEXT,
    ttfb_ms REAL,
    duration_ms REAL NOT NULL,
{_TOKEN_DDL},
    usage_source TEXT NOT NULL,
    cost_nanos INTEGER,
    PRIMARY KEY (request_seq, attempt)
) WITHOUT ROWID;

CREATE TABLE usage_hourly (
    hour INTEGER NOT NULL,
    sandbox TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    user_requests INTEGER NOT NULL,
{_TOKEN_DDL},
    cost_nanos INTEGER NOT NULL,
    cache_savings_nanos INTEGER NOT NULL,
    background_nanos INTEGER NOT NULL,
    PRIMARY KEY (hour, sandbox, provider, model)
) WITHOUT ROWID;

CREATE TABLE latency_hourly (
    metric INTEGER NOT NULL,
    sandbox TEXT NOT NULL,
    hour INTEGER NOT NULL,
    bin INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (metric, sandbox, hour, bin)
) WITHOUT ROWID;

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""

# MIGRATIONS[i] takes a ledger from version i to version i + 1. A new version appends a step
# (ALTER TABLE, or rebuilding a rollup from the requests table); old steps never change.
MIGRATIONS: tuple[str, ...] = (_V1,)
assert len(MIGRATIONS) == SCHEMA_VERSION


class LedgerVersionError(RuntimeError):
    """The ledger file was written by a newer moltconsole than this one."""


def create_file(path: Path) -> None:
    """Create the ledger's directory (0700) and an empty file (0600) unless they exist."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def connect(path: Path, *, busy_timeout_s: float, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the ledger's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32768")  # 32 MiB per connection
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version the file had before."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"the ledger needs WAL journaling, SQLite gave {mode!r}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise LedgerVersionError(
                f"the ledger has schema version {found}, newer than this moltconsole's "
                f"{SCHEMA_VERSION}; upgrade moltconsole or point ledger_path elsewhere"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    # executescript() would commit our transaction; split on ';' instead (none in the DDL bodies).
    return [s.strip() for s in script.split(";") if s.strip()]


# --- rows <-> records --------------------------------------------------------------------------
REQUEST_COLUMNS = (
    "seq",
    "id",
    "started_at",
    "sandbox",
    "api",
    "provider",
    "model",
    "requested_model",
    "stream",
    "status",
    "outcome",
    "error_kind",
    "error_message",
    "ttfb_ms",
    "duration_ms",
    "overhead_ms",
    *_TOKENS,
    "usage_source",
    "cost_nanos",
    "cache_savings_nanos",
    "pricing_version",
    "long_context",
    "triggered_by",
    "origin",
)
ATTEMPT_COLUMNS = (
    "request_seq",
    "attempt",
    "started_at",
    "provider",
    "model",
    "status",
    "error_kind",
    "ttfb_ms",
    "duration_ms",
    *_TOKENS,
    "usage_source",
    "cost_nanos",
)
INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})"
)
INSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})"
)
SELECT_REQUEST = f"SELECT {', '.join(REQUEST_COLUMNS[1:])} FROM requests"
SELECT_ATTEMPTS = (
    f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts "
    "WHERE request_seq = (SELECT seq FROM requests WHERE id = ?) ORDER BY attempt"
)


def _usage_values(u: Usage) -> tuple[int, ...]:
    return (
        int(u.input_tokens),
        int(u.output_tokens),
        int(u.cache_read_tokens),
        int(u.cache_write_5m_tokens),
        int(u.cache_write_1h_tokens),
        int(u.reasoning_tokens),
    )


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def request_row(r: RequestRecord) -> list[Any]:
    """The requests-table row of a record, seq left None (TypeError/ValueError if malformed)."""
    return [
        None,
        str(r.id),
        float(r.started_at),
        str(r.sandbox),
        str(r.api),
        str(r.provider),
        str(r.model),
        str(r.requested_model),
        int(bool(r.stream)),
        int(r.status),
        str(r.outcome),
        r.error_kind,
        r.error_message,
        _opt_float(r.ttfb_ms),
        float(r.duration_ms),
        _opt_float(r.overhead_ms),
        *_usage_values(r.usage),
        str(r.usage.source),
        _opt_int(r.cost.total_nanos),
        int(r.cost.cache_savings_nanos),
        str(r.cost.pricing_version),
        int(bool(r.cost.long_context)),
        str(r.trigger),
        str(r.origin),
    ]


def attempt_row(request_seq: int, a: AttemptRecord) -> tuple[Any, ...]:
    """The attempts-table row of one attempt of a request."""
    return (
        request_seq,
        int(a.attempt),
        float(a.started_at),
        str(a.provider),
        str(a.model),
        int(a.status),
        a.error_kind,
        _opt_float(a.ttfb_ms),
        float(a.duration_ms),
        *_usage_values(a.usage),
        str(a.usage.source),
        _opt_int(a.cost_nanos),
    )


def _usage(values: Sequence[Any], source: Any) -> Usage:
    return Usage(
        input_tokens=values[0],
        output_tokens=values[1],
        cache_read_tokens=values[2],
        cache_write_5m_tokens=values[3],
        cache_write_1h_tokens=values[4],
        reasoning_tokens=values[5],
        source=cast(UsageSource, source),
    )


def request_from_row(row: Sequence[Any]) -> RequestRecord:
    """A RequestRecord from a SELECT_REQUEST row (attempts left empty)."""
    return RequestRecord(
        id=row[0],
        started_at=row[1],
        sandbox=row[2],
        api=cast(Api, row[3]),
        provider=row[4],
        model=row[5],
        requested_model=row[6],
        stream=bool(row[7]),
        status=row[8],
        outcome=cast(Outcome, row[9]),
        error_kind=row[10],
        error_message=row[11],
        ttfb_ms=row[12],
        duration_ms=row[13],
        overhead_ms=row[14],
        usage=_usage(row[15:21], row[21]),
        cost=Cost(
            total_nanos=row[22],
            cache_savings_nanos=row[23],
            pricing_version=row[24],
            long_context=bool(row[25]),
        ),
        trigger=cast(Trigger, row[26]),
        origin=row[27],
    )


def attempt_from_row(row: Sequence[Any]) -> AttemptRecord:
    """An AttemptRecord from a row in ATTEMPT_COLUMNS order."""
    return AttemptRecord(
        attempt=row[1],
        started_at=row[2],
        provider=row[3],
        model=row[4],
        status=row[5],
        error_kind=row[6],
        ttfb_ms=row[7],
        duration_ms=row[8],
        usage=_usage(row[9:15], row[15]),
        cost_nanos=row[16],
    )


# --- rollup deltas -----------------------------------------------------------------------------
# usage_hourly counters, in column order after the key.
USAGE_COUNTERS = (
    "requests",
    "errors",
    "unpriced",
    "user_requests",
    *_TOKENS,
    "cost_nanos",
    "cache_savings_nanos",
    "background_nanos",
)
UPSERT_USAGE = (
    f"INSERT INTO usage_hourly (hour, sandbox, provider, model, {', '.join(USAGE_COUNTERS)}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' * len(USAGE_COUNTERS))}) "
    "ON CONFLICT (hour, sandbox, provider, model) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in USAGE_COUNTERS)
)
UPSERT_LATENCY = (
    "INSERT INTO latency_hourly (metric, sandbox, hour, bin, n) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (metric, sandbox, hour, bin) DO UPDATE SET n = n + excluded.n"
)
UsageKey = tuple[int, str, str, str]
LatencyKey = tuple[int, str, int, int]  # metric, sandbox, hour, bin


def add_to_rollups(
    r: RequestRecord, usage: dict[UsageKey, list[int]], latency: dict[LatencyKey, int]
) -> None:
    """Add one record to a batch's rollup deltas."""
    hour = hour_of(r.started_at)
    key = (hour, r.sandbox, r.provider, r.model)
    sums = usage.get(key)
    if sums is None:
        sums = usage[key] = [0] * len(USAGE_COUNTERS)
    cost = r.cost.total_nanos
    u = r.usage
    sums[0] += 1
    sums[1] += r.outcome == "error"
    sums[2] += cost is None
    sums[3] += r.trigger == "user"
    sums[4] += u.input_tokens
    sums[5] += u.output_tokens
    sums[6] += u.cache_read_tokens
    sums[7] += u.cache_write_5m_tokens
    sums[8] += u.cache_write_1h_tokens
    sums[9] += u.reasoning_tokens
    if cost is not None:
        sums[10] += cost
        if r.trigger in BACKGROUND_TRIGGERS:
            sums[12] += cost
    sums[11] += r.cost.cache_savings_nanos
    if r.outcome == "ok":
        samples = [(METRIC_DURATION, latency_bin(r.duration_ms))]
        if r.ttfb_ms is not None:
            samples.append((METRIC_TTFB, latency_bin(r.ttfb_ms)))
        for metric, b in samples:
            for name in (r.sandbox, ALL_SANDBOXES):
                k = (metric, name, hour, b)
                latency[k] = latency.get(k, 0) + 1


def usage_rows(usage: dict[UsageKey, list[int]]) -> list[tuple[Any, ...]]:
    return [(*key, *sums) for key, sums in usage.items()]


def latency_rows(latency: dict[LatencyKey, int]) -> list[tuple[Any, ...]]:
    return [(*key, n) for key, n in latency.items()]
