"""The ledger on real SQLite files: writing, durability, and every report against hand-computed
figures (and, for random data, against a brute-force computation over the records)."""

from __future__ import annotations

import logging
import math
import os
import random
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from moltconsole_backend.gateway.ledger import Ledger, LedgerVersionError
from moltconsole_backend.gateway.ledger_queries import percentiles
from moltconsole_backend.gateway.ledger_schema import SCHEMA_VERSION, bin_value, latency_bin
from moltconsole_shared.wire.records import (
    AttemptRecord,
    Cost,
    Outcome,
    RequestRecord,
    Trigger,
    Usage,
)
from moltconsole_shared.wire.reports import DayUsage, ModelUsage, SeriesPoint

PARIS = ZoneInfo("Europe/Paris")
KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+5:30: local midnight cuts a UTC hour in two
DAY = 86400.0
HOUR = 3600.0


def at(tz: tzinfo, year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    """Epoch seconds of a local wall-clock time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()


def req(
    rid: str,
    t: float,
    cost: int | None = 1000,
    *,
    sandbox: str = "main",
    provider: str = "anthropic",
    model: str = "claude-sonnet-4-5",
    outcome: Outcome = "ok",
    trigger: Trigger = "user",
    duration: float = 1000.0,
    ttfb: float | None = 100.0,
    usage: Usage | None = None,
    savings: int = 0,
    attempts: list[AttemptRecord] | None = None,
) -> RequestRecord:
    return RequestRecord(
        id=rid, started_at=t, sandbox=sandbox, api="anthropic-messages", provider=provider,
        model=model, requested_model=model, stream=True,
        status=200 if outcome == "ok" else 529, outcome=outcome,
        error_kind="overloaded_error" if outcome == "error" else None,
        ttfb_ms=ttfb, duration_ms=duration,
        usage=usage or Usage(input_tokens=10, output_tokens=20, source="provider"),
        cost=Cost(total_nanos=cost, cache_savings_nanos=savings, pricing_version="test"),
        trigger=trigger, attempts=attempts or [],
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ledger.sqlite"


def opened(path: Path, tz: tzinfo | None = PARIS, **kwargs: Any) -> Ledger:
    ledger = Ledger(path, tz=tz, **kwargs)
    ledger.open()
    return ledger


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    ledger = opened(path)
    yield ledger
    ledger.close()


def write(ledger: Ledger, *records: RequestRecord) -> None:
    for r in records:
        ledger.record(r)
    ledger.flush(timeout=30)


# --- the file -----------------------------------------------------------------------------------
def test_creates_a_private_directory_and_file_in_wal_mode(path: Path) -> None:
    with Ledger(path) as ledger:
        write(ledger, req("a", 1000.0))
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        wal = path.with_name(path.name + "-wal")
        assert wal.exists() and stat.S_IMODE(os.stat(wal).st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migrates_an_empty_file(path: Path) -> None:
    path.parent.mkdir()
    path.touch()
    assert path.stat().st_size == 0
    with Ledger(path) as ledger:
        write(ledger, req("a", 1000.0))
        assert ledger.count() == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"requests", "attempts", "usage_hourly", "latency_hourly", "meta"} <= tables
    with Ledger(path) as again:  # opening a current file migrates nothing and keeps the rows
        assert again.count() == 1


def test_refuses_a_ledger_from_a_newer_version(path: Path) -> None:
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerVersionError, match="newer"):
        Ledger(path).open()


# --- writing ------------------------------------------------------------------------------------
def full_record() -> RequestRecord:
    usage = Usage(input_tokens=120, output_tokens=450, cache_read_tokens=30_000,
                  cache_write_5m_tokens=2_000, cache_write_1h_tokens=500, reasoning_tokens=90,
                  source="provider")
    return RequestRecord(
        id="9f1c", started_at=1_750_000_123.456789, sandbox="main", api="openai-responses",
        provider="openai", model="gpt-5", requested_model="claude-sonnet-4-5", stream=False,
        status=200, outcome="ok", error_kind=None, error_message=None, ttfb_ms=812.5,
        duration_ms=4021.25, overhead_ms=0.31, usage=usage,
        cost=Cost(total_nanos=123_456_789, cache_savings_nanos=-42, pricing_version="2025-10-01",
                  long_context=True),
        trigger="tool", origin="proxy",
        attempts=[
            AttemptRecord(attempt=1, started_at=1_750_000_123.5, provider="anthropic",
                          model="claude-sonnet-4-5", status=529, error_kind="overloaded_error",
                          ttfb_ms=None, duration_ms=210.0, usage=Usage(source="none")),
            AttemptRecord(attempt=2, started_at=1_750_000_123.8, provider="openai", model="gpt-5",
                          status=200, ttfb_ms=800.0, duration_ms=3800.0, usage=usage,
                          cost_nanos=123_456_789),
        ],
    )


def test_a_record_reads_back_equal_with_its_attempts(ledger: Ledger) -> None:
    original = full_record()
    write(ledger, original)
    assert ledger.get("9f1c") == original
    assert ledger.get("missing") is None
    listed = ledger.recent(1)[0]
    assert listed.attempts == [] and replace(listed, attempts=original.attempts) == original


def test_an_unpriced_request_is_flagged_and_never_counted_as_zero(ledger: Ledger, path: Path) -> None:
    now = at(PARIS, 2025, 6, 10, 12, 0, 0)
    write(ledger, req("priced", now - 60, 5000), req("unpriced", now - 30, None, model="mystery"))
    assert ledger.get("unpriced").cost.total_nanos is None  # type: ignore[union-attr]
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT cost_nanos IS NULL FROM requests WHERE id = 'unpriced'").fetchone()
    assert row == (1,)
    s = ledger.summary(now=now)
    assert (s.requests, s.unpriced, s.today_nanos) == (2, 1, 5000)
    models = {m.model: m for m in ledger.by_model(now - HOUR, now)}
    assert models["mystery"].unpriced == 1 and models["mystery"].cost_nanos == 0
    assert models["claude-sonnet-4-5"].unpriced == 0
    [day] = ledger.by_day(now - HOUR, now)
    assert (day.requests, day.unpriced, day.cost_nanos) == (2, 1, 5000)
    assert [r.id for r in ledger.top(now - HOUR)] == ["priced"]
    assert ledger.spend_nanos(now - HOUR) == 5000


def test_recording_an_id_again_changes_nothing(path: Path) -> None:
    announced: list[str] = []
    first = req("dup", 1_000_000.0, 700, attempts=[AttemptRecord(1, 1_000_000.0, "anthropic", "m", 200)])
    with opened(path) as ledger:
        ledger.add_listener(lambda r: announced.append(r.id))
        # twice in one batch, then again in a later batch with other values
        ledger.record(first)
        ledger.record(first)
        ledger.flush()
        write(ledger, replace(first, started_at=2_000_000.0, cost=Cost(total_nanos=999)))
        assert ledger.count() == 1 and ledger.rejected == 0
    with opened(path) as ledger:  # an import run twice
        write(ledger, first, req("other", 1_000_001.0, 1))
        assert ledger.count() == 2
        got = ledger.get("dup")
        assert got is not None and got.started_at == 1_000_000.0 and len(got.attempts) == 1
        assert ledger.spend_nanos(0) == 701
        assert sum(m.requests for m in ledger.by_model(0, 3_000_000)) == 2
        assert ledger.rejected == 0  # a repeat is expected, not an error
    assert announced == ["dup"]


def test_close_writes_everything_queued(path: Path) -> None:
    ledger = opened(path)
    ids = [f"r{i}" for i in range(5000)]
    for i, rid in enumerate(ids):
        ledger.record(req(rid, 1_000_000.0 + i))
    ledger.close()  # no flush first
    with pytest.raises(RuntimeError, match="not open"):
        ledger.record(req("late", 1.0))
    with opened(path) as again:
        assert again.count() == 5000
        assert {r.id for r in again.recent(limit=10_000)} == set(ids)


def test_a_burst_is_committed_together_after_the_linger(path: Path) -> None:
    batches: list[set[str]] = []
    committed = threading.Event()

    def listener(r: RequestRecord) -> None:
        with sqlite3.connect(path) as conn:  # what the listener's commit made visible at once
            batches.append({row[0] for row in conn.execute("SELECT id FROM requests")})
        committed.set()

    with opened(path, linger_s=0.5) as ledger:
        ledger.add_listener(listener)
        for i in range(20):
            ledger.record(req(f"r{i}", 1000.0 + i))
        assert committed.wait(10)
    # The first announcement already saw all twenty: one transaction, not twenty.
    assert batches[0] == {f"r{i}" for i in range(20)}


def test_flush_and_close_do_not_wait_out_the_linger(path: Path) -> None:
    ledger = opened(path, linger_s=3600.0)  # an hour: a flush that waited would time out
    ledger.record(req("a", 1000.0))
    ledger.flush(timeout=10)
    assert ledger.count() == 1
    ledger.record(req("b", 2000.0))
    ledger.close(timeout=10)
    with opened(path) as again:
        assert again.count() == 2


def test_flush_makes_rows_visible_to_other_connections(ledger: Ledger, path: Path) -> None:
    write(ledger, req("a", 1000.0), req("b", 2000.0))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    assert ledger.pending == 0


def test_listeners_run_after_the_commit(ledger: Ledger, path: Path) -> None:
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def listener(r: RequestRecord) -> None:
        with sqlite3.connect(path) as conn:  # another connection already sees the row
            seen.append((r.id, conn.execute("SELECT count(*) FROM requests WHERE id = ?",
                                            (r.id,)).fetchone()[0]))
        if len(seen) == 3:
            done.set()

    def broken(r: RequestRecord) -> None:
        raise RuntimeError("a listener bug must not stop the writer")

    ledger.add_listener(broken)
    ledger.add_listener(listener)
    for i in range(3):
        ledger.record(req(f"r{i}", 1000.0 + i))
    assert done.wait(10)
    assert sorted(seen) == [("r0", 1), ("r1", 1), ("r2", 1)]
    ledger.remove_listener(listener)
    write(ledger, req("r3", 2000.0))
    assert len(seen) == 3 and ledger.count() == 4


class _Captured(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.text in record.getMessage():
            self.seen.set()


def test_a_failing_write_keeps_the_rows_and_retries(path: Path) -> None:
    ledger = opened(path, busy_timeout_s=0.01, retry_max_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    captured = _Captured("cannot write")
    logger = logging.getLogger("moltconsole_backend.gateway.ledger")
    logger.addHandler(captured)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the ledger's writes fail
        for i in range(100):
            ledger.record(req(f"r{i}", 1000.0 + i))
        assert captured.seen.wait(10)
        with pytest.raises(TimeoutError):
            ledger.flush(timeout=0.01)
        with pytest.raises(TimeoutError):
            ledger.close(timeout=0.01)
        assert ledger.pending == 100
        blocker.execute("COMMIT")
        ledger.close()
    finally:
        logger.removeHandler(captured)
        blocker.close()
    assert sum("cannot write" in m for m in captured.messages) == 1  # one warning, not one a try
    assert any("writes again" in m for m in captured.messages)
    with opened(path) as again:
        assert again.count() == 100


def test_a_malformed_record_is_skipped_loudly_and_blocks_nothing(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    bad = req("bad", 1000.0)
    bad.started_at = "yesterday"  # type: ignore[assignment]
    write(ledger, req("a", 1000.0), bad, req("b", 1001.0))
    assert ledger.count() == 2 and ledger.rejected == 1
    assert "'bad'" in caplog.text
    write(ledger, req("c", 1002.0))
    assert ledger.count() == 3


def test_meta_values_persist(path: Path) -> None:
    with opened(path) as ledger:
        assert ledger.get_meta("cf:cursor") is None
        ledger.set_meta("cf:cursor", "one")
        ledger.set_meta("cf:cursor", "two")
        assert ledger.get_meta("cf:cursor") == "two"
    with opened(path) as ledger:
        assert ledger.get_meta("cf:cursor") == "two"


def test_using_a_closed_ledger_fails_clearly(path: Path) -> None:
    ledger = Ledger(path)
    with pytest.raises(RuntimeError, match="not open"):
        ledger.record(req("a", 1.0))
    with pytest.raises(RuntimeError, match="not open"):
        ledger.count()
    ledger.flush()  # nothing queued: returns
    ledger.close()  # not open: nothing to do


def test_reads_while_writing_see_whole_batches(ledger: Ledger) -> None:
    now = 1_800_000_000.0 + 1800  # the rows span clean and cut hours: several statements a read
    batches, size = 30, 1000
    errors: list[str] = []
    done = threading.Event()
    started = [threading.Event(), threading.Event()]
    reads = [0, 0]

    def reader(slot: int) -> None:
        last = 0
        while True:
            finished = done.is_set()
            s = ledger.summary(now=now)
            n = ledger.count()
            # Whole batches only, sums agreeing with counts, and never going back.
            if s.requests % size or s.today_nanos != 3 * s.requests or not last <= s.requests <= n:
                errors.append(f"torn read: {s.requests} rows, {s.today_nanos} nanos, count {n}")
            last = s.requests
            reads[slot] += 1
            started[slot].set()
            if finished:
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    assert all(e.wait(10) for e in started)  # both read before and while the writer works
    for k in range(batches):
        # record_many queues a batch at once, so every commit holds whole batches
        ledger.record_many([req(f"r{k}-{j}", now - 9000 + j * 8 + k * 0.01, 3) for j in range(size)])
        if k % 5 == 4:
            ledger.flush()
    ledger.flush()
    done.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(r >= 2 for r in reads)  # one read before the writes and one after, at least
    assert ledger.summary(now=now).requests == batches * size


# --- the summary --------------------------------------------------------------------------------
@pytest.mark.parametrize("tz", [PARIS, KOLKATA], ids=["paris", "kolkata"])
def test_summary_windows_hand_computed(path: Path, tz: ZoneInfo) -> None:
    now = at(tz, 2025, 3, 15, 10, 30, 0)
    midnight = at(tz, 2025, 3, 15, 0, 0, 0)
    rows = [
        req("now", now, 1),  # every window includes now
        req("ten-min", now - 600, 10),
        req("midnight", midnight, 100),  # today starts at local midnight, inclusive
        req("before-midnight", midnight - 1, 1_000),
        req("two-days", now - 2 * DAY, 10_000),
        req("week-edge", now - 7 * DAY, 100_000),  # 7 rolling days, start inclusive
        req("eight-days", now - 8 * DAY, 1_000_000),
        req("first-of-month", at(tz, 2025, 3, 1, 0, 0, 0), 10_000_000),
        req("end-of-feb", at(tz, 2025, 2, 28, 23, 59, 59), 100_000_000),
        req("month-edge", now - 30 * DAY, 1_000_000_000),
        req("too-old", now - 30 * DAY - 1, 10_000_000_000),
        req("future", now + 1, 100_000_000_000),
        req("other-sandbox", now - 60, 7, sandbox="lab"),
    ]
    with opened(path, tz=tz) as ledger:
        write(ledger, *rows)
        s = ledger.summary(now=now)
        assert s.now == now and s.window_seconds == 86400
        assert s.today_nanos == 1 + 10 + 100 + 7
        assert s.week_nanos == 1 + 10 + 100 + 1_000 + 10_000 + 100_000 + 7
        assert s.month_to_date_nanos == 11_111_111 + 7
        assert s.month_nanos == 1_111_111_111 + 7
        assert s.burn_rate_nanos_per_hour == 1 + 10 + 7
        # the 24 h window: now, ten-min, midnight, before-midnight, other-sandbox
        assert (s.requests, s.errors, s.unpriced) == (5, 0, 0)
        assert (s.daily_budget_nanos, s.monthly_budget_nanos) == (None, None)
        lab = ledger.summary(now=now, sandbox="lab")
        assert (lab.today_nanos, lab.month_nanos, lab.requests) == (7, 7, 1)
        wide = ledger.summary(now=now, window_seconds=3 * DAY)
        assert wide.requests == 6 and wide.today_nanos == s.today_nanos


def test_summary_errors_background_and_idle_hours(ledger: Ledger) -> None:
    h = 500_000  # an hour number; now is half past the hour h
    now = h * HOUR + 1800

    def t(hour: int, minute: float) -> float:
        return hour * HOUR + minute * 60

    write(
        ledger,
        # hour h-5: a user message and a heartbeat: not idle
        req("a1", t(h - 5, 10), 5, trigger="user"),
        req("a2", t(h - 5, 20), 7, trigger="heartbeat"),
        # hour h-4: heartbeat and memory work only: idle
        req("b1", t(h - 4, 10), 11, trigger="heartbeat"),
        req("b2", t(h - 4, 50), 13, trigger="background"),
        # hour h-3: tool calls continuing without a user message: idle, but not background
        req("c1", t(h - 3, 5), 17, trigger="tool"),
        req("c2", t(h - 3, 6), None, trigger="tool", model="mystery"),
        # hour h-2: a failed user message still counts as a user request
        req("d1", t(h - 2, 1), 0, trigger="user", outcome="error"),
        req("d2", t(h - 2, 2), 19, trigger="heartbeat"),
        # hour h (the current, partial one): a heartbeat, then a user message
        req("e1", t(h, 1), 23, trigger="heartbeat"),
        req("e2", t(h, 29), 29, trigger="user"),
        # the window's first hour (cut): before the window start, then inside without a user
        req("f0", now - DAY - 60, 1000, trigger="user"),
        req("f1", now - DAY + 60, 31, trigger="heartbeat"),
    )
    s = ledger.summary(now=now)
    assert s.requests == 11 and s.errors == 1 and s.unpriced == 1
    assert s.background_nanos == 7 + 11 + 13 + 19 + 23 + 31
    assert s.idle_nanos == 11 + 13 + 17 + 31


def test_percentiles_of_known_latencies(ledger: Ledger) -> None:
    now = 1_900_000_000.0 + 1234.5
    # 100 completed requests, 10 ms ... 1000 ms, spread over ten hours (whole and cut hours);
    # plus slow failures, which latency figures leave out.
    records = [req(f"r{i}", now - 10 * HOUR + i * 360, duration=10.0 * i, ttfb=1.0 * i)
               for i in range(1, 101)]
    records += [req(f"e{i}", now - 60 * i, outcome="error", duration=1e6, ttfb=None)
                for i in range(1, 6)]
    write(ledger, *records)
    s = ledger.summary(now=now)
    # nearest rank: the 50th and 95th values
    assert s.duration["p50_ms"] == pytest.approx(500, rel=0.05)
    assert s.duration["p95_ms"] == pytest.approx(950, rel=0.05)
    assert s.ttfb["p50_ms"] == pytest.approx(50, rel=0.05)
    assert s.ttfb["p95_ms"] == pytest.approx(95, rel=0.05)
    quiet = ledger.summary(now=now + 30 * DAY)
    assert quiet.duration == {"p50_ms": None, "p95_ms": None} and quiet.requests == 0


def test_histogram_bins_are_within_five_percent() -> None:
    for v in [1.0, 1.05, 3.3, 10.0, 99.9, 512.0, 4321.0, 60_000.0, 3.6e6]:
        assert bin_value(latency_bin(v)) == pytest.approx(v, rel=0.0489)
    assert latency_bin(0.2) == latency_bin(0.0) == latency_bin(-1.0) == latency_bin(math.nan) == 0
    assert percentiles({}).p50_ms is None
    p = percentiles({latency_bin(100.0): 94, latency_bin(2000.0): 6})
    assert p.p50_ms == pytest.approx(100, rel=0.05) and p.p95_ms == pytest.approx(2000, rel=0.05)


# --- breakdowns ---------------------------------------------------------------------------------
def test_by_model_sums_tokens_savings_and_errors(ledger: Ledger) -> None:
    since = 600_000 * HOUR + 1200  # cuts its first hour
    until = since + 5 * HOUR  # and its last
    u1 = Usage(input_tokens=100, output_tokens=200, cache_read_tokens=3000,
               cache_write_5m_tokens=400, cache_write_1h_tokens=50, reasoning_tokens=6)
    u2 = Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_5m_tokens=4,
               cache_write_1h_tokens=5, reasoning_tokens=0)
    write(
        ledger,
        req("s1", since, 1000, usage=u1, savings=900),
        req("s2", since + 2 * HOUR, 2000, usage=u1, savings=-50),
        req("s3", until - 1, 3000, usage=u2, savings=10, outcome="error"),
        req("g1", since + HOUR, 10_000, provider="openai", model="gpt-5", usage=u2, savings=5),
        req("g2", since + 3 * HOUR, None, provider="openai", model="gpt-5", usage=u2),
        req("x1", since - 1, 99_999, usage=u1),  # before since
        req("x2", until, 99_999, usage=u1),  # at until: excluded
        req("lab", since + 60, 50_000, sandbox="lab", provider="openai", model="o3", usage=u2),
    )
    rows = ledger.by_model(since, until, sandbox="main")
    assert rows == [
        ModelUsage(provider="openai", model="gpt-5", requests=2, errors=0, input_tokens=2,
                   output_tokens=4, cache_read_tokens=6, cache_write_5m_tokens=8,
                   cache_write_1h_tokens=10, reasoning_tokens=0, cost_nanos=10_000,
                   cache_savings_nanos=5, unpriced=1),
        ModelUsage(provider="anthropic", model="claude-sonnet-4-5", requests=3, errors=1,
                   input_tokens=201, output_tokens=402, cache_read_tokens=6003,
                   cache_write_5m_tokens=804, cache_write_1h_tokens=105, reasoning_tokens=12,
                   cost_nanos=6000, cache_savings_nanos=860, unpriced=0),
    ]
    everyone = ledger.by_model(since, until)
    assert [m.model for m in everyone] == ["o3", "gpt-5", "claude-sonnet-4-5"]


@pytest.mark.parametrize("tz", [PARIS, KOLKATA], ids=["paris", "kolkata"])
def test_by_day_follows_local_midnight(path: Path, tz: ZoneInfo) -> None:
    u = Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_5m_tokens=4,
              cache_write_1h_tokens=5)
    rows = [
        req("d1a", at(tz, 2025, 3, 28, 23, 59, 59), 1, usage=u),
        req("d2a", at(tz, 2025, 3, 29, 0, 0, 0), 10, usage=u),
        req("d2b", at(tz, 2025, 3, 29, 12, 0, 0), None, usage=u, outcome="error"),
        # Paris moves its clocks forward on 30 March: a 23-hour day
        req("d3a", at(tz, 2025, 3, 30, 0, 30, 0), 100, usage=u),
        req("d3b", at(tz, 2025, 3, 30, 23, 30, 0), 1000, usage=u),
        # nothing on 31 March
        req("d5a", at(tz, 2025, 4, 1, 8, 0, 0), 10_000, usage=u),
    ]
    with opened(path, tz=tz) as ledger:
        write(ledger, *rows)
        days = ledger.by_day(at(tz, 2025, 3, 28, 18, 0, 0), at(tz, 2025, 4, 1, 8, 0, 0))
        assert days == [
            DayUsage("2025-03-28", 1, 0, 1, 2, 3, 9, 1, 0),
            DayUsage("2025-03-29", 2, 1, 2, 4, 6, 18, 10, 1),
            DayUsage("2025-03-30", 2, 0, 2, 4, 6, 18, 1100, 0),
        ]
        later = ledger.by_day(at(tz, 2025, 3, 30, 6, 0, 0), at(tz, 2025, 4, 2, 0, 0, 0))
        assert [(d.day, d.cost_nanos) for d in later] == [("2025-03-30", 1000), ("2025-04-01", 10_000)]


def test_series_buckets_are_equal_and_zero_filled(ledger: Ledger) -> None:
    since = 700_000 * HOUR + 600
    until = since + 6 * 3000  # six 50-minute buckets: their edges cut hours
    write(
        ledger,
        req("a", since, 1),
        req("b", since + 2999.9, 10),
        req("c", since + 3 * 3000, 100),  # exactly on an edge: the later bucket
        req("d", since + 3 * 3000 + 1500, 1000),
        req("e", until, 10_000),  # at until: left out
        req("f", since - 0.5, 100_000),  # before since: left out
        req("g", since + 5 * 3000 + 1, None),  # unpriced: a request, no money
    )
    points = ledger.series(since, until, 6)
    assert points == [
        SeriesPoint(start=since, cost_nanos=11, requests=2),
        SeriesPoint(start=since + 3000, cost_nanos=0, requests=0),
        SeriesPoint(start=since + 6000, cost_nanos=0, requests=0),
        SeriesPoint(start=since + 9000, cost_nanos=1100, requests=2),
        SeriesPoint(start=since + 12000, cost_nanos=0, requests=0),
        SeriesPoint(start=since + 15000, cost_nanos=0, requests=1),
    ]
    hourly = ledger.series(700_000 * HOUR, 700_006 * HOUR, 3)  # whole hours: rollups only
    assert [(p.cost_nanos, p.requests) for p in hourly] == [(100_011, 3), (1100, 2), (10_000, 2)]
    with pytest.raises(ValueError, match="buckets"):
        ledger.series(since, until, 0)


def test_spend_since(ledger: Ledger) -> None:
    h = 800_000 * HOUR
    write(ledger, req("a", h - 1, 1), req("b", h, 10), req("c", h + 1800, 100),
          req("d", h + 7200, 1000), req("e", h + 7300, 10_000, sandbox="lab"))
    assert ledger.spend_nanos(h) == 11_110
    assert ledger.spend_nanos(h + 1) == 11_100
    assert ledger.spend_nanos(h + 7200, sandbox="main") == 1000
    assert ledger.spend_nanos(h + 8000) == 0


# --- rows ---------------------------------------------------------------------------------------
def test_top_errors_recent_and_paging(ledger: Ledger) -> None:
    t0 = 1_000_000.0
    records = [req(f"r{i:03}", t0 + i * 60, cost=(i * 37) % 101, sandbox="lab" if i % 4 == 0 else "main",
                   outcome="error" if i % 10 == 3 else "ok") for i in range(200)]
    records += [req("tie-a", t0 + 500 * 60, 5), req("tie-b", t0 + 500 * 60, 5)]
    write(ledger, *records)
    since = t0 + 100 * 60
    window = [r for r in records if r.started_at >= since]
    top = ledger.top(since, limit=10)
    assert [r.cost.total_nanos for r in top] == sorted(
        (r.cost.total_nanos or 0 for r in window), reverse=True)[:10]
    assert all(r.started_at >= since for r in top)
    lab = ledger.top(since, limit=5, sandbox="lab")
    assert len(lab) == 5 and all(r.sandbox == "lab" for r in lab)
    errors = ledger.errors(since, limit=50)
    assert [r.id for r in errors] == [f"r{i:03}" for i in range(199, 99, -1) if i % 10 == 3]
    # Paging backwards by id visits every row once, newest first.
    seen: list[str] = []
    page = ledger.recent(limit=7)
    while page and len(seen) <= len(records):
        seen += [r.id for r in page]
        page = ledger.recent(limit=7, before=page[-1].id)
    assert len(seen) == len(set(seen)) == len(records)
    assert seen[:2] == ["tie-b", "tie-a"] and seen[-1] == "r000"
    by_time = ledger.recent(limit=3, before=t0 + 10 * 60)
    assert [r.id for r in by_time] == ["r009", "r008", "r007"]
    assert ledger.recent(limit=3, before="no-such-id") == []


# --- local time from the environment --------------------------------------------------------------
@pytest.fixture
def kolkata_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("kolkata_tz")
def test_without_tz_days_follow_the_process_zone(path: Path) -> None:
    now = at(KOLKATA, 2025, 5, 5, 9, 0, 0)
    with opened(path, tz=None) as ledger:
        write(ledger, req("a", at(KOLKATA, 2025, 5, 4, 23, 59, 0), 1),
              req("b", at(KOLKATA, 2025, 5, 5, 0, 1, 0), 10))
        assert ledger.summary(now=now).today_nanos == 10
        assert [d.day for d in ledger.by_day(now - DAY, now)] == ["2025-05-04", "2025-05-05"]


# --- everything against brute force -------------------------------------------------------------
def random_records(count: int, end: float, seed: int) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        t = end - rng.random() * 40 * DAY
        if rng.random() < 0.02:
            t = float(int(t // HOUR) * HOUR)  # exactly on an hour
        outcome: Outcome = rng.choice(["ok", "ok", "ok", "error", "cancelled"])
        trigger: Trigger = rng.choice(["user", "tool", "heartbeat", "background", "unknown"])
        u = Usage(input_tokens=rng.randrange(5000), output_tokens=rng.randrange(2000),
                  cache_read_tokens=rng.randrange(50_000), cache_write_5m_tokens=rng.randrange(900),
                  cache_write_1h_tokens=rng.randrange(90), reasoning_tokens=rng.randrange(300))
        out.append(req(
            f"id{i}", t, None if rng.random() < 0.05 else rng.randrange(1, 10**7),
            sandbox=rng.choice(["main", "lab", "ops"]), model=rng.choice(["m1", "m2", "m3"]),
            outcome=outcome, trigger=trigger, usage=u, savings=rng.randrange(-1000, 10**6),
            duration=rng.lognormvariate(7, 1.5),
            ttfb=None if rng.random() < 0.1 else rng.lognormvariate(5, 1),
        ))
    return out


def nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return sorted(values)[math.ceil(q * len(values)) - 1]


def test_reports_match_brute_force(path: Path) -> None:
    end = at(KOLKATA, 2025, 7, 20, 14, 47, 13) + 0.25
    records = random_records(6000, end, seed=11)
    with opened(path, tz=KOLKATA) as ledger:
        ledger.record_many(records)
        ledger.flush(30)
        for sandbox in (None, "lab"):
            mine = [r for r in records if sandbox is None or r.sandbox == sandbox]

            def spend(since: float, until: float, rows: list[RequestRecord] = mine) -> int:
                return sum(r.cost.total_nanos or 0 for r in rows if since <= r.started_at < until)

            now = end - 3 * DAY - 1234.5
            s = ledger.summary(now=now, window_seconds=2 * DAY, sandbox=sandbox)
            inc = math.nextafter(now, math.inf)
            month_start = at(KOLKATA, 2025, 7, 1, 0, 0, 0)
            assert s.today_nanos == spend(at(KOLKATA, 2025, 7, 17, 0, 0, 0), inc)
            assert s.week_nanos == spend(now - 7 * DAY, inc)
            assert s.month_nanos == spend(now - 30 * DAY, inc)
            assert s.month_to_date_nanos == spend(month_start, inc)
            assert s.burn_rate_nanos_per_hour == spend(now - HOUR, inc)
            window = [r for r in mine if now - 2 * DAY <= r.started_at <= now]
            assert s.requests == len(window)
            assert s.errors == sum(r.outcome == "error" for r in window)
            assert s.unpriced == sum(r.cost.total_nanos is None for r in window)
            assert s.background_nanos == sum(r.cost.total_nanos or 0 for r in window
                                             if r.trigger in ("heartbeat", "background"))
            user_hours = {int(r.started_at // HOUR) for r in window if r.trigger == "user"}
            assert s.idle_nanos == sum(r.cost.total_nanos or 0 for r in window
                                       if int(r.started_at // HOUR) not in user_hours)
            ok = [r for r in window if r.outcome == "ok"]
            for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):
                assert s.duration[key] == pytest.approx(
                    nearest_rank([r.duration_ms for r in ok], q), rel=0.05)
                assert s.ttfb[key] == pytest.approx(
                    nearest_rank([r.ttfb_ms for r in ok if r.ttfb_ms is not None], q), rel=0.05)

            since, until = end - 25 * DAY + 777.7, end - 2 * DAY - 55.5
            models: dict[str, list[int]] = {}
            for r in mine:
                if since <= r.started_at < until:
                    m = models.setdefault(r.model, [0, 0, 0, 0, 0])
                    m[0] += 1
                    m[1] += r.cost.total_nanos or 0
                    m[2] += r.cost.cache_savings_nanos
                    m[3] += r.usage.cache_read_tokens
                    m[4] += r.cost.total_nanos is None
            got = {m.model: [m.requests, m.cost_nanos, m.cache_savings_nanos, m.cache_read_tokens,
                             m.unpriced] for m in ledger.by_model(since, until, sandbox=sandbox)}
            assert got == models

            days: dict[str, list[int]] = {}
            for r in mine:
                if since <= r.started_at < until:
                    d = days.setdefault(datetime.fromtimestamp(r.started_at, KOLKATA).date().isoformat(),
                                        [0, 0, 0])
                    d[0] += 1
                    d[1] += r.cost.total_nanos or 0
                    d[2] += r.usage.cache_write_5m_tokens + r.usage.cache_write_1h_tokens
            got_days = {d.day: [d.requests, d.cost_nanos, d.cache_write_tokens]
                        for d in ledger.by_day(since, until, sandbox=sandbox)}
            assert got_days == days

            points = ledger.series(since, until, 37, sandbox=sandbox)
            width = (until - since) / 37
            assert [p.start for p in points] == [since + i * width for i in range(37)]
            assert sum(p.requests for p in points) == sum(since <= r.started_at < until for r in mine)
            for p, nxt in zip(points, [*[p.start for p in points[1:]], until], strict=True):
                assert p.cost_nanos == spend(p.start, nxt)

            assert ledger.spend_nanos(since, sandbox=sandbox) == spend(since, math.inf)
        assert ledger.count() == len(records)
