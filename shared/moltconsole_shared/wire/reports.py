"""The answers the ledger gives: spend over windows, breakdowns, percentiles.

Shared by the ledger (which computes them), the API (which writes them with the schemas at the
end, as the answers of ``/v1/costs/*``) and the console's Costs screen and ``moltconsole costs``
(which read them back with the same schemas, checked). Money is integer nano-dollars, as in
``records``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pydantic import StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.schema import WireSchema

_schemas: dict[type[Any], WireSchema[Any]] = {}


class _FromDict:
    wire_name: ClassVar[str]

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Read the wire form, checked; WireFormatError names a field that does not fit."""
        schema = _schemas.get(cls)
        if schema is None:
            schema = _schemas[cls] = WireSchema(cls, cls.wire_name)
        result: Self = schema.read(data)
        return result


@dataclass(slots=True)
class Percentiles(_FromDict):
    """Latency percentiles in milliseconds (None when there were no requests)."""

    wire_name: ClassVar[str] = "percentiles"

    p50_ms: StrictFloat | None = None
    p95_ms: StrictFloat | None = None


@dataclass(slots=True)
class Summary(_FromDict):
    """The head of the Costs screen: spend over windows, volume, errors, latency."""

    wire_name: ClassVar[str] = "summary"

    now: StrictFloat  # epoch seconds the summary was computed for
    today_nanos: StrictInt  # since local midnight
    week_nanos: StrictInt  # last 7 days (rolling)
    month_nanos: StrictInt  # last 30 days (rolling)
    month_to_date_nanos: StrictInt  # since the first of this calendar month, for monthly budgets
    burn_rate_nanos_per_hour: StrictFloat  # over the last hour
    requests: StrictInt  # in the window below
    errors: StrictInt
    unpriced: StrictInt  # requests whose model has no price (their cost is not in the sums)
    window_seconds: StrictFloat  # window of requests/errors/latency (default: 24 h)
    duration: dict[str, StrictFloat | None] = field(default_factory=dict)  # Percentiles as dict
    ttfb: dict[str, StrictFloat | None] = field(default_factory=dict)  # Percentiles as dict
    background_nanos: StrictInt = 0  # spent by heartbeat/background requests in the window
    idle_nanos: StrictInt = 0  # spent in hours of the window with no user-triggered request
    daily_budget_nanos: StrictInt | None = None
    monthly_budget_nanos: StrictInt | None = None
    # gateway.budget_warn_percent: where a budget bar turns yellow (80: the setting's default,
    # for an answer from a backend that does not say).
    budget_warn_percent: StrictFloat = 80.0


@dataclass(slots=True)
class ModelUsage(_FromDict):
    """One row of the by-model table."""

    wire_name: ClassVar[str] = "models row"

    provider: StrictStr
    model: StrictStr
    requests: StrictInt
    errors: StrictInt
    input_tokens: StrictInt
    output_tokens: StrictInt
    cache_read_tokens: StrictInt
    cache_write_5m_tokens: StrictInt
    cache_write_1h_tokens: StrictInt
    reasoning_tokens: StrictInt
    cost_nanos: StrictInt
    cache_savings_nanos: StrictInt
    unpriced: StrictInt


@dataclass(slots=True)
class DayUsage(_FromDict):
    """One row of the by-day table (local calendar day, ISO date)."""

    wire_name: ClassVar[str] = "days row"

    day: StrictStr
    requests: StrictInt
    errors: StrictInt
    input_tokens: StrictInt
    output_tokens: StrictInt
    cache_read_tokens: StrictInt
    cache_write_tokens: StrictInt
    cost_nanos: StrictInt
    unpriced: StrictInt


@dataclass(slots=True)
class SeriesPoint(_FromDict):
    """Spend in one time bucket, for the cost-over-time chart."""

    wire_name: ClassVar[str] = "series point"






    start: StrictFloat
    cost_nanos: StrictInt
    requests: StrictInt


@dataclass(slots=True)
class ModelsReport:
    """``GET /v1/costs/models``: spend by model over ``since`` .. ``until`` (epoch seconds)."""

    since: StrictFloat
    until: StrictFloat
    models: list[ModelUsage]


@dataclass(slots=True)
class DaysReport:
    """``GET /v1/costs/days``: spend by local calendar day over ``since`` .. ``until``."""

    since: StrictFloat
    until: StrictFloat
    days: list[DayUsage]


@dataclass(slots=True)
class SeriesReport:
    """``GET /v1/costs/series``: spend in ``buckets`` equal buckets over ``since`` .. ``until``."""

    since: StrictFloat
    until: StrictFloat
    buckets: StrictInt
    points: list[SeriesPoint]


SUMMARY: WireSchema[Summary] = WireSchema(Summary, "summary")
MODELS: WireSchema[ModelsReport] = WireSchema(ModelsReport, "models report")
DAYS: WireSchema[DaysReport] = WireSchema(DaysReport, "days report")
SERIES: WireSchema[SeriesReport] = WireSchema(SeriesReport, "series report")
