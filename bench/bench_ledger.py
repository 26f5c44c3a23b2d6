"""The ledger at 1,000,000 rows: write throughput and the latency of every query.

Builds a ledger of N requests spread over 60 days (a daily rhythm, 4 sandboxes, 7 models of two
providers, ~3 % errors, ~1 % unpriced, ~5 % imported from Cloudflare, some retries), all through
the real write path: the first part one ``record()`` call per request, the rest with
``record_many()`` in chunks, both ending in ``flush()``. Then times each query method:
   cold: the first call on a freshly opened Ledger (new SQLite connections, empty page cache;
         the OS file cache is warm, as on a running server);
   warm: repeated calls on the same Ledger.
and prints median and max of each next to the target (< 100 ms for cost queries over 1M rows),
plus the median CPU time of the warm calls: on a shared machine the wall-clock maxima include
waiting for a core, so the load average is printed too.

Usage: .venv/bin/python bench/bench_ledger.py [--rows N] [--record-rows N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_shared.wire.records import AttemptRecord, Cost, RequestRecord, Trigger, Usage

DAY = 86400.0
TARGET_MS = 100.0
# provider, model, $/M input, $/M output (None: unpriced)
MODELS: list[tuple[str, str, float | None, float | None]] = [
    ("anthropic", "claude-sonnet-4-5", 3.0, 15.0),
    ("anthropic", "claude-opus-4-1", 15.0, 75.0),
    ("anthropic", "claude-haiku-4-5", 1.0, 5.0),
    ("openai", "gpt-5", 1.25, 10.0),
    ("openai", "gpt-5-mini", 0.25, 2.0),
    ("openai", "gpt-4.1", 2.0, 8.0),
    ("openai", "local-llama-70b", None, None),
]
# sandbox -> (share of traffic, model indexes it uses with weights)
SANDBOXES: dict[str, tuple[float, list[tuple[int, float]]]] = {
    "main": (0.55, [(0, 6), (1, 1), (2, 2), (6, 0.15)]),
    "research": (0.25, [(1, 2), (3, 3), (4, 1), (6, 0.1)]),
    "ops": (0.15, [(2, 3), (4, 3), (5, 2)]),
    "demo": (0.05, [(0, 1), (5, 1)]),
}
TRIGGERS: tuple[Trigger, ...] = ("user", "tool", "heartbeat", "background")
TRIGGER_WEIGHTS = (0.35, 0.45, 0.12, 0.08)


def make_records(count: int, end: float, seed: int = 7) -> list[RequestRecord]:
    """``count`` requests over the 60 days before ``end``, in time order."""
    rng = random.Random(seed)
    times: list[float] = []
    while len(times) < count:  # busier by day than by night
        t = end - rng.random() * 60 * DAY
        hour = (t % DAY) / 3600
        if rng.random() < 0.35 + 0.65 * math.sin(math.pi * hour / 24) ** 2:
            times.append(t)
    times.sort()
    names = list(SANDBOXES)
    shares = [SANDBOXES[n][0] for n in names]
    out: list[RequestRecord] = []
    for t in times:
        sandbox = rng.choices(names, shares)[0]
        options = SANDBOXES[sandbox][1]
        provider, model, rate_in, rate_out = MODELS[
            rng.choices([i for i, _ in options], [w for _, w in options])[0]
        ]
        imported = sandbox == "ops" and rng.random() < 0.35
        roll = rng.random()
        outcome = "error" if roll < 0.03 else "cancelled" if roll < 0.037 else "ok"
        usage = Usage(
            input_tokens=int(rng.lognormvariate(6, 1.2)),
            output_tokens=int(rng.lognormvariate(5.5, 1.0)),
            cache_read_tokens=int(rng.lognormvariate(9, 1.0)) if rng.random() < 0.7 else 0,
            cache_write_5m_tokens=int(rng.lognormvariate(7, 1.0)) if rng.random() < 0.2 else 0,
            source="imported" if imported else "partial" if outcome == "cancelled" else "provider",
        )
        if outcome == "error":
            usage = Usage(source="none")
        if rate_in is None or rate_out is None:
            cost = Cost(total_nanos=None)
        else:
            nanos = (
                usage.input_tokens * rate_in
                + usage.output_tokens * rate_out
                + usage.cache_read_tokens * rate_in * 0.1
                + usage.cache_write_5m_tokens * rate_in * 1.25
            ) * 1000
            saved = usage.cache_read_tokens * rate_in * 0.9 * 1000
            cost = Cost(total_nanos=int(nanos), cache_savings_nanos=int(saved), pricing_version="2025-10-01")
        duration = rng.lognormvariate(8.3, 0.8)  # ~4 s median
        ttfb = min(duration, rng.lognormvariate(6.7, 0.5))  # ~800 ms median
        rid = f"{rng.getrandbits(128):032x}"
        attempts = [
            AttemptRecord(
                1,
                t,
                provider,
                model,
                200 if outcome != "error" else 529,
                ttfb_ms=ttfb,
                duration_ms=duration,
                usage=usage,
                cost_nanos=cost.total_nanos,
            )
        ]
        if rng.random() < 0.03:  # a retry after an overload
            attempts.insert(
                0, AttemptRecord(1, t, provider, model, 529, "overloaded_error", duration_ms=300.0)
            )
            attempts[1].attempt = 2
        out.append(
            RequestRecord(
                id=("cf:" + rid) if imported else rid,
                started_at=t,
                sandbox=sandbox,
                api="anthropic-messages" if provider == "anthropic" else "openai-chat",
                provider=provider,
                model=model,
                requested_model=model,
                stream=True,
                status=529 if outcome == "error" else 200,
                outcome=outcome,  # type: ignore[arg-type]
                error_kind="overloaded_error" if outcome == "error" else None,
                error_message="Overloaded" if outcome == "error" else None,
                ttfb_ms=None if outcome == "error" else ttfb,
                duration_ms=duration,
                overhead_ms=0.4,
                usage=usage,
                cost=cost,
                trigger="unknown" if imported else rng.choices(TRIGGERS, TRIGGER_WEIGHTS)[0],
                origin="cloudflare" if imported else "proxy",
                attempts=[] if imported else attempts,
            )
        )
    return out


def build(path: Path, records: list[RequestRecord], record_rows: int) -> None:
    with Ledger(path) as ledger:
        first, rest = records[:record_rows], records[record_rows:]
        started = time.perf_counter()
        for r in first:
            ledger.record(r)
        queued = time.perf_counter() - started
        ledger.flush()
        took = time.perf_counter() - started
        print(
            f"record():      {len(first):>9,} rows in {took:6.2f} s = {len(first) / took:>9,.0f} rows/s "
            f"(the calls alone: {queued / len(first) * 1e6:.2f} us each)"
        )
        started = time.perf_counter()
        for i in range(0, len(rest), 50_000):
            ledger.record_many(rest[i : i + 50_000])
        ledger.flush()
        took = time.perf_counter() - started
        if rest:
            print(f"record_many(): {len(rest):>9,} rows in {took:6.2f} s = {len(rest) / took:>9,.0f} rows/s")
        assert ledger.count() == len(records), (ledger.count(), len(records))
        print(f"rejected: {ledger.rejected}")


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds of one call (SQLite runs on the calling thread)."""
    started, cpu = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--record-rows",
        type=int,
        default=100_000,
        help="how many of the rows go through one record() call each",
    )
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--warm-runs", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="build into (or reuse) this directory")
    args = parser.parse_args()

    load = os.getloadavg()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    path = workdir / "ledger.sqlite"
    end = time.time()
    try:
        if not path.exists():
            started = time.perf_counter()
            records = make_records(args.rows, end)
            print(f"generated {len(records):,} records in {time.perf_counter() - started:.1f} s")
            build(path, records, min(args.record_rows, len(records)))
            del records
        size = sum(p.stat().st_size for p in workdir.glob("ledger.sqlite*"))
        print(f"ledger file: {size / 1e6:.0f} MB")

        with Ledger(path) as probe:
            now = probe.recent(1)[0].started_at + 1
            some_id = probe.recent(1, before=now - 20 * DAY)[0].id
            page_cursor = probe.recent(50)[-1].id
            rows = probe.count()
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        queries: list[tuple[str, Callable[[Ledger], Any]]] = [
            ("summary() 24h window", lambda L: L.summary(now)),
            ("summary() 30d window", lambda L: L.summary(now, window_seconds=30 * DAY)),
            ("summary(sandbox=demo)", lambda L: L.summary(now, sandbox="demo")),
            ("spend_nanos(today)", lambda L: L.spend_nanos(midnight.timestamp())),
            ("spend_nanos(30d, main)", lambda L: L.spend_nanos(now - 30 * DAY, sandbox="main")),
            ("by_model(7d)", lambda L: L.by_model(now - 7 * DAY, now)),
            ("by_model(60d)", lambda L: L.by_model(now - 61 * DAY, now)),
            ("by_model(30d, ops)", lambda L: L.by_model(now - 30 * DAY, now, sandbox="ops")),
            ("by_day(30d)", lambda L: L.by_day(now - 30 * DAY, now)),
            ("by_day(60d)", lambda L: L.by_day(now - 61 * DAY, now)),
            ("by_day(60d) Asia/Kolkata", lambda L: L.by_day(now - 61 * DAY, now)),
            ("series(24h, 96)", lambda L: L.series(now - DAY, now, 96)),
            ("series(7d, 168)", lambda L: L.series(now - 7 * DAY, now, 168)),
            ("series(30d, 120)", lambda L: L.series(now - 30 * DAY, now, 120)),
            ("series(60d, 240)", lambda L: L.series(now - 60 * DAY, now, 240)),
            ("top(24h, 20)", lambda L: L.top(now - DAY)),
            ("top(30d, 20)", lambda L: L.top(now - 30 * DAY)),
            ("top(1h, 20)", lambda L: L.top(now - 3600)),
            ("top(7d, 20, demo)", lambda L: L.top(now - 7 * DAY, sandbox="demo")),
            ("errors(7d, 50)", lambda L: L.errors(now - 7 * DAY)),
            ("recent(50)", lambda L: L.recent(50)),
            ("recent(50, before=id)", lambda L: L.recent(50, before=page_cursor)),
            ("recent(50, before=epoch)", lambda L: L.recent(50, before=now - 30 * DAY)),
            ("get(id)", lambda L: L.get(some_id)),
            ("count()", lambda L: L.count()),
        ]
        print(
            f"\nqueries over {rows:,} rows; milliseconds (cold: first call on a fresh Ledger, "
            f"{args.cold_runs} runs; warm: {args.warm_runs} runs)"
        )
        print(
            f"{'query':<28}{'cold med':>10}{'cold max':>10}{'warm med':>10}{'warm max':>10}"
            f"{'warm cpu':>10}{'target':>9}  ok"
        )
        worst = 0.0
        for name, query in queries:
            # A zone with a half-hour offset: every local midnight cuts a rollup hour.
            tz = ZoneInfo("Asia/Kolkata") if "Kolkata" in name else None
            cold: list[float] = []
            for _ in range(args.cold_runs):
                with Ledger(path, tz=tz) as fresh:
                    cold.append(timed(lambda q=query, f=fresh: q(f))[0])  # type: ignore[misc]
            with Ledger(path, tz=tz) as ledger:
                query(ledger)
                runs = [timed(lambda q=query, g=ledger: q(g)) for _ in range(args.warm_runs)]  # type: ignore[misc]
            warm, cpu = [w for w, _ in runs], [c for _, c in runs]
            worst = max(worst, max(cold), max(warm))
            ok = "yes" if max(max(cold), max(warm)) < TARGET_MS else "NO"
            print(
                f"{name:<28}{statistics.median(cold):>10.2f}{max(cold):>10.2f}"
                f"{statistics.median(warm):>10.2f}{max(warm):>10.2f}{statistics.median(cpu):>10.2f}"
                f"{'< 100':>9}  {ok}"
            )
        print(
            f"\nslowest call: {worst:.2f} ms (target < {TARGET_MS:.0f} ms); load average "
            f"before {load[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
