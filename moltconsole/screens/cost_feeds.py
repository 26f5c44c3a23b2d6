"""Where the Costs screen's data comes from: a snapshot per load, and the live tail.

No widgets here. :func:`load` asks the backend for everything one window shows at once
(summary, chart series, models, costliest requests, errors, recent requests) and answers with
one message: :class:`CostsLoaded` holding an immutable :class:`CostSnapshot`, or
:class:`CostsFailed` saying why not. :func:`follow_tail` follows ``/v1/costs/tail`` for as long
as it runs (a :class:`~moltconsole.streams.StreamFollower`: it reconnects by itself), posting
:class:`TailState` when it starts listening or breaks and :class:`TailArrived` for each batch of
new requests. The tail resumes without a gap: each time it listens again the screen reloads
the snapshot, whose recent requests the :class:`TailBuffer` merges by id (no duplicates).
The screen runs both in its workers and applies the messages; :class:`TailBuffer` holds the
newest requests the tail has shown.

Both take the sandbox whose costs to show (its name, as the ledger tags requests) or None for
all sandboxes; the snapshot and the tail's batches carry it, so the screen drops what comes
for the scope it showed before the user switched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from textual.message import Message

from moltconsole.client import BackendError
from moltconsole.streams import StreamFollower, StreamState, Wakeup
from moltconsole.widgets.cost_format import WINDOWS
from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.reports import ModelUsage, SeriesPoint, Summary

# One chart bar per bucket: an hour over a day, six hours over a week, a day over a month.
BUCKETS = {"24h": (24, 3600.0), "7d": (28, 6 * 3600.0), "30d": (30, 86_400.0)}
TOP_LIMIT = 50
ERROR_LIMIT = 50
TAIL_ROWS = 200  # requests kept in the live tail


class CostSource(Protocol):
    """What the Costs screen needs from :class:`moltconsole.client.BackendClient`."""

    async def costs_summary(
        self, *, window: str = "24h", sandbox: str | None = None, now: float | None = None,
    ) -> Summary: ...

    async def costs_models(
        self, *, since: str | float = "7d", until: str | float | None = None,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[ModelUsage]: ...

    async def costs_series(
        self, *, since: str | float = "7d", until: str | float | None = None, buckets: int = 48,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[SeriesPoint]: ...

    async def costs_requests(
        self, kind: str = "recent", *, since: str | float | None = None, limit: int = 50,
        before: float | None = None, sandbox: str | None = None, now: float | None = None,
    ) -> list[RequestRecord]: ...

    async def costs_request(self, request_id: str) -> RequestRecord: ...

    def costs_tail(self, *, sandbox: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Tail messages: ``ready``, then batches (see ``BackendClient.costs_tail``)."""
        ...


@dataclass(frozen=True, slots=True)
class CostSnapshot:
    """Everything the screen shows for one window, fetched together."""

    window: str
    now: float
    summary: Summary
    series: tuple[SeriesPoint, ...]
    bucket_seconds: float
    models: tuple[ModelUsage, ...]
    top: tuple[RequestRecord, ...]
    errors: tuple[RequestRecord, ...]
    recent: tuple[RequestRecord, ...]
    sandbox: str | None = None  # whose costs: a sandbox's name, or None for all sandboxes


class CostsLoaded(Message):
    """A fresh snapshot from the loader."""

    def __init__(self, snapshot: CostSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class CostsFailed(Message):
    """The loader could not reach the ledger; ``problem`` says why, for the user."""

    def __init__(self, problem: str) -> None:
        super().__init__()
        self.problem = problem


class TailArrived(Message):
    """Requests the ledger recorded since the last batch, for ``sandbox`` (None: all)."""

    def __init__(self, records: tuple[RequestRecord, ...], dropped: int, sandbox: str | None = None) -> None:
        super().__init__()
        self.records = records
        self.dropped = dropped
        self.sandbox = sandbox


class TailState(Message):
    """The tail for ``sandbox`` (None: all) is listening (``problem`` None) or broke
    (``problem`` says why)."""

    def __init__(self, problem: str | None, sandbox: str | None = None) -> None:
        super().__init__()
        self.problem = problem
        self.sandbox = sandbox


def series_range(now: float, window: str) -> tuple[float, float, int, float]:
    """(since, until, buckets, bucket seconds) for the chart; buckets start on local hours/days,
    the last one holding ``now``."""
    count, size = BUCKETS[window]
    offset = dt.datetime.fromtimestamp(now).astimezone().utcoffset() or dt.timedelta()
    shift = offset.total_seconds()
    until = (math.floor((now + shift) / size) + 1) * size - shift
    return until - count * size, until, count, size


async def load(
    client: CostSource, window: str, now: float, *, sandbox: str | None = None,
) -> CostsLoaded | CostsFailed:
    """Everything for ``window`` as of ``now`` for ``sandbox`` (None: all), asked for at once."""
    since = now - WINDOWS[window]
    start, end, buckets, size = series_range(now, window)
    try:
        summary, series, models, top, errors, recent = await asyncio.gather(
            client.costs_summary(window=window, now=now, sandbox=sandbox),
            client.costs_series(since=start, until=end, buckets=buckets, now=now, sandbox=sandbox),
            client.costs_models(since=since, now=now, sandbox=sandbox),
            client.costs_requests("top", since=since, limit=TOP_LIMIT, now=now, sandbox=sandbox),
            client.costs_requests("errors", since=since, limit=ERROR_LIMIT, now=now, sandbox=sandbox),
            client.costs_requests("recent", limit=TAIL_ROWS, sandbox=sandbox),
        )
    except BackendError as exc:
        return CostsFailed(f"cannot load costs: {exc}")
    return CostsLoaded(CostSnapshot(
        window=window, now=now, summary=summary, series=tuple(series), bucket_seconds=size,
        models=tuple(models), top=tuple(top), errors=tuple(errors), recent=tuple(recent),
        sandbox=sandbox,
    ))


async def follow_tail(
    client: CostSource, post: Callable[[Message], object], *, wakeup: Wakeup | None = None,
    sandbox: str | None = None,
) -> None:
    """Follow the ledger's new requests for ``sandbox`` (None: all) until cancelled,
    reconnecting when the stream breaks."""

    def on_state(state: StreamState) -> None:
        problem = state.describe()
        if problem is not None:
            post(TailState(problem, sandbox))

    follower = StreamFollower(
        "the cost tail", lambda: client.costs_tail(sandbox=sandbox), on_state=on_state, wakeup=wakeup,
    )
    async for message in follower:
        kind = message.get("type")
        if kind == "ready":
            post(TailState(None, sandbox))  # listening (again): the screen reloads what it may have missed
        elif kind == "batch":
            records = tuple(message.get("records") or ())
            post(TailArrived(records, int(message.get("dropped") or 0), sandbox))


class TailBuffer:
    """The newest :data:`TAIL_ROWS` requests seen, by id (a request seen again is replaced)."""

    def __init__(self, limit: int = TAIL_ROWS) -> None:
        self.limit = limit
        self._records: dict[str, RequestRecord] = {}

    def merge(self, records: Iterable[RequestRecord]) -> None:
        """Add or replace these requests; the oldest beyond the limit go."""
        for record in records:
            self._records[record.id] = record
        if len(self._records) > self.limit:
            newest = sorted(self._records.values(), key=lambda r: r.started_at)[-self.limit:]
            self._records = {r.id: r for r in newest}

    def newest_first(self) -> list[RequestRecord]:
        """The requests held, the latest first."""
        return sorted(self._records.values(), key=lambda r: r.started_at, reverse=True)

    def get(self, request_id: str) -> RequestRecord | None:
        """The request with this id, if the tail holds it."""
        return self._records.get(request_id)

    def __len__(self) -> int:
        return len(self._records)
