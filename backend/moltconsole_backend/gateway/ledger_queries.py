"""The ledger's reports, computed on one read connection inside one snapshot.

How a time range is answered: whole clock hours come from the rollup tables (``usage_hourly``,
``latency_hourly``); an hour that a range boundary cuts (the first and last hour of a window, a
local midnight in a zone with a half-hour offset, a chart bucket's edge) is read from the
``requests`` table instead, through its index on ``started_at``. So every sum and count is
exact to the row; only percentiles are approximate (within one histogram bin, 4.9 %). The work
grows with the number of rollup hours in the range plus the raw rows of the cut hours, never
with the total number of rows.

Ranges are half-open, ``since <= started_at < until``, except the summary, whose windows end
at ``now`` inclusive.
"""
# ruff: noqa: S608 - SQL text is built only from this module's constant names; values are ? parameters

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta, tzinfo
from itertools import pairwise
from sqlite3 import Connection
from typing import Any

from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.reports import DayUsage, ModelUsage, Percentiles, SeriesPoint, Summary

from .ledger_schema import (
    ALL_SANDBOXES,
    HOUR,
    METRIC_DURATION,
    METRIC_TTFB,
    SELECT_ATTEMPTS,
    SELECT_REQUEST,
    attempt_from_row,
    bin_value,
    hour_of,
    latency_bin,
    request_from_row,
)

DAY = 86400


# --- local time --------------------------------------------------------------------------------
def local_date(epoch: float, tz: tzinfo | None) -> date:
    """The calendar date of an instant in ``tz`` (None: the process's local zone, TZ)."""
    return datetime.fromtimestamp(epoch, tz).date()


def midnight(day: date, tz: tzinfo | None) -> float:
    """The instant a calendar day starts in ``tz`` (None: local; a naive datetime is local)."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


# --- decomposing a range into rollup hours and raw pieces --------------------------------------
def _last_hour(until: float) -> int:
    """The last hour that starts before ``until``."""
    return hour_of(until) if until % HOUR else hour_of(until) - 1


def _split(since: float, until: float) -> tuple[list[tuple[float, float]], int, int]:
    """[since, until) as raw pieces (cut hours) plus the rollup hours first..last (inclusive)."""
    if until <= since:
        return [], 1, 0
    first, last = hour_of(since), hour_of(until) - 1
    if first == hour_of(until):
        return [(since, until)], 1, 0
    pieces = []
    if since % HOUR:
        pieces.append((since, float((first + 1) * HOUR)))
        first += 1
    if until % HOUR:
        pieces.append((float(hour_of(until) * HOUR), until))
    return pieces, first, last


def _sandbox_filter(sandbox: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if sandbox is None else (" AND sandbox = ?", (sandbox,))


def _add(acc: list[int], values: Iterable[Any]) -> None:
    for i, v in enumerate(values):
        if v:
            acc[i] += v


def segments(
    conn: Connection,
    cuts: Sequence[float],
    sandbox: str | None,
    rollup_exprs: Sequence[str],
    raw_exprs: Sequence[str],
) -> list[list[int]]:
    """Sums for each segment [cuts[i], cuts[i+1]); ``cuts`` strictly increasing.

    ``rollup_exprs`` and ``raw_exprs`` say the same sums over usage_hourly and requests.
    """
    out = [[0] * len(rollup_exprs) for _ in range(len(cuts) - 1)]
    if not out or cuts[-1] <= cuts[0]:
        return out
    lo, hi = cuts[0], cuts[-1]
    where, args = _sandbox_filter(sandbox)
    dirty = sorted({hour_of(c) for c in cuts if c % HOUR})
    skip = set(dirty)
    rollup_sql = (
        f"SELECT hour, {', '.join(rollup_exprs)} FROM usage_hourly "
        f"WHERE hour BETWEEN ? AND ?{where} GROUP BY hour"
    )
    for hour, *values in conn.execute(rollup_sql, (hour_of(lo), _last_hour(hi), *args)):
        if hour not in skip:
            _add(out[bisect_right(cuts, hour * HOUR) - 1], values)
    raw_sql = f"SELECT {', '.join(raw_exprs)} FROM requests WHERE started_at >= ? AND started_at < ?{where}"
    for hour in dirty:
        a, b = max(float(hour * HOUR), lo), min(float((hour + 1) * HOUR), hi)
        inner = cuts[bisect_right(cuts, a) : bisect_left(cuts, b)]
        for x, y in pairwise([a, *inner, b]):
            if x < y:
                _add(out[bisect_right(cuts, x) - 1], conn.execute(raw_sql, (x, y, *args)).fetchone())
    return out


# --- summary ------------------------------------------------------------------------------------
def percentiles(counts: dict[int, int]) -> Percentiles:
    """p50/p95 (nearest rank) of a histogram, each as its bin's middle value."""
    total = sum(counts.values())
    if not total:
        return Percentiles()
    wanted = [(math.ceil(0.50 * total), "p50_ms"), (math.ceil(0.95 * total), "p95_ms")]
    found: dict[str, float] = {}
    seen = 0
    for b in sorted(counts):
        seen += counts[b]
        while wanted and seen >= wanted[0][0]:
            found[wanted.pop(0)[1]] = round(bin_value(b), 3)
    return Percentiles(**found)


def summary(
    conn: Connection, now: float, window_seconds: float, sandbox: str | None, tz: tzinfo | None
) -> Summary:
    """See Ledger.summary."""
    today = local_date(now, tz)
    starts = {
        "today": midnight(today, tz),
        "week": now - 7 * DAY,
        "month": now - 30 * DAY,
        "mtd": midnight(today.replace(day=1), tz),
        "hour": now - HOUR,
        "window": now - window_seconds,
    }
    end = math.nextafter(now, math.inf)  # windows include `now`
    win = starts["window"]
    ordered = sorted(set(starts.values()))
    lo = ordered[0]
    # Everything is added up per "rank": the number of window starts at or before a row, so a
    # rank-k amount counts in every window whose start is among the first k.
    by_rank = [0] * (len(ordered) + 1)
    where, args = _sandbox_filter(sandbox)
    cuts = [c for c in (*ordered, end) if c < end]
    dirty = {hour_of(c) for c in (*cuts, end) if c % HOUR}
    # In the window: requests, errors, unpriced, background spend; and per hour of the window
    # [user requests, spend] for the idle figure.
    counts = [0, 0, 0, 0]
    hours: dict[int, list[int]] = {}

    rollup_sql = (
        "SELECT hour, SUM(cost_nanos), SUM(requests), SUM(errors), SUM(unpriced), "
        "SUM(background_nanos), SUM(user_requests) FROM usage_hourly "
        f"WHERE hour BETWEEN ? AND ?{where} GROUP BY hour"
    )
    raw_sql = (
        "SELECT SUM(cost_nanos), COUNT(*), SUM(outcome = 'error'), SUM(cost_nanos IS NULL), "
        "SUM(CASE WHEN triggered_by IN ('heartbeat', 'background') THEN cost_nanos END), "
        "SUM(triggered_by = 'user') FROM requests "
        f"WHERE started_at >= ? AND started_at < ?{where}"
    )
    pieces: list[tuple[int, float, Sequence[Any]]] = [
        (hour, float(hour * HOUR), values)
        for hour, *values in conn.execute(rollup_sql, (hour_of(lo), _last_hour(end), *args))
        if hour not in dirty
    ]
    raw_in_window: list[tuple[float, float]] = []
    for hour in sorted(dirty):
        a, b = max(float(hour * HOUR), lo), min(float((hour + 1) * HOUR), end)
        inner = cuts[bisect_right(cuts, a) : bisect_left(cuts, b)]
        for x, y in pairwise([a, *inner, b]):
            if x < y:
                pieces.append((hour, x, conn.execute(raw_sql, (x, y, *args)).fetchone()))
                if x >= win:
                    raw_in_window.append((x, y))
    for hour, start, (cost, n, err, unp, bg, users) in pieces:
        by_rank[bisect_right(ordered, start)] += cost or 0
        if start >= win:
            counts[0] += n
            counts[1] += err or 0
            counts[2] += unp or 0
            counts[3] += bg or 0
            acc = hours.setdefault(hour, [0, 0])
            acc[0] += users or 0
            acc[1] += cost or 0
    spend = {name: sum(by_rank[bisect_right(ordered, s) :]) for name, s in starts.items()}

    latency: dict[int, dict[int, int]] = {METRIC_DURATION: {}, METRIC_TTFB: {}}
    clean = [h for h in range(hour_of(win), _last_hour(end) + 1) if h not in dirty]
    if clean:
        # Cut hours were read from the requests table; leave them out of the histogram sums.
        skip = f" AND hour NOT IN ({_marks(dirty)})" if dirty else ""
        hist_sql = (
            "SELECT bin, SUM(n) FROM latency_hourly WHERE metric = ? AND sandbox = ? "
            f"AND hour BETWEEN ? AND ?{skip} GROUP BY bin"
        )
        for metric, hist in latency.items():
            params = (
                metric,
                ALL_SANDBOXES if sandbox is None else sandbox,
                clean[0],
                clean[-1],
                *sorted(dirty),
            )
            hist.update(conn.execute(hist_sql, params).fetchall())
    values_sql = (
        "SELECT duration_ms, ttfb_ms FROM requests WHERE started_at >= ? "
        f"AND started_at < ?{where} AND outcome = 'ok'"
    )
    durations, ttfbs = latency[METRIC_DURATION], latency[METRIC_TTFB]
    for x, y in raw_in_window:
        for duration, ttfb in conn.execute(values_sql, (x, y, *args)):
            b = latency_bin(duration)
            durations[b] = durations.get(b, 0) + 1
            if ttfb is not None:
                b = latency_bin(ttfb)
                ttfbs[b] = ttfbs.get(b, 0) + 1

    return Summary(
        now=now,
        today_nanos=spend["today"],
        week_nanos=spend["week"],
        month_nanos=spend["month"],
        month_to_date_nanos=spend["mtd"],
        burn_rate_nanos_per_hour=float(spend["hour"]),
        requests=counts[0],
        errors=counts[1],
        unpriced=counts[2],
        window_seconds=window_seconds,
        duration=asdict(percentiles(durations)),
        ttfb=asdict(percentiles(ttfbs)),
        background_nanos=counts[3],
        idle_nanos=sum(cost for users, cost in hours.values() if not users),
    )


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


# --- spend, by model, by day, series ----------------------------------------------------------
def spend_nanos(conn: Connection, since: float, sandbox: str | None) -> int:
    """Priced spend of every request that started at or after ``since``."""
    where, args = _sandbox_filter(sandbox)
    total = 0
    first = hour_of(since)
    if since % HOUR:
        first += 1
        row = conn.execute(
            f"SELECT SUM(cost_nanos) FROM requests WHERE started_at >= ? AND started_at < ?{where}",
            (since, float(first * HOUR), *args),
        ).fetchone()
        total += row[0] or 0
    row = conn.execute(
        f"SELECT SUM(cost_nanos) FROM usage_hourly WHERE hour >= ?{where}", (first, *args)
    ).fetchone()
    return total + (row[0] or 0)


_MODEL_ROLLUP = (
    "SUM(requests)",
    "SUM(errors)",
    "SUM(input_tokens)",
    "SUM(output_tokens)",
    "SUM(cache_read_tokens)",
    "SUM(cache_write_5m_tokens)",
    "SUM(cache_write_1h_tokens)",
    "SUM(reasoning_tokens)",
    "SUM(cost_nanos)",
    "SUM(cache_savings_nanos)",
    "SUM(unpriced)",
)
_MODEL_RAW = (
    "COUNT(*)",
    "SUM(outcome = 'error')",
    "SUM(input_tokens)",
    "SUM(output_tokens)",
    "SUM(cache_read_tokens)",
    "SUM(cache_write_5m_tokens)",
    "SUM(cache_write_1h_tokens)",
    "SUM(reasoning_tokens)",
    "SUM(cost_nanos)",
    "SUM(cache_savings_nanos)",
    "SUM(cost_nanos IS NULL)",
)


def by_model(conn: Connection, since: float, until: float, sandbox: str | None) -> list[ModelUsage]:
    """See Ledger.by_model."""
    where, args = _sandbox_filter(sandbox)
    pieces, first, last = _split(since, until)
    sums: dict[tuple[str, str], list[int]] = {}
    queries: list[tuple[str, tuple[Any, ...]]] = []
    if first <= last:
        queries.append(
            (
                f"SELECT provider, model, {', '.join(_MODEL_ROLLUP)} FROM usage_hourly "
                f"WHERE hour BETWEEN ? AND ?{where} GROUP BY provider, model",
                (first, last, *args),
            )
        )
    for a, b in pieces:
        queries.append(
            (
                f"SELECT provider, model, {', '.join(_MODEL_RAW)} FROM requests "
                f"WHERE started_at >= ? AND started_at < ?{where} GROUP BY provider, model",
                (a, b, *args),
            )
        )
    for sql, params in queries:
        for provider, model, *values in conn.execute(sql, params):
            _add(sums.setdefault((provider, model), [0] * len(_MODEL_ROLLUP)), values)
    rows = [ModelUsage(provider, model, *values) for (provider, model), values in sums.items()]
    rows.sort(key=lambda m: (-m.cost_nanos, -m.requests, m.provider, m.model))
    return rows


_DAY_ROLLUP = (
    "SUM(requests)",
    "SUM(errors)",
    "SUM(input_tokens)",
    "SUM(output_tokens)",
    "SUM(cache_read_tokens)",
    "SUM(cache_write_5m_tokens + cache_write_1h_tokens)",
    "SUM(cost_nanos)",
    "SUM(unpriced)",
)
_DAY_RAW = (
    "COUNT(*)",
    "SUM(outcome = 'error')",
    "SUM(input_tokens)",
    "SUM(output_tokens)",
    "SUM(cache_read_tokens)",
    "SUM(cache_write_5m_tokens + cache_write_1h_tokens)",
    "SUM(cost_nanos)",
    "SUM(cost_nanos IS NULL)",
)


def by_day(
    conn: Connection, since: float, until: float, sandbox: str | None, tz: tzinfo | None
) -> list[DayUsage]:
    """See Ledger.by_day."""
    if until <= since:
        return []
    days = [local_date(since, tz)]
    cuts = [since]
    while True:
        nxt = days[-1] + timedelta(days=1)
        start = midnight(nxt, tz)
        if start >= until:
            break
        if start > cuts[-1]:  # a zone's odd transition could repeat an instant; keep it strict
            days.append(nxt)
            cuts.append(start)
        else:
            days[-1] = nxt
    cuts.append(until)
    sums = segments(conn, cuts, sandbox, _DAY_ROLLUP, _DAY_RAW)
    return [DayUsage(day.isoformat(), *values) for day, values in zip(days, sums, strict=True) if values[0]]


def series(
    conn: Connection, since: float, until: float, buckets: int, sandbox: str | None
) -> list[SeriesPoint]:
    """See Ledger.series."""
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    width = (until - since) / buckets
    starts = [since + i * width for i in range(buckets)]
    if any(b <= a for a, b in pairwise([*starts, until])):
        raise ValueError("the range is too short for that many buckets")
    sums = segments(
        conn, [*starts, until], sandbox, ("SUM(cost_nanos)", "SUM(requests)"), ("SUM(cost_nanos)", "COUNT(*)")
    )
    return [SeriesPoint(start=s, cost_nanos=c, requests=n) for s, (c, n) in zip(starts, sums, strict=True)]


# --- rows ---------------------------------------------------------------------------------------
def _records(conn: Connection, sql: str, params: Sequence[Any]) -> list[RequestRecord]:
    return [request_from_row(row) for row in conn.execute(sql, params)]


def top(conn: Connection, since: float, limit: int, sandbox: str | None) -> list[RequestRecord]:
    """See Ledger.top."""
    where, args = _sandbox_filter(sandbox)
    # Two plans: walk the cost index from the top until `limit` rows match, or read the window
    # through the time index and sort. Pick by the row counts the rollup knows.
    in_window = (
        conn.execute(
            f"SELECT SUM(requests - unpriced) FROM usage_hourly WHERE hour >= ?{where}",
            (hour_of(since), *args),
        ).fetchone()[0]
        or 0
    )
    total = conn.execute("SELECT SUM(requests - unpriced) FROM usage_hourly").fetchone()[0] or 0
    walk = limit * total / max(in_window, 1)
    index = "requests_by_cost" if walk < in_window else "requests_by_time"
    return _records(
        conn,
        f"{SELECT_REQUEST} INDEXED BY {index} WHERE cost_nanos IS NOT NULL "
        f"AND started_at >= ?{where} ORDER BY cost_nanos DESC, started_at DESC "
        "LIMIT ?",
        (since, *args, limit),
    )


def errors(conn: Connection, since: float, limit: int, sandbox: str | None) -> list[RequestRecord]:
    """See Ledger.errors."""
    where, args = _sandbox_filter(sandbox)
    return _records(
        conn,
        f"{SELECT_REQUEST} INDEXED BY requests_errors_by_time "
        f"WHERE outcome = 'error' AND started_at >= ?{where} "
        "ORDER BY started_at DESC LIMIT ?",
        (since, *args, limit),
    )


def recent(
    conn: Connection, limit: int, before: str | float | None, sandbox: str | None
) -> list[RequestRecord]:
    """See Ledger.recent."""
    where, args = _sandbox_filter(sandbox)
    order = " ORDER BY started_at DESC, seq DESC LIMIT ?"
    if before is None:
        return _records(conn, f"{SELECT_REQUEST} WHERE 1{where}{order}", (*args, limit))
    if isinstance(before, str):
        row = conn.execute("SELECT started_at, seq FROM requests WHERE id = ?", (before,)).fetchone()
        if row is None:
            return []
        return _records(
            conn, f"{SELECT_REQUEST} WHERE (started_at, seq) < (?, ?){where}{order}", (*row, *args, limit)
        )
    return _records(
        conn, f"{SELECT_REQUEST} WHERE started_at < ?{where}{order}", (float(before), *args, limit)
    )


def get(conn: Connection, request_id: str) -> RequestRecord | None:
    """See Ledger.get."""
    row = conn.execute(f"{SELECT_REQUEST} WHERE id = ?", (request_id,)).fetchone()
    if row is None:
        return None
    record = request_from_row(row)
    record.attempts = [attempt_from_row(a) for a in conn.execute(SELECT_ATTEMPTS, (request_id,))]
    return record


def count(conn: Connection) -> int:
    """Rows in the ledger (from the rollup, which counts each row once)."""
    return int(conn.execute("SELECT SUM(requests) FROM usage_hourly").fetchone()[0] or 0)
