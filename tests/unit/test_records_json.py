"""RequestRecord and the cost reports to JSON and back: lossless, and strict about what they read."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from moltconsole_shared.wire.records import AttemptRecord, Cost, RequestRecord, Usage
from moltconsole_shared.wire.records_json import (
    REQUESTS_PAGE,
    TAIL_BATCH,
    RecordFormatError,
    RequestsPage,
    TailBatch,
    from_json,
    to_json,
)
from moltconsole_shared.wire.reports import MODELS, SUMMARY, ModelUsage, Summary
from moltconsole_shared.wire.schema import WireFormatError


def full_record() -> RequestRecord:
    """A record with every field set, two attempts (a retry after an overload)."""
    return RequestRecord(
        id="9f1c2e", started_at=1_800_000_000.25, sandbox="main", api="anthropic-messages",
        provider="anthropic", model="claude-sonnet-4-5", requested_model="claude-opus-4-1",
        stream=True, status=200, outcome="ok", error_kind=None, error_message=None,
        ttfb_ms=412.5, duration_ms=8123.0, overhead_ms=0.31,
        usage=Usage(input_tokens=1200, output_tokens=800, cache_read_tokens=40_000,
                    cache_write_5m_tokens=3000, cache_write_1h_tokens=500, reasoning_tokens=120,
                    source="provider"),
        cost=Cost(total_nanos=61_350_000, cache_savings_nanos=97_125_000,
                  pricing_version="2026-11-01", long_context=False),
        trigger="heartbeat", origin="proxy",
        attempts=[
            AttemptRecord(attempt=1, started_at=1_800_000_000.25, provider="anthropic",
                          model="claude-opus-4-1", status=529, error_kind="overloaded_error",
                          ttfb_ms=None, duration_ms=210.0),
            AttemptRecord(attempt=2, started_at=1_800_000_000.9, provider="anthropic",
                          model="claude-sonnet-4-5", status=200, ttfb_ms=300.0,
                          duration_ms=7400.0,
                          usage=Usage(input_tokens=1200, output_tokens=800, source="provider"),
                          cost_nanos=61_350_000),
        ],
    )


def test_round_trip_through_json_text_is_lossless() -> None:
    record = full_record()
    assert from_json(json.loads(json.dumps(to_json(record)))) == record


def test_unpriced_cost_stays_none_not_zero() -> None:
    record = full_record()
    record.cost = Cost(total_nanos=None)
    record.attempts[1].cost_nanos = None
    back = from_json(json.loads(json.dumps(to_json(record))))
    assert back.cost.total_nanos is None and not back.cost.priced
    assert back.attempts[1].cost_nanos is None


def test_to_json_nests_usage_cost_and_attempts() -> None:
    data = to_json(full_record())
    assert data["usage"]["cache_write_1h_tokens"] == 500
    assert data["cost"]["total_nanos"] == 61_350_000
    assert [a["status"] for a in data["attempts"]] == [529, 200]


def test_optional_parts_default_when_absent() -> None:
    minimal: dict[str, Any] = {
        "id": "cf:1", "started_at": 1, "sandbox": "s", "api": "openai-chat", "provider": "openai",
        "model": "gpt-5", "requested_model": "gpt-5", "stream": False, "status": 200,
        "outcome": "ok",
    }
    record = from_json(minimal)
    assert record.usage == Usage() and record.cost == Cost(total_nanos=None)
    assert record.attempts == [] and record.trigger == "unknown" and record.origin == "proxy"
    assert record.started_at == 1.0


@pytest.mark.parametrize(("change", "message"), [
    ({"id": 7}, "record.id must be a string"),
    ({"outcome": "maybe"}, "record.outcome must be one of ok, error, cancelled, blocked"),
    ({"stream": "yes"}, "record.stream must be true or false"),
    ({"status": True}, "record.status must be an integer"),
    ({"usage": {"input_tokens": 1.5}}, "usage.input_tokens must be an integer"),
    ({"cost": {"total_nanos": 0.5}}, "cost.total_nanos must be an integer or null"),
    ({"attempts": [{"attempt": 1}]}, "attempts[0].started_at is missing"),
    ({"attempts": {}}, "record.attempts must be a list"),
])
def test_malformed_records_name_the_field(change: dict[str, Any], message: str) -> None:
    data = to_json(full_record())
    data.update(change)
    with pytest.raises(RecordFormatError, match=re.escape(message)):
        from_json(data)


def test_missing_required_field_is_named() -> None:
    data = to_json(full_record())
    del data["model"]
    with pytest.raises(RecordFormatError, match=re.escape("record.model is missing")):
        from_json(data)


def test_not_an_object() -> None:
    with pytest.raises(RecordFormatError, match=re.escape("record must be a JSON object, not list")):
        from_json([])


def test_nanodollars_stay_exact_integers_past_float_precision() -> None:
    record = full_record()
    record.cost = Cost(total_nanos=2**60 + 1, cache_savings_nanos=-(2**55) - 3)
    back = from_json(json.loads(json.dumps(to_json(record))))
    assert back.cost.total_nanos == 2**60 + 1 and back.cost.cache_savings_nanos == -(2**55) - 3


@pytest.mark.parametrize(("change", "message"), [
    ({"cost": {"total_nanos": 1e18}}, "record.cost.total_nanos must be an integer or null, not 1e+18"),
    ({"duration_ms": True}, "record.duration_ms must be a number, not True"),
    ({"usage": {"source": "guessed"}}, "record.usage.source must be one of provider, partial, none"),
    ({"attempts": [{"attempt": 1, "started_at": 1, "provider": "p", "model": "m", "status": 200,
                    "cost_nanos": "5"}]},
     "record.attempts[0].cost_nanos must be an integer or null, not '5'"),
])
def test_numbers_are_not_coerced(change: dict[str, Any], message: str) -> None:
    data = to_json(full_record())
    data.update(change)
    with pytest.raises(RecordFormatError, match=re.escape(message)):
        from_json(data)


def test_every_problem_is_counted_and_the_first_named() -> None:
    data = to_json(full_record())
    data.update(id=7, status="200", stream=None)
    with pytest.raises(RecordFormatError) as caught:
        from_json(data)
    assert str(caught.value) == "record.id must be a string, not 7 (and 2 more problems)"


def test_unknown_fields_from_a_newer_backend_are_ignored() -> None:
    data = to_json(full_record())
    data["usage"]["audio_tokens"] = 9
    data["colour"] = "blue"
    assert from_json(data) == full_record()


def test_the_api_answers_read_back_through_their_schemas() -> None:
    page = RequestsPage(kind="top", requests=[full_record()])
    assert REQUESTS_PAGE.read_json(REQUESTS_PAGE.dump_json(page)) == page
    batch = TailBatch(records=[full_record(), full_record()], dropped=3)
    assert json.loads(TAIL_BATCH.dump_json(batch))["type"] == "batch"
    assert TAIL_BATCH.read_json(TAIL_BATCH.dump_json(batch)) == batch
    with pytest.raises(WireFormatError, match=re.escape("tail batch is not valid JSON")):
        TAIL_BATCH.read_json(b'{"records": [')
    wrong_kind = "requests page.kind must be one of top, errors, recent, not 'cheap'"
    with pytest.raises(WireFormatError, match=re.escape(wrong_kind)):
        REQUESTS_PAGE.read({"kind": "cheap", "requests": []})


def test_reports_are_checked_and_name_the_field() -> None:
    good = Summary(now=1.0, today_nanos=1, week_nanos=2, month_nanos=3, month_to_date_nanos=3,
                   burn_rate_nanos_per_hour=0, requests=4, errors=0, unpriced=0, window_seconds=86400,
                   duration={"p50_ms": 10.0, "p95_ms": None})
    data = SUMMARY.dump(good)
    assert Summary.from_dict(data) == good
    with pytest.raises(WireFormatError, match=re.escape("summary.week_nanos must be an integer, not 2.5")):
        Summary.from_dict({**data, "week_nanos": 2.5})
    with pytest.raises(WireFormatError, match=re.escape("models report.models[0].provider is missing")):
        MODELS.read({"since": 0, "until": 1, "models": [{"model": "m"}]})
    assert ModelUsage.from_dict(dataclasses.asdict(MODEL_ROW)) == MODEL_ROW


MODEL_ROW = ModelUsage(
    provider="anthropic", model="claude-sonnet-4-5", requests=3, errors=1, input_tokens=10, output_tokens=20,
    cache_read_tokens=30, cache_write_5m_tokens=0, cache_write_1h_tokens=0, reasoning_tokens=0,
    cost_nanos=123, cache_savings_nanos=4, unpriced=0,
)


def test_a_wrong_value_is_quoted_short_and_inert() -> None:
    data = to_json(full_record())
    data["model"] = "\x1b]52;c;aGVsbG8=\x07" + "x" * 10_000
    with pytest.raises(RecordFormatError) as caught:
        from_json({**data, "status": data["model"]})
    text = str(caught.value)
    assert text.startswith("record.status must be an integer, not '\\x1b]52;c;")
    assert "\x1b" not in text and len(text) < 120
