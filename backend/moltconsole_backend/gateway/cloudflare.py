"""Import a Cloudflare AI Gateway's request logs into the ledger, for users who route through it.

Cloudflare keeps one log entry per request that went through an AI Gateway and lists them with
``GET {api_base}/accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs`` (a bearer API
token with the "AI Gateway Read" permission; page-number pagination with ``page`` and
``per_page``; ``order_by=created_at`` and ``order_by_direction``; the usual v4 envelope with
``result`` and ``result_info``). Each entry becomes one ledger row with ``origin="cloudflare"``,
``usage.source="imported"``, id ``"cf:<cloudflare log id>"`` and sandbox
``"cloudflare:<gateway_id>"``.

Incremental import. Pages are read newest first and the walk stops at the cursor kept in the
ledger's meta table: the newest ``created_at`` imported so far and the ids logged at exactly
that instant. Newest-first is the order that loses nothing while the list moves: a row logged
during the walk pushes the later pages down by one, so a row is seen twice (and skipped by
id), never missed; Cloudflare dropping its oldest logs at the storage limit moves nothing
above them. The walk goes ``lookback`` seconds past the cursor, so a row whose ``created_at``
is a little older than one already imported (logs are written after the response) is still
found; rows seen again are skipped by id (the ledger is asked). The cursor moves only when a
walk completes; an interrupted import is simply done again, and the ids make that harmless.

Cost. Cloudflare's token counts are two numbers, ``tokens_in`` and ``tokens_out``: cache reads
and writes are not split out, so our table prices every input token as plain input. When the
table knows the model it prices the row (its figure is comparable with the proxy's own rows);
otherwise Cloudflare's own ``cost`` estimate (USD) is used and the row's
``cost.pricing_version`` is ``"cloudflare"``. When the request carried a custom cost
(``custom_cost``), Cloudflare's figure is the user's negotiated price and wins over the table.
A response served from the gateway's cache (``cached``) reached no provider and costs 0
(``pricing_version="cloudflare-cache-hit"``). Without a table price or a Cloudflare figure the
row is unpriced (``total_nanos=None``), never zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx

from moltconsole_backend.settings import CloudflareSettings
from moltconsole_shared.wire.records import NANOS_PER_USD, Api, AttemptRecord, Cost, RequestRecord, Usage

log = logging.getLogger(__name__)

#: Cloudflare's own MCP server asks for at most 50 entries a page; the reference states no cap.
DEFAULT_PER_PAGE = 50
#: How far behind the cursor each walk looks again for rows logged late.
DEFAULT_LOOKBACK_SECONDS = 120.0
#: Pricing versions of rows whose cost did not come from our table.
CLOUDFLARE_PRICING = "cloudflare"
CACHE_HIT_PRICING = "cloudflare-cache-hit"

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
# Cloudflare's v4 errors for a malformed or missing Authorization header.
_BAD_HEADER_CODES = frozenset({6003, 6100, 6101, 6102, 6103, 6111})


class LedgerStore(Protocol):
    """What the importer needs of the ledger."""

    def record(self, record: RequestRecord, /) -> object: ...
    def flush(self) -> object: ...
    def get(self, id: str, /) -> RequestRecord | None: ...
    def get_meta(self, key: str, /) -> str | None: ...
    def set_meta(self, key: str, value: str, /) -> object: ...


class PriceBook(Protocol):
    """What the importer needs of the pricing table."""

    def cost(self, provider: str, model: str, usage: Usage, /) -> Cost: ...


class CloudflareImportError(Exception):
    """The import cannot go on; the message says why and what to change (never the token)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ImportCursor:
    """Where the last complete import ended: the newest ``created_at`` and its log ids."""

    newest: str  # ISO 8601, as Cloudflare wrote it
    ids: frozenset[str]

    @property
    def instant(self) -> datetime:
        return parse_time(self.newest)

    def to_json(self) -> str:
        return json.dumps({"v": 1, "newest": self.newest, "ids": sorted(self.ids)})

    @classmethod
    def from_json(cls, text: str | None) -> ImportCursor | None:
        """The cursor stored in the meta table, or None when there is none (or it is unreadable)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            cursor = cls(newest=str(data["newest"]), ids=frozenset(str(i) for i in data["ids"]))
            cursor.instant  # noqa: B018 - validates the timestamp
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable Cloudflare import cursor; importing from the start")
            return None
        return cursor


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one import did."""

    pages: int  # pages fetched
    imported: int  # rows written to the ledger
    duplicates: int  # rows skipped because the ledger (or this walk) already had them
    cursor: ImportCursor | None  # the cursor after the import (None: nothing ever imported)
    priced_by_table: int = 0
    priced_by_cloudflare: int = 0  # Cloudflare's cost figure, or 0 for a cache hit
    unpriced: int = 0


def parse_time(text: str) -> datetime:
    """A Cloudflare timestamp (ISO 8601, ``Z`` or an offset; naive means UTC) as aware UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def usd_to_nanos(value: Any) -> int | None:
    """Cloudflare's USD figure in nano-dollars, exactly as written; None unless a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        nanos = (Decimal(repr(value)) * NANOS_PER_USD).to_integral_value()
    except InvalidOperation:
        return None
    return int(nanos) if nanos >= 0 else None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None


def _api_of(path: str, provider: str) -> Api:
    # Our records know three APIs; any other endpoint is filed by the provider's family.
    tail = path.rstrip("/").lower()
    if tail.endswith("messages"):
        return "anthropic-messages"
    if tail.endswith("responses"):
        return "openai-responses"
    if tail.endswith("chat/completions"):
        return "openai-chat"
    return "anthropic-messages" if provider == "anthropic" else "openai-chat"


def _error_kind(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status == 529:
        return "overloaded_error"
    if status == 0:
        return "failed"
    return f"http_{status}"


def entry_to_record(entry: Mapping[str, Any], gateway_id: str, prices: PriceBook) -> RequestRecord:
    """One Cloudflare log entry as a ledger row (raises ValueError when it has no id or time)."""
    log_id = entry.get("id")
    created_at = entry.get("created_at")
    if not isinstance(log_id, str) or not log_id or not isinstance(created_at, str):
        raise ValueError("a log entry without an id or created_at")
    started = parse_time(created_at).timestamp()
    provider = str(entry.get("provider") or "")
    model = str(entry.get("model") or "")
    if "/" in model and provider in ("", "compat"):
        # The unified endpoint names the model "provider/model".
        provider, model = model.split("/", 1)
    success = bool(entry.get("success"))
    status = _int_or_none(entry.get("status_code"))
    if status is None:
        status = 200 if success else 0
    tokens_in = _int_or_none(entry.get("tokens_in"))
    tokens_out = _int_or_none(entry.get("tokens_out"))
    usage = Usage(input_tokens=tokens_in or 0, output_tokens=tokens_out or 0, source="imported")
    cost = _cost_of(
        entry,
        provider,
        model,
        usage,
        tokens_known=tokens_in is not None or tokens_out is not None,
        prices=prices,
    )
    duration_ms = float(_int_or_none(entry.get("duration")) or 0)
    error_kind = None if success else _error_kind(status)
    stream = "event-stream" in str(entry.get("response_content_type") or "")
    step = _int_or_none(entry.get("step")) or 0
    attempt = AttemptRecord(
        attempt=step + 1,
        started_at=started,
        provider=provider,
        model=model,
        status=status,
        error_kind=error_kind,
        ttfb_ms=None,
        duration_ms=duration_ms,
        usage=usage,
        cost_nanos=cost.total_nanos,
    )
    return RequestRecord(
        id=f"cf:{log_id}",
        started_at=started,
        sandbox=f"cloudflare:{gateway_id}",
        api=_api_of(str(entry.get("path") or ""), provider),
        provider=provider,
        model=model,
        requested_model=model,
        stream=stream,
        status=status,
        outcome="ok" if success else "error",
        error_kind=error_kind,
        error_message=None,
        ttfb_ms=None,
        duration_ms=duration_ms,
        overhead_ms=None,
        usage=usage,
        cost=cost,
        trigger="unknown",
        origin="cloudflare",
        attempts=[attempt],
    )


def _cost_of(
    entry: Mapping[str, Any],
    provider: str,
    model: str,
    usage: Usage,
    *,
    tokens_known: bool,
    prices: PriceBook,
) -> Cost:
    if entry.get("cached") is True:
        return Cost(total_nanos=0, pricing_version=CACHE_HIT_PRICING)
    theirs = usd_to_nanos(entry.get("cost"))
    if theirs is not None and entry.get("custom_cost") is True:
        return Cost(total_nanos=theirs, pricing_version=CLOUDFLARE_PRICING)
    ours = prices.cost(provider, model, usage) if tokens_known and model else None
    if ours is not None and ours.priced:
        return ours
    if theirs is not None:
        return Cost(total_nanos=theirs, pricing_version=CLOUDFLARE_PRICING)
    return ours or Cost(total_nanos=None)  # unpriced, never 0


class _Walk:
    """The state of one newest-first walk: where it stops, what it saw, what it counted."""

    def __init__(self, old: ImportCursor | None, lookback: float) -> None:
        self.old = old
        # Rows older than this end the walk; rows between it and the cursor are checked by id.
        self.floor = old.instant.timestamp() - lookback if old is not None else None
        self.newest_at = old.instant if old is not None else None
        self.newest_text = old.newest if old is not None else ""
        self.newest_ids: set[str] = set(old.ids) if old is not None else set()
        # Ids of the last few pages: a row logged during the walk pushes rows onto the next page.
        self.recent: deque[set[str]] = deque(maxlen=4)
        self.pages = self.imported = self.duplicates = self.stale_pages = 0
        self.by_table = self.by_cloudflare = self.unpriced = 0

    def saw(self, created_at: str, log_id: str) -> None:
        at = parse_time(created_at)
        if self.newest_at is None or at > self.newest_at:
            self.newest_at, self.newest_text, self.newest_ids = at, created_at, {log_id}
        elif at == self.newest_at:
            self.newest_ids.add(log_id)

    def seen_before(self, log_id: str) -> bool:
        return any(log_id in ids for ids in self.recent) or (self.old is not None and log_id in self.old.ids)

    def count(self, cost: Cost) -> None:
        self.imported += 1
        if cost.total_nanos is None:
            self.unpriced += 1
        elif cost.pricing_version in (CLOUDFLARE_PRICING, CACHE_HIT_PRICING):
            self.by_cloudflare += 1
        else:
            self.by_table += 1

    def cursor(self) -> ImportCursor | None:
        if self.newest_at is None:
            return None
        return ImportCursor(newest=self.newest_text, ids=frozenset(self.newest_ids))


class CloudflareImporter:
    """Pulls one gateway's logs into the ledger: ``import_once`` now, ``run_periodically`` forever."""

    def __init__(
        self,
        settings: CloudflareSettings,
        ledger: LedgerStore,
        prices: PriceBook,
        env: Mapping[str, str] = os.environ,
        *,
        per_page: int = DEFAULT_PER_PAGE,
        lookback: float = DEFAULT_LOOKBACK_SECONDS,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_delay: float = 120.0,
        timeout: httpx.Timeout | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.prices = prices
        self.env = env
        self.per_page = per_page
        self.lookback = lookback
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_delay = max_delay
        self.timeout = timeout or httpx.Timeout(30.0, connect=10.0)
        self._sleep = sleep
        self.last_result: ImportResult | None = None
        self.last_error: str | None = None
        self._token = ""  # set per import; only ever sent in the Authorization header
        self._running = asyncio.Lock()  # one import at a time, whoever asks

    @property
    def cursor_key(self) -> str:
        """The ledger meta key of this gateway's cursor (another gateway starts afresh)."""
        return f"cloudflare.cursor.{self.settings.account_id}.{self.settings.gateway_id}"

    @property
    def logs_url(self) -> str:
        s = self.settings
        return f"{s.api_base.rstrip('/')}/accounts/{s.account_id}/ai-gateway/gateways/{s.gateway_id}/logs"

    def _read_token(self) -> str:
        name = self.settings.api_token_env
        token = (self.env.get(name) or "").strip()
        if not token:
            raise CloudflareImportError(
                f"set {name} to a Cloudflare API token with the AI Gateway Read permission "
                f"to import the logs of gateway {self.settings.gateway_id!r}"
            )
        return token

    async def import_once(self) -> ImportResult:
        """Fetch every log entry newer than the cursor, write them to the ledger, move the cursor."""
        s = self.settings
        if not s.account_id or not s.gateway_id:
            raise CloudflareImportError(
                "set gateway.cloudflare.account_id and gateway.cloudflare.gateway_id to import "
                "a Cloudflare AI Gateway's logs"
            )
        async with self._running:
            return await self._import()

    async def _import(self) -> ImportResult:
        self._token = self._read_token()
        old = ImportCursor.from_json(await asyncio.to_thread(self.ledger.get_meta, self.cursor_key))
        walk = _Walk(old, self.lookback)
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": "moltconsole",
        }
        try:
            async with httpx.AsyncClient(headers=headers, timeout=self.timeout) as client:
                page = 1
                while await self._import_page(client, page, walk):
                    page += 1
        finally:
            # What was queued is written even when the walk failed: the rerun then finds it.
            await asyncio.to_thread(self.ledger.flush)
        cursor = walk.cursor()
        if cursor is not None and cursor != old:
            await asyncio.to_thread(self.ledger.set_meta, self.cursor_key, cursor.to_json())
        result = ImportResult(
            pages=walk.pages,
            imported=walk.imported,
            duplicates=walk.duplicates,
            cursor=cursor,
            priced_by_table=walk.by_table,
            priced_by_cloudflare=walk.by_cloudflare,
            unpriced=walk.unpriced,
        )
        self.last_result, self.last_error = result, None
        return result

    async def _import_page(self, client: httpx.AsyncClient, page: int, walk: _Walk) -> bool:
        """Fetch and import one page; True when the walk goes on to the next page."""
        rows, info = await self._fetch(client, page)
        walk.pages += 1
        fresh: list[RequestRecord] = []
        reached_floor = False
        on_page: set[str] = set()
        for entry in rows:
            try:
                record = entry_to_record(entry, self.settings.gateway_id, self.prices)
            except (ValueError, TypeError) as exc:
                log.warning("skipping a Cloudflare log entry that cannot be read: %s", exc)
                continue
            if walk.floor is not None and record.started_at < walk.floor:
                reached_floor = True  # newest first: everything after this is older still
                continue
            log_id = record.id[3:]
            walk.saw(str(entry["created_at"]), log_id)
            if log_id in on_page or walk.seen_before(log_id):
                walk.duplicates += 1
            else:
                fresh.append(record)
            on_page.add(log_id)
        if fresh:
            known = await asyncio.to_thread(self._known, [r.id for r in fresh])
            for record in fresh:
                if record.id in known:
                    walk.duplicates += 1
                else:
                    self.ledger.record(record)
                    walk.count(record.cost)
        if on_page and all(any(i in ids for ids in walk.recent) for i in on_page):
            # Nothing on this page is new to the walk: rows arrive faster than we page, or the
            # server does not move through pages. Give up after a few; the cursor stays.
            walk.stale_pages += 1
            if walk.stale_pages >= 3:
                raise CloudflareImportError(
                    f"the Cloudflare API kept returning rows of earlier pages (up to page {page}); "
                    "stopping this import, the next one starts again from the cursor"
                )
        else:
            walk.stale_pages = 0
        walk.recent.append(on_page)
        # Cloudflare may serve fewer per page than asked; its result_info says how many.
        per_page = _int_or_none(info.get("per_page")) or self.per_page
        if reached_floor or len(rows) < per_page:
            return False
        total = _int_or_none(info.get("total_count"))
        return total is None or page * per_page < total

    def _known(self, ids: Iterable[str]) -> set[str]:
        return {i for i in ids if self.ledger.get(i) is not None}

    async def _fetch(self, client: httpx.AsyncClient, page: int) -> tuple[list[Any], Mapping[str, Any]]:
        """One page, retrying 429, 5xx and network errors; raises CloudflareImportError."""
        params: dict[str, str | int] = {
            "page": page,
            "per_page": self.per_page,
            "order_by": "created_at",
            "order_by_direction": "desc",
        }
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = await client.get(self.logs_url, params=params)
            except httpx.TransportError as exc:
                if last:
                    raise CloudflareImportError(
                        f"cannot reach the Cloudflare API at {self.settings.api_base} "
                        f"({type(exc).__name__}) after {attempt} attempts"
                    ) from None
                await self._sleep(self._backoff_delay(attempt))
                continue
            if response.status_code in _RETRY_STATUSES and not last:
                delay = _retry_after(response.headers.get("retry-after"))
                delay = self._backoff_delay(attempt) if delay is None else min(delay, self.max_delay)
                log.info(
                    "Cloudflare API answered %d; retrying page %d in %.1fs", response.status_code, page, delay
                )
                await self._sleep(delay)
                continue
            return self._read_page(response)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _backoff_delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_delay))

    def _read_page(self, response: httpx.Response) -> tuple[list[Any], Mapping[str, Any]]:
        s = self.settings
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = self._describe_errors(body)
        codes = _error_codes(body)
        if status in (401, 403):
            raise CloudflareImportError(
                f"Cloudflare refused the API token in {s.api_token_env} (HTTP {status}{errors}): "
                f"the token needs the AI Gateway Read permission on account {s.account_id!r}",
                status=status,
            )
        if status == 400 and codes & _BAD_HEADER_CODES:
            raise CloudflareImportError(
                f"Cloudflare rejected the Authorization header (HTTP 400{errors}): {s.api_token_env} "
                "must hold an API token (not a Global API key), without 'Bearer' or spaces",
                status=status,
            )
        if status == 404:
            raise CloudflareImportError(
                f"Cloudflare found no AI Gateway {s.gateway_id!r} in account {s.account_id!r} "
                f"(HTTP 404{errors}): check gateway.cloudflare.account_id and gateway_id",
                status=status,
            )
        if status >= 400:
            raise CloudflareImportError(
                f"the Cloudflare API answered HTTP {status}{errors} for the logs of gateway {s.gateway_id!r}",
                status=status,
            )
        if not isinstance(body, dict):
            kind = response.headers.get("content-type", "no content type")
            raise CloudflareImportError(
                f"the Cloudflare API answered HTTP {status} with something that is not its JSON "
                f"envelope ({kind}): is api_base {s.api_base!r} right?",
                status=status,
            )
        if body.get("success") is False:
            raise CloudflareImportError(
                f"the Cloudflare API reported a failure{errors or ''}",
                status=status,
            )
        rows = body.get("result")
        info = body.get("result_info")
        if not isinstance(rows, list):
            raise CloudflareImportError(
                "the Cloudflare API answered without a list of log entries in 'result'",
                status=status,
            )
        return rows, info if isinstance(info, dict) else {}

    def _describe_errors(self, body: Any) -> str:
        """Cloudflare's own error messages, short and with the token scrubbed out."""
        if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
            return ""
        parts: list[str] = []
        for error in body["errors"][:3]:
            if isinstance(error, dict):
                text = f"{error.get('message', '')} [{error.get('code', '?')}]"
                parts.append(self._scrub(text)[:200])
        return (": " + "; ".join(parts)) if parts else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    async def run_periodically(
        self,
        stop: asyncio.Event,
        on_run: Callable[[ImportResult | None, str | None], None] | None = None,
    ) -> None:
        """Import now and then every ``import_interval`` seconds until ``stop`` is set.

        A failed import is logged and kept in ``last_error`` (and given to ``on_run``); the next
        one is tried at the next interval. Setting ``stop`` also cancels an import in progress
        (for example one waiting out a Retry-After).
        """
        while not stop.is_set():
            task = asyncio.ensure_future(self.import_once())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
            result: ImportResult | None = None
            try:
                result = task.result()
            except CloudflareImportError as exc:
                self.last_error = str(exc)
                log.warning("Cloudflare AI Gateway import failed: %s", exc)
            except Exception as exc:
                self.last_error = f"unexpected error: {type(exc).__name__}"
                log.exception("Cloudflare AI Gateway import failed")
            else:
                if result.imported:
                    log.info(
                        "imported %d Cloudflare AI Gateway log entries (%d pages)",
                        result.imported,
                        result.pages,
                    )
            if on_run is not None:
                on_run(result, self.last_error if result is None else None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.import_interval)


def _error_codes(body: Any) -> set[int]:
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return set()
    codes: set[int] = set()
    for error in body["errors"]:
        if not isinstance(error, dict):
            continue
        if isinstance(error.get("code"), int):
            codes.add(error["code"])
        for link in error.get("error_chain") or []:
            if isinstance(link, dict) and isinstance(link.get("code"), int):
                codes.add(link["code"])
    return codes


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
