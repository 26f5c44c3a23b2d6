"""The cost API: what the AI gateway's ledger knows, for the Costs screen and ``moltconsole costs``.

Requests:   GET /v1/costs/summary?window=24h[&sandbox=NAME][&now=EPOCH]
            GET /v1/costs/models?since=7d[&until=T][&sandbox=NAME][&now=EPOCH]
            GET /v1/costs/days?since=30d[&until=T][&sandbox=NAME][&now=EPOCH]
            GET /v1/costs/series?since=7d&buckets=N[&until=T][&sandbox=NAME][&now=EPOCH]
            GET /v1/costs/requests?kind=top|errors|recent[&since=T][&limit=N][&sandbox=NAME]
                (recent pages with [&before=ID|EPOCH] instead of since)
            GET /v1/costs/requests/{id}
Stream:     WS  /v1/costs/tail[?sandbox=NAME]

Times (``since``, ``until``) are a duration ago (``90s``, ``10m``, ``24h``, ``7d``) or epoch
seconds. ``now`` pins "now" for durations and for the summary (a console with a fixed clock
gets fixed answers). Money is integer nano-dollars. Errors are
``{"error": {"kind": ..., "message": ...}}``: ``request`` (400) for a bad parameter, ``not_found``
(404), ``internal`` (500) when the ledger failed.

The tail sends ``{"type": "ready"}`` once it listens (a record committed after that is sent),
then ``{"type": "batch", "records": [...], "dropped": n}`` at most every
:data:`TAIL_BATCH_INTERVAL`; ``dropped`` counts records that did not fit the client's queue
because it read too slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole_backend.api.answers import answer, error
from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_shared.durations import DurationError, is_duration, parse_duration
from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.records_json import (
    RECORD,
    REQUESTS_PAGE,
    TAIL_BATCH,
    RequestsKind,
    RequestsPage,
    TailBatch,
)
from moltconsole_shared.wire.reports import (
    DAYS,
    MODELS,
    SERIES,
    SUMMARY,
    DaysReport,
    ModelsReport,
    SeriesReport,
)

log = logging.getLogger(__name__)

# (daily, monthly) overall budget in nano-dollars; None where there is no limit.
Budgets = Callable[[], tuple[int | None, int | None]]

MAX_SPAN = 400 * 86_400.0  # longest window or "since" accepted: a bit over a year
MAX_LIMIT = 1000
MAX_BUCKETS = 1000
TAIL_QUEUE = 1000  # records held for a slow tail client before they are dropped (counted)
TAIL_BATCH_INTERVAL = 0.1  # seconds: at most ten tail messages a second
TAIL_BATCH_MAX = 200  # records in one tail message

_KINDS: tuple[RequestsKind, ...] = get_args(RequestsKind)

T = TypeVar("T")


class ParamError(Exception):
    """A query parameter the API cannot use; the message says what to send instead."""




def cost_routes(ledger: Ledger, budgets: Budgets, *, warn_percent: float) -> list[BaseRoute]:
    """The /v1/costs routes over ``ledger``; ``budgets()`` and ``warn_percent`` (the configured
    ``gateway.budget_warn_percent``) fill the summary's budget fields."""

    async def query(call: Callable[[], T]) -> T:
        # SQLite calls block: run them off the event loop.
        return await asyncio.to_thread(call)

    def handler(
        allowed: tuple[str, ...],
        answer: Callable[[Request, dict[str, str]], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                params = _params(request, allowed)
                return await answer(request, params)
            except ParamError as exc:
                return error("request", str(exc), 400)
            except Exception as exc:
                log.exception("cost query %s failed", request.url.path)
                return error(
                    "internal",
                    f"the cost ledger query failed ({exc!r}); see the backend's log",
                    500,
                )

        return handle

    async def summary(_: Request, params: dict[str, str]) -> Response:
        now = _now(params)
        window = _duration(params.get("window", "24h"), "window")
        sandbox = _sandbox(params)
        result = await query(lambda: ledger.summary(now=now, window_seconds=window, sandbox=sandbox))
        daily, monthly = budgets()
        result = dataclasses.replace(
            result, daily_budget_nanos=daily, monthly_budget_nanos=monthly, budget_warn_percent=warn_percent
        )
        return answer(SUMMARY, result)

    async def models(_: Request, params: dict[str, str]) -> Response:
        now = _now(params)
        since, until = _range(params, now, "7d")
        end = now if until is None else until
        sandbox = _sandbox(params)
        rows = await query(lambda: ledger.by_model(since, end, sandbox=sandbox))
        return answer(MODELS, ModelsReport(since=since, until=end, models=rows))

    async def days(_: Request, params: dict[str, str]) -> Response:
        now = _now(params)
        since, until = _range(params, now, "30d")
        end = now if until is None else until
        sandbox = _sandbox(params)
        rows = await query(lambda: ledger.by_day(since, end, sandbox=sandbox))
        return answer(DAYS, DaysReport(since=since, until=end, days=rows))

    async def series(_: Request, params: dict[str, str]) -> Response:
        now = _now(params)
        since, until = _range(params, now, "7d")
        end = now if until is None else until
        buckets = _int(params.get("buckets", "48"), "buckets", 1, MAX_BUCKETS)
        sandbox = _sandbox(params)
        points = await query(lambda: ledger.series(since, end, buckets, sandbox=sandbox))
        return answer(SERIES, SeriesReport(since=since, until=end, buckets=buckets, points=points))

    async def requests(_: Request, params: dict[str, str]) -> Response:
        now = _now(params)
        kind = params.get("kind", "recent")
        if kind not in _KINDS:
            raise ParamError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
        limit = _int(params.get("limit", "50"), "limit", 1, MAX_LIMIT)
        sandbox = _sandbox(params)
        if kind == "recent":
            if "since" in params:
                raise ParamError(
                    "kind=recent pages backwards with before=ID or before=EPOCH; "
                    "since applies to kind=top and kind=errors"
                )
            before = _before(params["before"]) if "before" in params else None
            records = await query(lambda: ledger.recent(limit=limit, before=before, sandbox=sandbox))
        else:
            if "before" in params:
                raise ParamError(f"before pages kind=recent; for kind={kind} use since")
            since = _time(params.get("since", "7d"), "since", now)
            if kind == "top":
                records = await query(lambda: ledger.top(since, limit=limit, sandbox=sandbox))
            else:
                records = await query(lambda: ledger.errors(since, limit=limit, sandbox=sandbox))
        return answer(REQUESTS_PAGE, RequestsPage(kind=kind, requests=records))

    async def one_request(request: Request, _: dict[str, str]) -> Response:
        request_id = request.path_params["request_id"]
        record = await query(lambda: ledger.get(request_id))
        if record is None:
            return error(
                "not_found", f"no request {request_id!r} in the ledger; ids come from /v1/costs/requests", 404
            )
        return answer(RECORD, record)

    async def tail(ws: WebSocket) -> None:
        sandbox = ws.query_params.get("sandbox") or None
        await ws.accept()
        await _tail(ws, ledger, sandbox)

    window = ("now", "sandbox")
    return [
        Route("/v1/costs/summary", handler(("window", *window), summary)),
        Route("/v1/costs/models", handler(("since", "until", *window), models)),
        Route("/v1/costs/days", handler(("since", "until", *window), days)),
        Route("/v1/costs/series", handler(("since", "until", "buckets", *window), series)),
        Route("/v1/costs/requests", handler(("kind", "since", "limit", "before", *window), requests)),
        Route("/v1/costs/requests/{request_id:path}", handler((), one_request)),
        WebSocketRoute("/v1/costs/tail", tail),
    ]


# --- the live tail ------------------------------------------------------------------------------
async def _tail(ws: WebSocket, ledger: Ledger, sandbox: str | None) -> None:
    """Forward records the ledger commits, in batches, until the client goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[RequestRecord] = asyncio.Queue(TAIL_QUEUE)
    dropped = 0

    def offer(record: RequestRecord) -> None:  # on the event loop
        nonlocal dropped
        if sandbox is not None and record.sandbox != sandbox:
            return
        try:
            queue.put_nowait(record)
        except asyncio.QueueFull:
            dropped += 1

    def listener(record: RequestRecord) -> None:  # on the ledger's writer thread
        # The loop may be closing while the writer still commits; then nobody listens anyway.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(offer, record)

    receiver = asyncio.ensure_future(_until_closed(ws))
    ledger.add_listener(listener)
    try:
        await ws.send_json({"type": "ready"})
        while True:
            first = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({first, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if first not in done:
                first.cancel()
                return
            batch = [first.result()]
            deadline = loop.time() + TAIL_BATCH_INTERVAL
            while len(batch) < TAIL_BATCH_MAX and not receiver.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            lost, dropped = dropped, 0
            await ws.send_text(TAIL_BATCH.dump_json(TailBatch(records=batch, dropped=lost)).decode())
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        ledger.remove_listener(listener)
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await receiver
        with contextlib.suppress(Exception):
            await ws.close()


async def _until_closed(ws: WebSocket) -> None:
    """Read until the client goes away, so a disconnect is noticed while nothing is sent."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


# --- parameters ---------------------------------------------------------------------------------
def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each at most once and each one this route knows."""
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ParamError(f"unknown parameter {key!r} for {request.url.path}; known: {known}")
        if key in params:
            raise ParamError(f"parameter {key!r} is given twice; give it once")
        params[key] = value
    return params


def _now(params: dict[str, str]) -> float:
    if "now" not in params:
        return time.time()
    return _epoch(params["now"], "now")


def _epoch(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ParamError(f"{name} must be epoch seconds such as 1800000000, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ParamError(f"{name} must be epoch seconds such as 1800000000, not {text!r}")
    return value


def _duration(text: str, name: str) -> float:
    try:
        seconds = parse_duration(text)
    except DurationError:
        raise ParamError(f"{name} must be a duration such as 90s, 10m, 24h or 7d, not {text!r}") from None
    if seconds <= 0 or seconds > MAX_SPAN:
        raise ParamError(f"{name} must be more than 0 and at most 400d, not {text!r}")
    return seconds


def _time(text: str, name: str, now: float) -> float:
    """A duration ago (``7d``) or epoch seconds."""
    if is_duration(text):
        return now - _duration(text, name)
    try:
        return _epoch(text, name)
    except ParamError:
        raise ParamError(
            f"{name} must be a duration ago (90s, 10m, 24h, 7d) or epoch seconds, not {text!r}"
        ) from None


def _before(text: str) -> str | float:
    """``before`` of kind=recent: epoch seconds, or else the id of the last request seen."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _range(params: dict[str, str], now: float, default: str) -> tuple[float, float | None]:
    since = _time(params.get("since", default), "since", now)
    until = _time(params["until"], "until", now) if "until" in params else None
    if until is not None and until <= since:
        raise ParamError("until must be later than since")
    return since, until


def _int(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"{name} must be a whole number from {low} to {high}, not {text!r}") from None
    if not low <= value <= high:
        raise ParamError(f"{name} must be from {low} to {high}, not {value}")
    return value


def _sandbox(params: dict[str, str]) -> str | None:
    return params.get("sandbox") or None
