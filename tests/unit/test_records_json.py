"""RequestRecord to JSON and back: lossless, and strict about what it reads."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from moltconsole_shared.wire.records import AttemptRecord, Cost, RequestRecord, Usage
from moltconsole_shared.wire.records_json import RecordFormatError, from_json, to_json


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
