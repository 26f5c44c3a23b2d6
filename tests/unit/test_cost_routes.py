"""The /v1/costs API over a real ledger (SQLite), served by a real Starlette app.

HTTP goes through httpx's ASGI transport; the live tail through a real uvicorn on a unix
socket and the console's own client. The seeded ledger here is also what the Costs screen
and ``moltconsole costs`` tests read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.cost_routes import cost_routes
from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_shared.wire.records import AttemptRecord, Cost, RequestRecord, Usage
from moltconsole_shared.wire.records_json import from_json
from tests.unit.test_client import serve_asgi

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: "now" for every seeded figure
HOUR = 3600.0
DAY = 86_400.0
USD = 1_000_000_000
DAILY_BUDGET = 2 * USD
MONTHLY_BUDGET = 40 * USD

# USD per million tokens: (input, output, cache read, cache write 5m); per token this is
# exactly (rate * 1000) nano-dollars.
RATES = {
    "claude-sonnet-4-5": (3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": (1.0, 5.0, 0.10, 1.25),
}


def priced(model: str, usage: Usage) -> Cost:
    """The cost of ``usage`` at :data:`RATES` (None for a model without a price)."""
    if model not in RATES:
        return Cost(total_nanos=None)
    inp, out, read, write = (int(r * 1000) for r in RATES[model])
    total = (usage.input_tokens * inp + usage.output_tokens * out
             + usage.cache_read_tokens * read + usage.cache_write_5m_tokens * write)
    savings = usage.cache_read_tokens * (inp - read) - usage.cache_write_5m_tokens * (write - inp)
    return Cost(total_nanos=total, cache_savings_nanos=savings, pricing_version="2026-11-01")


def request(
    rid: str, started_at: float, model: str, usage: Usage, *, trigger: str = "user",
    outcome: str = "ok", status: int = 200, error_kind: str | None = None,
    error_message: str | None = None, api: str = "anthropic-messages", provider: str = "anthropic",
    requested_model: str | None = None, sandbox: str = "main", duration_ms: float = 4200.0,
    ttfb_ms: float | None = 650.0, attempts: list[AttemptRecord] | None = None,
) -> RequestRecord:
    """One request as the proxy would record it; one attempt unless given."""
    cost = priced(model, usage)
    if attempts is None:
        attempts = [AttemptRecord(
            attempt=1, started_at=started_at, provider=provider, model=model, status=status,
            error_kind=error_kind, ttfb_ms=ttfb_ms, duration_ms=duration_ms, usage=usage,
            cost_nanos=cost.total_nanos,
        )]
    return RequestRecord(
        id=rid, started_at=started_at, sandbox=sandbox, api=api,  # type: ignore[arg-type]
        provider=provider, model=model, requested_model=requested_model or model, stream=True,
        status=status, outcome=outcome, error_kind=error_kind,  # type: ignore[arg-type]
        error_message=error_message, ttfb_ms=ttfb_ms, duration_ms=duration_ms, overhead_ms=0.4,
        usage=usage, cost=cost, trigger=trigger, attempts=attempts,  # type: ignore[arg-type]
    )


def chat(tokens_in: int, tokens_out: int, cache_read: int = 0, cache_write: int = 0,
         reasoning: int = 0) -> Usage:
    return Usage(input_tokens=tokens_in, output_tokens=tokens_out, cache_read_tokens=cache_read,
                 cache_write_5m_tokens=cache_write, reasoning_tokens=reasoning, source="provider")


def seeded_records(now: float = T0) -> list[RequestRecord]:
    """A month of an agent's traffic up to ``now``, fixed to the second; the last day in detail.

    Last 24 hours: a conversation in the afternoon (Sonnet, with prompt caching and tool
    turns), heartbeats every two hours through the night (Haiku; idle spend), one request
    overloaded after three attempts, one served by a fallback model, one cancelled, two on a
    model without a price. Earlier days: three conversations and four heartbeats each.
    """
    records: list[RequestRecord] = []
    # The afternoon conversation: 15:00 to 17:00 yesterday.
    for i in range(8):
        at = now - 17 * HOUR + i * 900
        records.append(request(
            f"conv-{i}", at, "claude-sonnet-4-5",
            chat(1_800 + 150 * i, 900 + 120 * i, cache_read=30_000 + 4_000 * i,
                 cache_write=2_500, reasoning=200 if i % 3 == 0 else 0),
            trigger="user" if i % 2 == 0 else "tool", duration_ms=3_000 + 700 * i,
            ttfb_ms=500 + 40 * i,
        ))
    # Heartbeats through the night, no user around.
    for i in range(8):
        at = now - 15 * HOUR + i * 2 * HOUR + 60
        records.append(request(
            f"beat-{i}", at, "claude-haiku-4-5", chat(600, 80, cache_read=18_000),
            trigger="heartbeat", duration_ms=1_200 + 10 * i, ttfb_ms=300 + 5 * i,
        ))
    # Memory consolidation overnight: background work on Sonnet.
    records.append(request(
        "dream-1", now - 5 * HOUR - 1_200, "claude-sonnet-4-5", chat(9_000, 2_400, cache_read=12_000),
        trigger="background", duration_ms=21_000, ttfb_ms=900,
    ))
    # Overloaded three times: the agent got the error.
    at = now - 16 * HOUR + 30
    records.append(request(
        "err-overload", at, "claude-sonnet-4-5", Usage(), outcome="error", status=529,
        error_kind="overloaded_error", error_message="Overloaded", duration_ms=2_900, ttfb_ms=None,
        attempts=[
            AttemptRecord(attempt=n, started_at=at + (n - 1) * 1.0, provider="anthropic",
                          model="claude-sonnet-4-5", status=529, error_kind="overloaded_error",
                          duration_ms=420.0 + n)
            for n in (1, 2, 3)
        ],
    ))
    # Served by the fallback after the first model failed to connect.
    at = now - 15 * HOUR - 420
    usage = chat(2_100, 640, cache_read=25_000)
    records.append(request(
        "fallback-1", at, "claude-haiku-4-5", usage, requested_model="claude-sonnet-4-5",
        duration_ms=5_100, attempts=[
            AttemptRecord(attempt=1, started_at=at, provider="anthropic", model="claude-sonnet-4-5",
                          status=0, error_kind="connect", duration_ms=10.0),
            AttemptRecord(attempt=2, started_at=at + 0.6, provider="anthropic",
                          model="claude-haiku-4-5", status=200, ttfb_ms=410.0, duration_ms=4_400.0,
                          usage=usage, cost_nanos=priced("claude-haiku-4-5", usage).total_nanos),
        ],
    ))
    # The agent went away mid-stream: partial usage, billed as far as it went.
    records.append(request(
        "cancel-1", now - 16 * HOUR - 600, "claude-sonnet-4-5",
        Usage(input_tokens=2_000, output_tokens=150, cache_read_tokens=30_000, source="partial"),
        outcome="cancelled", status=200, duration_ms=1_700,
    ))
    # A model with no price: counted, flagged, never $0.
    for i in range(2):
        records.append(request(
            f"mini-{i}", now - 3 * HOUR + i * 600, "gpt-5-mini", chat(3_000, 500),
            api="openai-chat", provider="openai", trigger="user", duration_ms=2_600, ttfb_ms=380,
        ))
    # The newest: two minutes ago.
    records.append(request(
        "latest", now - 120, "claude-sonnet-4-5", chat(2_400, 1_100, cache_read=52_000,
                                                       cache_write=3_100),
        duration_ms=6_400, ttfb_ms=720,
    ))
    # Earlier days, lighter and repetitive.
    for day in range(1, 30):
        base = now - day * DAY - 16 * HOUR
        for j in range(3):
            records.append(request(
                f"d{day}-u{j}", base + j * 1_800, "claude-sonnet-4-5",
                chat(1_500 + 100 * (day % 5), 700 + 50 * j, cache_read=20_000 + 1_000 * (day % 7),
                     cache_write=1_500),
                duration_ms=3_500 + 100 * j,
            ))
        for j in range(4):
            records.append(request(
                f"d{day}-h{j}", base - 10 * HOUR + j * 2 * HOUR, "claude-haiku-4-5",
                chat(600, 80, cache_read=18_000), trigger="heartbeat", duration_ms=1_100,
                ttfb_ms=290,
            ))
    return records


def open_ledger(path: Path, records: list[RequestRecord] | None = None) -> Ledger:
    """A real ledger at ``path`` (UTC days), holding ``records`` (committed)."""
    ledger = Ledger(path, tz=UTC)
    ledger.open()
    if records:
        ledger.record_many(records)
        ledger.flush(timeout=30)
    return ledger


def budgets() -> tuple[int | None, int | None]:
    return DAILY_BUDGET, MONTHLY_BUDGET


WARN_PERCENT = 80.0  # gateway.budget_warn_percent's default


def health_route() -> Route:
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"backend": "moltconsole", "version": "test", "pid": 0, "uptime": 0})

    return Route("/v1/health", health)


def cost_app(ledger: Ledger, warn_percent: float = WARN_PERCENT) -> Starlette:
    """The cost routes as the backend mounts them, plus /v1/health for the launcher."""
    routes: list[BaseRoute] = [health_route(), *cost_routes(ledger, budgets, warn_percent=warn_percent)]
    return Starlette(routes=routes)


@contextlib.contextmanager
def serve_in_thread(app: Starlette, path: Path) -> Iterator[None]:
    """Serve ``app`` with uvicorn on a unix socket from a thread with its own event loop.

    For code that runs its own loop (``cli.main``, ``snap_compare``). The socket listens before
    the thread starts, so clients may connect at once.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="websockets-sansio",
        ws_ping_interval=None, timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name="cost-api", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.contextmanager
def local_time_utc() -> Iterator[None]:
    """Local time is UTC meanwhile (screens and the CLI show local times)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def seeded(short_dir: Path) -> Iterator[Ledger]:
    ledger = open_ledger(short_dir / "ledger.sqlite", seeded_records())
    yield ledger
    ledger.close()


@contextlib.asynccontextmanager
async def http(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cost_app(ledger))
    async with httpx.AsyncClient(transport=transport, base_url="http://moltconsole") as client:
        yield client


async def get(ledger: Ledger, path: str, **params: Any) -> httpx.Response:
    async with http(ledger) as client:
        return await client.get(path, params=params)


# --- summary and breakdowns -------------------------------------------------------------------
async def test_summary_fills_budgets_and_counts_the_window(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/summary", window="24h", now=T0)
    assert response.status_code == 200
    data = response.json()
    expected = seeded.summary(now=T0, window_seconds=DAY)
    assert data["daily_budget_nanos"] == DAILY_BUDGET
    assert data["monthly_budget_nanos"] == MONTHLY_BUDGET
    assert data["today_nanos"] == expected.today_nanos > 0
    assert data["requests"] == expected.requests == 8 + 8 + 1 + 1 + 1 + 1 + 2 + 1
    assert data["errors"] == 1
    assert data["unpriced"] == 2
    assert data["idle_nanos"] > 0 and data["background_nanos"] > 0
    assert data["duration"]["p50_ms"] is not None


async def test_summary_says_where_the_budget_warning_starts(seeded: Ledger) -> None:
    # The console draws its warn mark there: it does not read the backend's configuration.
    app = cost_app(seeded, warn_percent=65.0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as client:
        response = await client.get("/v1/costs/summary", params={"now": T0})
    assert response.json()["budget_warn_percent"] == 65.0


async def test_summary_sandbox_filter(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/summary", now=T0, sandbox="other")
    data = response.json()
    assert data["requests"] == 0 and data["month_nanos"] == 0


async def test_models_match_the_ledger_and_flag_unpriced(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/models", since="24h", now=T0)
    data = response.json()
    assert data["since"] == T0 - DAY and data["until"] == T0
    by_name = {row["model"]: row for row in data["models"]}
    assert set(by_name) == {"claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5-mini"}
    mini = by_name["gpt-5-mini"]
    assert mini["unpriced"] == 2 and mini["cost_nanos"] == 0 and mini["input_tokens"] == 6_000
    haiku = by_name["claude-haiku-4-5"]
    # Eight heartbeats and the fallback, priced by hand at the Haiku rates.
    beats = 8 * (600 * 1000 + 80 * 5000 + 18_000 * 100)
    fallback = 2_100 * 1000 + 640 * 5000 + 25_000 * 100
    assert haiku["cost_nanos"] == beats + fallback
    assert haiku["cache_savings_nanos"] == (8 * 18_000 + 25_000) * (1000 - 100)


async def test_days_and_absolute_since(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/days", since=str(T0 - 3 * DAY), now=T0)
    days = response.json()["days"]
    assert [d["day"] for d in days] == ["2027-01-12", "2027-01-13", "2027-01-14", "2027-01-15"]
    assert all(d["requests"] > 0 for d in days)


async def test_series_buckets_sum_to_the_window(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/series", since="24h", buckets="24", now=T0)
    data = response.json()
    assert data["buckets"] == 24 and len(data["points"]) == 24
    assert data["points"][0]["start"] == T0 - DAY
    models = (await get(seeded, "/v1/costs/models", since="24h", now=T0)).json()["models"]
    assert sum(p["cost_nanos"] for p in data["points"]) == sum(m["cost_nanos"] for m in models)


# --- requests ------------------------------------------------------------------------------------
async def test_top_requests_are_costliest_first_and_decode(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/requests", kind="top", since="24h", limit="3", now=T0)
    rows = [from_json(r) for r in response.json()["requests"]]
    assert len(rows) == 3
    costs = [r.cost.total_nanos for r in rows]
    assert costs == sorted(costs, reverse=True)  # type: ignore[type-var]
    assert rows[0].id == "dream-1"


async def test_errors_and_recent_paging(seeded: Ledger) -> None:
    errors = (await get(seeded, "/v1/costs/requests", kind="errors", since="24h", now=T0)).json()
    assert [r["id"] for r in errors["requests"]] == ["err-overload"]
    first = (await get(seeded, "/v1/costs/requests", kind="recent", limit="2")).json()["requests"]
    assert [r["id"] for r in first] == ["latest", "beat-7"]
    # before= is an id or epoch seconds, handed to the ledger as such (its paging is its own).
    more = (await get(seeded, "/v1/costs/requests", kind="recent", limit="2",
                      before=first[-1]["id"])).json()["requests"]
    assert [r["id"] for r in more] == [r.id for r in seeded.recent(limit=2, before="beat-7")]
    assert "latest" not in [r["id"] for r in more]
    by_time = (await get(seeded, "/v1/costs/requests", kind="recent", limit="1",
                         before=str(T0 - 3 * HOUR))).json()["requests"]
    assert [r["id"] for r in by_time] == [r.id for r in seeded.recent(limit=1, before=T0 - 3 * HOUR)]
    assert [r["id"] for r in by_time] == ["beat-5"]  # mini-0 started at T0 - 3h, not before


async def test_one_request_has_every_attempt(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/requests/err-overload")
    record = from_json(response.json())
    assert [a.attempt for a in record.attempts] == [1, 2, 3]
    assert record.error_kind == "overloaded_error" and record.cost.total_nanos == 0


async def test_unknown_request_is_404_with_a_hint(seeded: Ledger) -> None:
    response = await get(seeded, "/v1/costs/requests/nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["kind"] == "not_found" and "/v1/costs/requests" in error["message"]


# --- bad parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "params", "says"), [
    ("/v1/costs/summary", {"window": "soon"}, "window must be a duration such as 90s, 10m, 24h"),
    ("/v1/costs/summary", {"window": "0h"}, "more than 0"),
    ("/v1/costs/summary", {"windw": "24h"}, "unknown parameter 'windw'"),
    ("/v1/costs/models", {"since": "yesterday"}, "since must be a duration ago"),
    ("/v1/costs/models", {"since": "1d", "until": "2d"}, "until must be later than since"),
    ("/v1/costs/series", {"buckets": "0"}, "buckets must be from 1 to 1000"),
    ("/v1/costs/series", {"buckets": "many"}, "buckets must be a whole number"),
    ("/v1/costs/requests", {"kind": "cheap"}, "kind must be one of top, errors, recent"),
    ("/v1/costs/requests", {"kind": "top", "before": "x"}, "before pages kind=recent"),
    ("/v1/costs/requests", {"kind": "recent", "since": "1d"}, "since applies to kind=top"),
    ("/v1/costs/requests", {"limit": "100000"}, "limit must be from 1 to 1000"),
    ("/v1/costs/summary", {"now": "nan"}, "now must be epoch seconds"),
])
async def test_bad_parameters_are_400_and_say_what_to_send(
    seeded: Ledger, path: str, params: dict[str, str], says: str,
) -> None:
    response = await get(seeded, path, **params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["kind"] == "request"
    assert says in error["message"]


async def test_repeated_parameter_is_refused(seeded: Ledger) -> None:
    async with http(seeded) as client:
        response = await client.get("/v1/costs/summary?window=24h&window=7d")
    assert response.status_code == 400
    assert "given twice" in response.json()["error"]["message"]


async def test_a_failing_ledger_answers_500_in_json(short_dir: Path) -> None:
    ledger = open_ledger(short_dir / "ledger.sqlite")
    ledger.close()  # every query now fails
    response = await get(ledger, "/v1/costs/summary")
    assert response.status_code == 500
    assert response.json()["error"]["kind"] == "internal"


# --- the client against the real routes ---------------------------------------------------------
async def test_client_methods_decode_every_resource(seeded: Ledger, short_dir: Path) -> None:
    sock = short_dir / "api.sock"
    async with serve_asgi(cost_app(seeded), sock), BackendClient(sock) as client:
        summary = await client.costs_summary(window="7d", now=T0)
        assert summary.window_seconds == 7 * DAY and summary.daily_budget_nanos == DAILY_BUDGET
        models = await client.costs_models(since="7d", now=T0)
        assert models[0].cost_nanos >= models[-1].cost_nanos
        days = await client.costs_days(since="7d", now=T0)
        assert len(days) == 8
        points = await client.costs_series(since=T0 - DAY, until=T0, buckets=6, now=T0)
        assert [p.start for p in points] == [T0 - DAY + i * 4 * HOUR for i in range(6)]
        top = await client.costs_requests("top", since="24h", limit=1, now=T0)
        assert [r.id for r in top] == ["dream-1"]
        record = await client.costs_request("fallback-1")
        assert record.requested_model == "claude-sonnet-4-5" and len(record.attempts) == 2
        with pytest.raises(BackendError) as caught:
            await client.costs_request("missing/../id")
        assert caught.value.status == 404 and caught.value.kind == "not_found"


# --- the live tail -------------------------------------------------------------------------------
async def next_message(stream: Any) -> dict[str, Any]:
    message: dict[str, Any] = await asyncio.wait_for(anext(stream), 10)
    return message


async def test_tail_sends_records_committed_after_ready(short_dir: Path) -> None:
    ledger = open_ledger(short_dir / "ledger.sqlite")
    sock = short_dir / "api.sock"
    try:
        async with serve_asgi(cost_app(ledger), sock), BackendClient(sock) as client:
            stream = client.costs_tail()
            assert await next_message(stream) == {"type": "ready"}
            new = seeded_records()[:3]
            ledger.record_many(new)
            got: list[RequestRecord] = []
            while len(got) < 3:
                message = await next_message(stream)
                assert message["type"] == "batch" and message["dropped"] == 0
                got.extend(message["records"])
            assert got == new  # the whole record, attempts included, as it was recorded
            await stream.aclose()
    finally:
        ledger.close()


async def test_tail_sandbox_filter(short_dir: Path) -> None:
    ledger = open_ledger(short_dir / "ledger.sqlite")
    sock = short_dir / "api.sock"
    try:
        async with serve_asgi(cost_app(ledger), sock), BackendClient(sock) as client:
            stream = client.costs_tail(sandbox="b")
            assert (await next_message(stream))["type"] == "ready"
            usage = chat(10, 10)
            ledger.record(request("in-a", T0, "claude-haiku-4-5", usage, sandbox="a"))
            ledger.record(request("in-b", T0 + 1, "claude-haiku-4-5", usage, sandbox="b"))
            message = await next_message(stream)
            assert [r.id for r in message["records"]] == ["in-b"]
            await stream.aclose()
    finally:
        ledger.close()


async def test_tail_counts_what_a_slow_reader_lost(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moltconsole_backend.api import cost_routes as module

    monkeypatch.setattr(module, "TAIL_QUEUE", 5)
    ledger = open_ledger(short_dir / "ledger.sqlite")
    sock = short_dir / "api.sock"
    try:
        async with serve_asgi(cost_app(ledger), sock), BackendClient(sock) as client:
            stream = client.costs_tail()
            assert (await next_message(stream))["type"] == "ready"
            # The server runs on this test's loop. Flushing without awaiting holds the loop
            # while the writer commits and calls the listener (before flush returns) 40 times:
            # the 40 hand-overs then run back to back, before the sender can take any.
            records = seeded_records()[:40]
            ledger.record_many(records)
            ledger.flush(timeout=30)
            seen = dropped = 0
            while seen + dropped < 40:
                message = await next_message(stream)
                seen += len(message["records"])
                dropped += message["dropped"]
            assert seen == 5 and dropped == 35
            await stream.aclose()
    finally:
        ledger.close()


async def test_tail_listener_is_removed_when_the_client_leaves(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = open_ledger(short_dir / "ledger.sqlite")
    listening: list[Any] = []
    removed = asyncio.Event()
    add, remove = ledger.add_listener, ledger.remove_listener

    def adding(callback: Any) -> None:
        listening.append(callback)
        add(callback)

    def removing(callback: Any) -> None:
        listening.remove(callback)
        remove(callback)
        removed.set()

    monkeypatch.setattr(ledger, "add_listener", adding)
    monkeypatch.setattr(ledger, "remove_listener", removing)
    sock = short_dir / "api.sock"
    try:
        async with serve_asgi(cost_app(ledger), sock), BackendClient(sock) as client:
            stream = client.costs_tail()
            assert (await next_message(stream))["type"] == "ready"
            assert len(listening) == 1
            await stream.aclose()
            await asyncio.wait_for(removed.wait(), 10)
            assert listening == []
    finally:
        ledger.close()
