"""The answers the ledger gives: spend over windows, breakdowns, percentiles.

Shared by the ledger (which computes them), the API (which serialises them with
``dataclasses.asdict``) and the console's Costs screen and ``moltconsole costs`` (which read them
back with ``from_dict``). Money is integer nano-dollars, as in ``records``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self


class _FromDict:
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(slots=True)
class Percentiles(_FromDict):
    """Latency percentiles in milliseconds (None when there were no requests)."""

    p50_ms: float | None = None
    p95_ms: float | None = None


@dataclass(slots=True)
class Summary(_FromDict):
    """The head of the Costs screen: spend over windows, volume, errors, latency."""

    now: float  # epoch seconds the summary was computed for
    today_nanos: int  # since local midnight
    week_nanos: int  # last 7 days (rolling)
    month_nanos: int  # last 30 days (rolling)
    month_to_date_nanos: int  # since the first of this calendar month, for monthly budgets
    burn_rate_nanos_per_hour: float  # over the last hour
    requests: int  # in the window below
    errors: int
    unpriced: int  # requests whose model has no price (their cost is not in the sums)
    window_seconds: float  # window of requests/errors/latency (default: 24 h)
    duration: dict[str, Any] = field(default_factory=dict)  # Percentiles as dict
    ttfb: dict[str, Any] = field(default_factory=dict)  # Percentiles as dict
    background_nanos: int = 0  # spent by heartbeat/background requests in the window
    idle_nanos: int = 0  # spent in hours of the window with no user-triggered request
    daily_budget_nanos: int | None = None
    monthly_budget_nanos: int | None = None
    # gateway.budget_warn_percent: where a budget bar turns yellow (80: the setting's default,
    # for an answer from a backend that does not say).
    budget_warn_percent: float = 80.0


@dataclass(slots=True)
class ModelUsage(_FromDict):
    """One row of the by-model table."""

    provider: str
    model: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    cost_nanos: int
    cache_savings_nanos: int
    unpriced: int


@dataclass(slots=True)
class DayUsage(_FromDict):
    """One row of the by-day table (local calendar day, ISO date)."""

    day: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_nanos: int
    unpriced: int


@dataclass(slots=True)
class SeriesPoint(_FromDict):
    """Spend in one time bucket, for the cost-over-time chart."""

    start: float
    cost_nanos: int
    requests: int
