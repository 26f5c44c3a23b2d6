"""RequestRecord <-> JSON, for the cost API and the console that reads it back.

The JSON form is the dataclasses' own fields, nested (``usage``, ``cost``, ``attempts``), so a
record survives the round trip unchanged. Reading is strict about types: a record that does
not parse is a bug on the other side, and the error names the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

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


class RecordFormatError(ValueError):
    """A JSON object that is not a request record; the message names the field."""


def to_json(record: RequestRecord) -> dict[str, Any]:
    """The record as a JSON-ready dict (nested dicts for usage, cost and attempts)."""
    return dataclasses.asdict(record)


def from_json(data: Any) -> RequestRecord:
    """Read back what :func:`to_json` produced."""
    obj = _object(data, "record")
    return RequestRecord(
        id=_str(obj, "id"),
        started_at=_num(obj, "started_at"),
        sandbox=_str(obj, "sandbox"),
        api=_choice(obj, "api", get_args(Api)),  # type: ignore[arg-type]
        provider=_str(obj, "provider"),
        model=_str(obj, "model"),
        requested_model=_str(obj, "requested_model"),
        stream=_bool(obj, "stream"),
        status=_int(obj, "status"),
        outcome=_choice(obj, "outcome", get_args(Outcome)),  # type: ignore[arg-type]
        error_kind=_opt_str(obj, "error_kind"),
        error_message=_opt_str(obj, "error_message"),
        ttfb_ms=_opt_num(obj, "ttfb_ms"),
        duration_ms=_num(obj, "duration_ms", 0.0),
        overhead_ms=_opt_num(obj, "overhead_ms"),
        usage=_usage(obj.get("usage", {}), "usage"),
        cost=_cost(obj.get("cost", {"total_nanos": None}), "cost"),
        trigger=_choice(obj, "trigger", get_args(Trigger), "unknown"),  # type: ignore[arg-type]
        origin=_choice(obj, "origin", ("proxy", "cloudflare"), "proxy"),  # type: ignore[arg-type]
        attempts=[_attempt(item, f"attempts[{i}]") for i, item in enumerate(_list(obj, "attempts"))],
    )


# --- parts ------------------------------------------------------------------------------------
def _usage(data: Any, where: str) -> Usage:
    obj = _object(data, where)
    return Usage(
        input_tokens=_int(obj, "input_tokens", 0, where),
        output_tokens=_int(obj, "output_tokens", 0, where),
        cache_read_tokens=_int(obj, "cache_read_tokens", 0, where),
        cache_write_5m_tokens=_int(obj, "cache_write_5m_tokens", 0, where),
        cache_write_1h_tokens=_int(obj, "cache_write_1h_tokens", 0, where),
        reasoning_tokens=_int(obj, "reasoning_tokens", 0, where),
        source=_choice(obj, "source", get_args(UsageSource), "none", where),  # type: ignore[arg-type]
    )


def _cost(data: Any, where: str) -> Cost:
    obj = _object(data, where)
    total = obj.get("total_nanos")
    if total is not None and not _is_int(total):
        raise RecordFormatError(f"{where}.total_nanos must be an integer or null, not {total!r}")
    return Cost(
        total_nanos=total,
        cache_savings_nanos=_int(obj, "cache_savings_nanos", 0, where),
        pricing_version=_str(obj, "pricing_version", "", where),
        long_context=_bool(obj, "long_context", False, where),
    )


def _attempt(data: Any, where: str) -> AttemptRecord:
    obj = _object(data, where)
    cost = obj.get("cost_nanos")
    if cost is not None and not _is_int(cost):
        raise RecordFormatError(f"{where}.cost_nanos must be an integer or null, not {cost!r}")
    return AttemptRecord(
        attempt=_int(obj, "attempt", where=where),
        started_at=_num(obj, "started_at", where=where),
        provider=_str(obj, "provider", where=where),
        model=_str(obj, "model", where=where),
        status=_int(obj, "status", where=where),
        error_kind=_opt_str(obj, "error_kind", where),
        ttfb_ms=_opt_num(obj, "ttfb_ms", where),
        duration_ms=_num(obj, "duration_ms", 0.0, where),
        usage=_usage(obj.get("usage", {}), f"{where}.usage"),
        cost_nanos=cost,
    )


# --- typed getters ------------------------------------------------------------------------------
_MISSING: Any = object()


def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RecordFormatError(f"{where} must be a JSON object, not {type(data).__name__}")
    return data


def _get(obj: dict[str, Any], key: str, default: Any, where: str) -> Any:
    if key in obj:
        return obj[key]
    if default is _MISSING:
        raise RecordFormatError(f"{where}.{key} is missing")
    return default


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str(obj: dict[str, Any], key: str, default: Any = _MISSING, where: str = "record") -> str:
    value = _get(obj, key, default, where)
    if not isinstance(value, str):
        raise RecordFormatError(f"{where}.{key} must be a string, not {value!r}")
    return value


def _opt_str(obj: dict[str, Any], key: str, where: str = "record") -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordFormatError(f"{where}.{key} must be a string or null, not {value!r}")
    return value


def _int(obj: dict[str, Any], key: str, default: Any = _MISSING, where: str = "record") -> int:
    value = _get(obj, key, default, where)
    if not _is_int(value):
        raise RecordFormatError(f"{where}.{key} must be an integer, not {value!r}")
    return int(value)


def _num(obj: dict[str, Any], key: str, default: Any = _MISSING, where: str = "record") -> float:
    value = _get(obj, key, default, where)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise RecordFormatError(f"{where}.{key} must be a number, not {value!r}")
    return float(value)


def _opt_num(obj: dict[str, Any], key: str, where: str = "record") -> float | None:
    if obj.get(key) is None:
        return None
    return _num(obj, key, where=where)


def _bool(obj: dict[str, Any], key: str, default: Any = _MISSING, where: str = "record") -> bool:
    value = _get(obj, key, default, where)
    if not isinstance(value, bool):
        raise RecordFormatError(f"{where}.{key} must be true or false, not {value!r}")
    return value


def _choice(
    obj: dict[str, Any],
    key: str,
    allowed: tuple[str, ...],
    default: Any = _MISSING,
    where: str = "record",
) -> str:
    value = _get(obj, key, default, where)
    if value not in allowed:
        raise RecordFormatError(f"{where}.{key} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise RecordFormatError(f"record.{key} must be a list, not {type(value).__name__}")
    return value
