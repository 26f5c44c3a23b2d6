"""What the wire schema costs per request record: building one, writing its JSON, reading it back.

The gateway builds one RequestRecord per request the agent makes and hands it to the ledger; the
cost API writes records as JSON (a page of 50 for ``/v1/costs/requests``, batches on the tail)
and the console reads them back, validating each. Each figure is the best of ``--repeat`` runs
of ``--count`` records (best, not mean: on a shared machine the slower runs measure the
neighbours), in microseconds per record.

Usage: .venv/bin/python bench/bench_wire.py [--count N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from moltconsole_shared.wire import records_json
from moltconsole_shared.wire.records import AttemptRecord, Cost, RequestRecord, Usage
from moltconsole_shared.wire.records_json import REQUESTS_PAGE, RequestsPage


def build(i: int) -> RequestRecord:
    """A record as the gateway fills one: a retry after an overload, then a priced answer."""
    usage = Usage(input_tokens=1200 + i, output_tokens=800, cache_read_tokens=40_000, source="provider")
    return RequestRecord(
        id=f"{i:032x}", started_at=1_800_000_000.0 + i, sandbox="main", api="anthropic-messages",
        provider="anthropic", model="claude-sonnet-4-5", requested_model="claude-sonnet-4-5",
        stream=True, status=200, outcome="ok", ttfb_ms=412.5, duration_ms=8123.0, overhead_ms=0.31,
        usage=usage,
        cost=Cost(total_nanos=61_350_000 + i, cache_savings_nanos=97_125_000, pricing_version="2026-11-01"),
        trigger="tool",
        attempts=[
            AttemptRecord(1, 1_800_000_000.0 + i, "anthropic", "claude-sonnet-4-5", 529, "overloaded_error",
                          duration_ms=210.0),
            AttemptRecord(2, 1_800_000_000.2 + i, "anthropic", "claude-sonnet-4-5", 200, ttfb_ms=300.0,
                          duration_ms=7400.0, usage=usage, cost_nanos=61_350_000 + i),
        ],
    )


def best(fn: Callable[[], Any], count: int, repeat: int) -> float:
    """Microseconds per record of the fastest of ``repeat`` calls of ``fn`` over ``count`` records."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return min(runs) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    count, repeat = args.count, args.repeat

    to_json, from_json = records_json.to_json, records_json.from_json
    records = [build(i) for i in range(count)]
    dicts = list(map(to_json, records))
    text = json.dumps({"requests": dicts})
    page = RequestsPage(kind="recent", requests=records)
    page_text = REQUESTS_PAGE.dump_json(page)
    figures = [
        ("build a RequestRecord (the gateway)", lambda: [build(i) for i in range(count)]),
        ("record -> JSON-ready dict", lambda: list(map(to_json, records))),
        ("records -> JSON text via dicts", lambda: json.dumps({"requests": list(map(to_json, records))})),
        ("page -> JSON text, one pass (the API)", lambda: REQUESTS_PAGE.dump_json(page)),
        ("JSON dict -> record, validated", lambda: list(map(from_json, dicts))),
        ("JSON text -> records via dicts", lambda: list(map(from_json, json.loads(text)["requests"]))),
        ("JSON text -> page, one pass", lambda: REQUESTS_PAGE.read_json(page_text)),
    ]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{count:,} records, best of {repeat}; load average {load}")
    for name, fn in figures:
        per = best(fn, count, repeat)
        print(f"{name:<40}{per:>8.2f} us/record {1e6 / per:>12,.0f} records/s")


if __name__ == "__main__":
    main()
