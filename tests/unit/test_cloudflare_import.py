"""The Cloudflare AI Gateway import: paging, the incremental cursor, retries, errors, cost.

Every test talks HTTP to a fake Cloudflare API (tests/support/fake_cloudflare.py) that speaks
the real envelope and pagination, and writes to a real ledger in tmp_path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from moltconsole_backend.gateway.cloudflare import (
    CACHE_HIT_PRICING,
    CLOUDFLARE_PRICING,
    CloudflareImporter,
    CloudflareImportError,
    ImportCursor,
    ImportResult,
    _retry_after,
    entry_to_record,
    usd_to_nanos,
)
from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_backend.gateway.pricing import PriceTable
from moltconsole_backend.settings import CloudflareSettings, GatewaySettings, PriceSettings
from tests.support.fake_cloudflare import FakeCloudflare, iso

TOKEN = "cf-test-token-0123456789"
# A model the test prices explicitly, so the expected figures do not depend on the shipped table.
PRICED_MODEL = "claude-test-priced"
UNPRICED_MODEL = "model-nobody-prices"


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    with FakeCloudflare(token=TOKEN, max_per_page=100) as server:
        yield server


@pytest_asyncio.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    book = Ledger(tmp_path / "ledger.sqlite")
    book.open()
    yield book
    book.close()


@pytest.fixture
def prices() -> PriceTable:
    gateway = GatewaySettings(prices={PRICED_MODEL: PriceSettings(input=3.0, output=15.0)})
    return make_price_table(gateway)


def make_price_table(gateway: GatewaySettings) -> PriceTable:
    return PriceTable(gateway)


class Sleeps:
    """Stands in for asyncio.sleep in the importer: records each delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def importer(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable, *, env: dict[str, str] | None = None,
    sleeps: Sleeps | None = None, **options: Any,
) -> CloudflareImporter:
    settings = CloudflareSettings(account_id=fake.account_id, gateway_id=fake.gateway_id,
                                  api_base=fake.api_base, import_interval=10)
    options.setdefault("per_page", 100)
    options.setdefault("lookback", 0.0)
    return CloudflareImporter(
        settings, ledger, prices, env={"CLOUDFLARE_API_TOKEN": TOKEN} if env is None else env,
        sleep=sleeps or Sleeps(), **options,
    )


def imported_ids(ledger: Ledger, fake: FakeCloudflare) -> set[str]:
    return {e["id"] for e in fake.logs if ledger.get(f"cf:{e['id']}") is not None}


# -- paging and the cursor ----------------------------------------------------------------------


async def test_first_import_reads_every_page_newest_first(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(250)
    result = await importer(fake, ledger, prices).import_once()
    assert (result.pages, result.imported, result.duplicates) == (3, 250, 0)
    assert imported_ids(ledger, fake) == {e["id"] for e in fake.logs}
    served = [r.params for r in fake.requests]
    assert [p["page"] for p in served] == ["1", "2", "3"]
    assert all(p["per_page"] == "100" and p["order_by"] == "created_at"
               and p["order_by_direction"] == "desc" for p in served)
    assert all(r.authorization == f"Bearer {TOKEN}" for r in fake.requests)
    newest = fake.logs[-1]
    assert result.cursor == ImportCursor(newest=newest["created_at"], ids=frozenset({newest["id"]}))


async def test_a_second_run_imports_nothing_and_stops_at_the_cursor(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(250)
    await importer(fake, ledger, prices).import_once()
    fake.requests.clear()
    again = await importer(fake, ledger, prices).import_once()
    assert (again.pages, again.imported, again.duplicates) == (1, 0, 1)
    assert len(fake.requests) == 1


async def test_only_new_rows_are_imported(fake: FakeCloudflare, ledger: Ledger, prices: PriceTable) -> None:
    fake.add_logs(120)
    first = await importer(fake, ledger, prices).import_once()
    new = fake.add_logs(30)
    second = await importer(fake, ledger, prices).import_once()
    assert second.imported == 30 and second.pages == 1
    assert second.cursor is not None and second.cursor.newest == new[-1]["created_at"]
    assert first.cursor != second.cursor
    assert len(imported_ids(ledger, fake)) == 150


async def test_equal_timestamps_across_a_page_boundary_and_rows_arriving_while_paging(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    # 30 older rows, then 70 rows logged in the same millisecond: the first page boundary
    # (per_page 50) falls among the equal timestamps.
    fake.add_logs(30)
    instant = iso(datetime(2026, 3, 1, 13, 0, 0, tzinfo=UTC))
    fake.add_logs(70, created_at=instant)
    later = iso(datetime(2026, 3, 1, 13, 0, 5, tzinfo=UTC))
    arrived: list[dict[str, Any]] = []

    def while_paging(page: int) -> None:
        if page == 1:
            # After page 1 went out: three more rows at the same instant (they sort among the
            # equal ones) and one newer row (it pushes every row down by one).
            arrived.extend(fake.add_logs(3, created_at=instant))
            arrived.append(fake.add_log(created_at=later))

    fake.after_page = while_paging
    run = importer(fake, ledger, prices, per_page=50)
    first = await run.import_once()
    fake.after_page = None
    # Every row present when paging started, and the three equal-time ones, exactly once; the
    # row pushed from page 1 onto page 2 is seen twice and skipped once.
    assert first.imported == 103 and first.duplicates == 1
    assert first.cursor is not None and first.cursor.newest == instant
    assert len(first.cursor.ids) == 73
    newer = arrived[-1]
    assert ledger.get(f"cf:{newer['id']}") is None  # it went in above the page we had read

    second = await run.import_once()
    assert second.imported == 1 and ledger.get(f"cf:{newer['id']}") is not None
    assert second.duplicates == 73  # the rows at the old cursor's instant, skipped by id
    assert second.cursor == ImportCursor(newest=later, ids=frozenset({newer["id"]}))

    # A row logged later with exactly the cursor's timestamp is still new.
    same = fake.add_log(created_at=later)
    third = await run.import_once()
    assert (third.imported, third.duplicates) == (1, 1)
    assert third.cursor == ImportCursor(newest=later, ids=frozenset({newer["id"], same["id"]}))
    assert imported_ids(ledger, fake) == {e["id"] for e in fake.logs}


async def test_lookback_finds_a_row_logged_late_with_an_older_timestamp(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    rows = fake.add_logs(20)  # 250 ms apart
    run = importer(fake, ledger, prices, lookback=60.0)
    assert (await run.import_once()).imported == 20
    newest = datetime.fromisoformat(rows[-1]["created_at"])
    late = fake.add_log(created_at=newest - timedelta(seconds=2))
    old = fake.add_log(created_at=newest - timedelta(seconds=600))  # beyond the lookback
    again = await run.import_once()
    assert again.imported == 1 and again.duplicates == 20
    assert ledger.get(f"cf:{late['id']}") is not None
    assert ledger.get(f"cf:{old['id']}") is None


async def test_an_interrupted_import_keeps_the_cursor_and_the_rerun_skips_what_it_wrote(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(150)
    fake.after_page = lambda page: fake.fail_next(500, times=5) if page == 1 else None
    run = importer(fake, ledger, prices, max_attempts=2)
    with pytest.raises(CloudflareImportError, match="HTTP 500"):
        await run.import_once()
    assert ledger.get_meta(run.cursor_key) is None
    assert len(imported_ids(ledger, fake)) == 100  # page 1 made it to the ledger
    fake.after_page = None
    # Three of the five 500s are left: the rerun retries through them.
    rerun = importer(fake, ledger, prices, max_attempts=5)
    result = await rerun.import_once()
    assert result.imported == 50 and result.duplicates == 100
    assert len(imported_ids(ledger, fake)) == 150


async def test_a_server_that_serves_fewer_rows_than_asked_is_followed_to_the_end(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(95)
    fake.serve_per_page = 20
    result = await importer(fake, ledger, prices, per_page=100).import_once()
    assert (result.pages, result.imported) == (5, 95)


async def test_a_server_that_repeats_one_page_ends_the_import_with_an_error(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(100)
    fake.ignore_page = True
    run = importer(fake, ledger, prices, per_page=10)
    with pytest.raises(CloudflareImportError, match="rows of earlier pages"):
        await run.import_once()
    assert len(fake.requests) == 4  # the first page, then three stale ones
    assert ledger.get_meta(run.cursor_key) is None


# -- retries ------------------------------------------------------------------------------------


async def test_429_is_retried_after_the_time_retry_after_asks(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(10)
    fake.fail_next(429, retry_after="7")
    sleeps = Sleeps()
    result = await importer(fake, ledger, prices, sleeps=sleeps).import_once()
    assert result.imported == 10
    assert sleeps.delays == [7.0]
    assert [r.status for r in fake.requests] == [429, 200]


async def test_500_is_retried_with_backoff_and_gives_up_after_max_attempts(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(5)
    fake.fail_next(500)
    sleeps = Sleeps()
    assert (await importer(fake, ledger, prices, sleeps=sleeps, backoff=0.5).import_once()).imported == 5
    assert sleeps.delays == [0.5]

    fake.fail_next(503, times=3)
    sleeps = Sleeps()
    with pytest.raises(CloudflareImportError, match="HTTP 503"):
        await importer(fake, ledger, prices, sleeps=sleeps, max_attempts=3, backoff=0.5).import_once()
    assert sleeps.delays == [0.5, 1.0]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _retry_after("12") == 12.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    future = datetime.now(UTC) + timedelta(seconds=30)
    delay = _retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert delay is not None and 25 <= delay <= 31


# -- errors -------------------------------------------------------------------------------------


async def test_missing_token_says_which_variable_to_set(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    with pytest.raises(CloudflareImportError, match="set CLOUDFLARE_API_TOKEN"):
        await importer(fake, ledger, prices, env={}).import_once()
    assert fake.requests == []


async def test_a_refused_token_names_the_permission_and_never_the_token(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-token-value"
    with pytest.raises(CloudflareImportError) as caught:
        await importer(fake, ledger, prices, env={"CLOUDFLARE_API_TOKEN": wrong}).import_once()
    message = str(caught.value)
    assert caught.value.status == 403
    assert "AI Gateway Read" in message and "Authentication error" in message
    assert wrong not in message and wrong not in caplog.text


async def test_a_malformed_token_is_reported_as_a_header_problem(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    bad = "two words"
    with pytest.raises(CloudflareImportError, match="Authorization header") as caught:
        await importer(fake, ledger, prices, env={"CLOUDFLARE_API_TOKEN": bad}).import_once()
    assert bad not in str(caught.value)


async def test_a_wrong_gateway_names_the_ids_to_check(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    run = importer(fake, ledger, prices)
    run.settings = run.settings.model_copy(update={"gateway_id": "no-such-gateway"})
    with pytest.raises(CloudflareImportError, match="no AI Gateway 'no-such-gateway'") as caught:
        await run.import_once()
    assert caught.value.status == 404


async def test_a_page_that_is_not_json_is_an_error(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.fail_next(200, body=b"<html>captive portal</html>", content_type="text/html")
    with pytest.raises(CloudflareImportError, match="not its JSON envelope"):
        await importer(fake, ledger, prices).import_once()


# -- the ledger rows and their cost -------------------------------------------------------------


async def test_rows_are_marked_imported(fake: FakeCloudflare, ledger: Ledger, prices: PriceTable) -> None:
    ok = fake.add_log(model=PRICED_MODEL, tokens_in=1200, tokens_out=300, duration=950,
                      response_content_type="text/event-stream")
    failed = fake.add_log(model=PRICED_MODEL, success=False, status_code=529, tokens_in=0,
                          tokens_out=0, path="v1/chat/completions", provider="openai")
    await importer(fake, ledger, prices).import_once()
    row = ledger.get(f"cf:{ok['id']}")
    assert row is not None
    assert row.origin == "cloudflare" and row.usage.source == "imported"
    assert row.sandbox == f"cloudflare:{fake.gateway_id}" and row.trigger == "unknown"
    assert (row.provider, row.model, row.requested_model) == ("anthropic", PRICED_MODEL, PRICED_MODEL)
    assert (row.status, row.outcome, row.api, row.stream) == (200, "ok", "anthropic-messages", True)
    assert row.duration_ms == 950 and row.ttfb_ms is None
    assert (row.usage.input_tokens, row.usage.output_tokens) == (1200, 300)
    assert row.started_at == datetime.fromisoformat(ok["created_at"]).timestamp()
    bad = ledger.get(f"cf:{failed['id']}")
    assert bad is not None
    assert (bad.status, bad.outcome, bad.error_kind, bad.api) == (
        529, "error", "overloaded_error", "openai-chat")


async def test_cost_comes_from_the_table_when_it_knows_the_model_else_from_cloudflare(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    table = fake.add_log(model=PRICED_MODEL, tokens_in=1_000_000, tokens_out=100_000, cost=99.0)
    theirs = fake.add_log(model=UNPRICED_MODEL, provider="workers-ai", cost=0.0123)
    custom = fake.add_log(model=PRICED_MODEL, cost=0.5, custom_cost=True)
    hit = fake.add_log(model=PRICED_MODEL, cached=True, cost=0.2)
    unknown = fake.add_log(model=UNPRICED_MODEL, cost=None)
    result = await importer(fake, ledger, prices).import_once()
    assert (result.priced_by_table, result.priced_by_cloudflare, result.unpriced) == (1, 3, 1)

    def cost_of(entry: dict[str, Any]) -> tuple[int | None, str]:
        row = ledger.get(f"cf:{entry['id']}")
        assert row is not None
        return row.cost.total_nanos, row.cost.pricing_version

    # $3/M in x 1M + $15/M out x 100k = $4.50; Cloudflare's own 99.0 is not used.
    nanos, version = cost_of(table)
    assert nanos == 4_500_000_000 and version not in (CLOUDFLARE_PRICING, CACHE_HIT_PRICING)
    assert cost_of(theirs) == (12_300_000, CLOUDFLARE_PRICING)
    assert cost_of(custom) == (500_000_000, CLOUDFLARE_PRICING)
    assert cost_of(hit) == (0, CACHE_HIT_PRICING)
    assert cost_of(unknown)[0] is None


def test_entry_mapping_details(prices: PriceTable) -> None:
    entry = {"id": "abc", "created_at": "2026-03-01T12:00:00.5Z", "provider": "compat",
             "model": "openai/gpt-test", "path": "compat/chat/completions", "success": True,
             "tokens_in": None, "tokens_out": None, "duration": 10, "cached": False, "step": 1}
    record = entry_to_record(entry, "gw", prices)
    assert (record.id, record.provider, record.model, record.api) == ("cf:abc", "openai", "gpt-test",
                                                                     "openai-chat")
    assert record.cost.total_nanos is None  # no tokens and no Cloudflare figure: unpriced
    assert record.attempts[0].attempt == 2 and record.status == 200
    with pytest.raises(ValueError):
        entry_to_record({"created_at": "2026-03-01T12:00:00Z"}, "gw", prices)
    assert usd_to_nanos(0.1) == 100_000_000 and usd_to_nanos(-1) is None
    assert usd_to_nanos(float("nan")) is None and usd_to_nanos("1") is None


# -- the periodic loop --------------------------------------------------------------------------


async def test_run_periodically_imports_and_stops_on_the_event(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    fake.add_logs(3)
    stop = asyncio.Event()
    runs: list[tuple[ImportResult | None, str | None]] = []

    def on_run(result: ImportResult | None, error: str | None) -> None:
        runs.append((result, error))
        stop.set()

    run = importer(fake, ledger, prices)
    await asyncio.wait_for(run.run_periodically(stop, on_run), 30)
    assert len(runs) == 1 and runs[0][0] is not None and runs[0][0].imported == 3
    assert run.last_result is runs[0][0] and run.last_error is None


async def test_run_periodically_reports_errors_and_stop_cancels_a_wait_for_retry(
    fake: FakeCloudflare, ledger: Ledger, prices: PriceTable,
) -> None:
    errors: list[str | None] = []
    broken = importer(fake, ledger, prices, env={})
    broken_stop = asyncio.Event()

    def on_run(_result: ImportResult | None, error: str | None) -> None:
        errors.append(error)
        broken_stop.set()

    await asyncio.wait_for(broken.run_periodically(broken_stop, on_run), 30)
    assert errors and errors[0] is not None and "CLOUDFLARE_API_TOKEN" in errors[0]
    assert broken.last_error == errors[0]

    stop = asyncio.Event()

    fake.fail_next(429, retry_after="3600")
    waiting = asyncio.Event()

    async def long_sleep(delay: float) -> None:
        waiting.set()
        await asyncio.sleep(delay)

    run = CloudflareImporter(
        importer(fake, ledger, prices).settings, ledger, prices,
        env={"CLOUDFLARE_API_TOKEN": TOKEN}, sleep=long_sleep,
    )
    loop_task = asyncio.create_task(run.run_periodically(stop))
    await asyncio.wait_for(waiting.wait(), 30)
    stop.set()
    await asyncio.wait_for(loop_task, 30)
    assert run.last_result is None
