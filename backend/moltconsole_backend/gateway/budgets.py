"""Spend limits: daily and monthly, overall and per sandbox, checked before every request.

The guard keeps running totals in memory so a check costs a few dictionary lookups, not a
ledger query. The totals are re-read from the ledger now and then (and when the day or month
turns), which also picks up rows the gateway did not write itself (Cloudflare imports).

The totals are exact, not eventually right: a request's cost is counted the moment it is known
(``add``, from the gateway's thread), while the ledger writes its row a little later (from its
own thread). So the guard keeps what it added as *pending*, by request id, until a refresh finds
the row in the ledger; a refresh reads the ledger's totals and which pending ids are stored in
one snapshot, so a request is counted once whether its row was written before, during or after
the refresh. Both sides take a lock held for a few dictionary operations only.

A budget is a soft limit: requests already in flight when it is reached still finish and are
counted, so the spend can end slightly above it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from moltconsole_backend.settings import BudgetSettings, GatewaySettings
from moltconsole_shared.wire.records import NANOS_PER_USD

log = logging.getLogger(__name__)

Action = Literal["allow", "block", "fallback"]
OVERALL = "*"  # the key of the overall totals

# How spend is read from the ledger, in one snapshot: the total since each (epoch seconds,
# sandbox or None), and which of the ids returned by the callable (called once the snapshot is
# taken) the ledger holds. ``Ledger.spend_totals`` is one.
SpendReader = Callable[
    [Sequence[tuple[float, str | None]], Callable[[], Collection[str]]], tuple[list[int], set[str]]
]


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """What to do with the next request of a sandbox."""

    action: Action
    message: str = ""  # why, with the numbers, for the agent's error and the log
    warning: str = ""  # set when a warn threshold is passed but the request may go on
    summary: str = ""  # once spent: one short line for a status display


def usd(nanos: int) -> str:
    """Nano-dollars as a dollar amount for messages."""
    return f"${nanos / NANOS_PER_USD:,.2f}"


def day_start(now: float) -> float:
    """Local midnight of the day containing ``now``."""
    d = dt.datetime.fromtimestamp(now).astimezone()
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_start(now: float) -> float:
    """Local midnight of the first day of the month containing ``now``."""
    d = dt.datetime.fromtimestamp(now).astimezone()
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


class BudgetGuard:
    """Running spend totals and the limits they are held to."""

    def __init__(
        self,
        settings: GatewaySettings,
        read_spend: SpendReader,
        *,
        clock: Callable[[], float] = time.time,
        refresh_every: float = 30.0,
    ) -> None:
        self._settings = settings
        self._read = read_spend
        self._clock = clock
        self._refresh_every = refresh_every
        self._lock = threading.Lock()
        # Committed spend as of the last refresh, and what was added since and not yet found in
        # the ledger: id -> (started_at, sandbox, nanos), with its sums per key for the period.
        self._day: dict[str, int] = {}
        self._month: dict[str, int] = {}
        self._pending: dict[str, tuple[float, str, int]] = {}
        self._pending_day: dict[str, int] = {}
        self._pending_month: dict[str, int] = {}
        self._period: tuple[float, float] = (0.0, 0.0)
        self._refreshed = float("-inf")
        self._warned: set[tuple[str, str, float]] = set()

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured at all."""
        return _limited(self._settings.budget) or any(
            _limited(b) for b in self._settings.sandbox_budgets.values()
        )

    def limits_nanos(self, sandbox: str | None = None) -> tuple[int | None, int | None]:
        """(daily, monthly) limit in nanos for a sandbox, or overall; None where unlimited."""
        b = self._settings.budget if sandbox is None else self._settings.sandbox_budgets.get(sandbox)
        if b is None:
            return None, None
        return _nanos(b.daily_usd), _nanos(b.monthly_usd)

    def refresh(self) -> None:
        """Re-read the totals from the ledger (blocking: call it from a thread)."""
        now = self._clock()
        day, month = day_start(now), month_start(now)
        keys: list[str | None] = [None, *self._settings.sandbox_budgets]
        windows = [(day, k) for k in keys] + [(month, k) for k in keys]

        def pending_ids() -> list[str]:
            with self._lock:
                return list(self._pending)

        totals, found = self._read(windows, pending_ids)
        with self._lock:
            for record_id in found:
                self._pending.pop(record_id, None)
            for record_id, (started, _, _) in list(self._pending.items()):
                if started < month:  # a past month's, never to count again
                    del self._pending[record_id]
            n = len(keys)
            self._day = {k or OVERALL: totals[i] for i, k in enumerate(keys)}
            self._month = {k or OVERALL: totals[n + i] for i, k in enumerate(keys)}
            self._period = (day, month)
            self._pending_day = dict.fromkeys(self._day, 0)
            self._pending_month = dict.fromkeys(self._day, 0)
            for started, sandbox, nanos in self._pending.values():
                self._count(sandbox, nanos, started)
            self._refreshed = now

    def needs_refresh(self) -> bool:
        """True when the totals are stale or the day or month has turned."""
        if not self.enabled:
            return False
        now = self._clock()
        return now - self._refreshed >= self._refresh_every or day_start(now) != self._period[0]

    def add(self, sandbox: str, nanos: int | None, record_id: str, started_at: float) -> None:
        """Count a request's cost as soon as it is known (its ledger row may come later)."""
        if not nanos or not self.enabled:
            return
        with self._lock:
            self._pending[record_id] = (started_at, sandbox, nanos)
            self._count(sandbox, nanos, started_at)

    def _count(self, sandbox: str, nanos: int, started_at: float) -> None:
        day, month = self._period
        for key in (OVERALL, sandbox):
            if key in self._pending_day:
                if started_at >= day:
                    self._pending_day[key] += nanos
                if started_at >= month:
                    self._pending_month[key] += nanos

    def spent_nanos(self, sandbox: str | None = None) -> tuple[int, int]:
        """(today, this month) as counted now, overall or for a sandbox with a budget."""
        key = sandbox or OVERALL
        with self._lock:
            return (
                self._day.get(key, 0) + self._pending_day.get(key, 0),
                self._month.get(key, 0) + self._pending_month.get(key, 0),
            )

    def check(self, sandbox: str) -> BudgetDecision:
        """Decide whether the sandbox's next request may go upstream."""
        if not self.enabled:
            return BudgetDecision("allow")
        warning = ""
        for key, label, b in (
            (OVERALL, "overall", self._settings.budget),
            (sandbox, f"sandbox {sandbox!r}", self._settings.sandbox_budgets.get(sandbox)),
        ):
            if b is None:
                continue
            spent_day, spent_month = self.spent_nanos(key)
            for period, spent, limit_usd in (
                ("daily", spent_day, b.daily_usd),
                ("monthly", spent_month, b.monthly_usd),
            ):
                limit = _nanos(limit_usd)
                if limit is None:
                    continue
                if spent >= limit:
                    scope = None if key == OVERALL else sandbox
                    message = spent_message(period, limit, spent, scope)
                    action: Action = "fallback" if self._fallback_ready() else "block"
                    self._warn_once(key, period, f"{message} Requests are now {action}ed.")
                    summary = spent_summary(period, limit, spent, scope, action)
                    return BudgetDecision(action, message, summary=summary)
                if spent * 100 >= limit * self._settings.budget_warn_percent:
                    warning = (
                        f"{period} {label} budget {spent * 100 / limit:.0f}% spent "
                        f"({usd(spent)} of {usd(limit)})"
                    )
                    self._warn_once(key, period + "-warn", f"moltconsole budget warning: {warning}")
        return BudgetDecision("allow", warning=warning)

    def _fallback_ready(self) -> bool:
        return self._settings.budget_action == "fallback" and bool(self._settings.budget_fallback_model)

    def _warn_once(self, key: str, what: str, message: str) -> None:
        marker = (key, what, self._period[0])
        if marker not in self._warned:
            self._warned.add(marker)
            log.warning("%s", message)


MAX_MESSAGE = 300  # OpenClaw shows a provider's rate-limit text verbatim only up to this length


def spent_message(period: str, limit: int, spent: int, sandbox: str | None) -> str:
    """What the agent is told when a budget is spent.

    The agent's own rules decide how it reads this (OpenClaw 2026.9: see exchange.budget_refusal):
    the message names the period ("daily"/"monthly", so it does not retry), says when it resets
    (so it is shown to the user as written), stays under 300 characters, and uses none of the
    words OpenClaw takes for a billing failure (credits, balance, payment, "spend limit", ...),
    which would make it disable the provider for ten minutes and more.
    """
    name = sandbox if sandbox is None or len(sandbox) <= 24 else sandbox[:23] + "…"
    label = "overall" if name is None else f"sandbox {name!r}"
    where = "gateway.budget" if name is None else f"gateway.sandbox_budgets.{name}"
    resets = "at local midnight" if period == "daily" else "on the 1st of next month"
    setting = "daily_usd" if period == "daily" else "monthly_usd"
    return (
        f"moltconsole budget reached: the {period} limit of {usd(limit)} for the {label} budget is "
        f"spent ({usd(spent)}); it resets {resets}. Raise {where}.{setting} in the moltconsole "
        "config to continue now."
    )


def spent_summary(period: str, limit: int, spent: int, sandbox: str | None, action: Action) -> str:
    """One short line for a spent budget: the period, the numbers, the effect, what to raise."""
    where = "gateway.budget" if sandbox is None else f"gateway.sandbox_budgets.{sandbox}"
    setting = "daily_usd" if period == "daily" else "monthly_usd"
    label = "" if sandbox is None else f" of {sandbox}"
    effect = "blocked" if action == "block" else "to the fallback model"
    return f"{period} budget{label} spent ({usd(spent)} of {usd(limit)}): {effect}; raise {where}.{setting}"


def _limited(b: BudgetSettings) -> bool:
    return b.daily_usd > 0 or b.monthly_usd > 0


def _nanos(value_usd: float) -> int | None:
    return round(value_usd * NANOS_PER_USD) if value_usd > 0 else None
