"""One request from the agent, through every upstream attempt, to its ledger row.

``Exchange.run``:

1. reads the body (``request_body``: small bodies in place, large ones in a worker process);
2. checks the budgets, then forwards the body to the provider with the real key, retrying and
   falling back (to another model or provider) only while nothing has reached the agent yet;
3. streams the provider's bytes to the agent unmodified (but for redacted secrets) and
   unbuffered while a copy is parsed for usage and errors: each piece is written to the agent
   from the callback that read it from the provider, with no task switch in between (``Relay``);
4. records one ledger row for the request and one per upstream attempt, with the cost.

What a request costs never depends on how the agent behaves. If the agent hangs up once the
answer has begun, the provider's answer is still read to its end, off the agent's path, for up
to ``gateway.drain_timeout`` seconds and ``gateway.drain_max_mb`` (the provider bills it all);
if that end does not come, or a stream ends without the provider's usage report, the usage is
estimated from the request and the output relayed, marked ``estimated``, and counted like any
other. The model priced is the one the provider says it served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from moltconsole_shared.wire.records import Api, AttemptRecord, Cost, Outcome, RequestRecord, Usage

from . import usage as usage_mod
from .http_server import Request, ResponseWriter
from .redact import Redactor
from .request_body import BadRequest, ParsedBody
from .upstream import (
    UpstreamAbandoned,
    UpstreamConnection,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from .proxy import GatewayProxy, Target

log = logging.getLogger(__name__)

OVERHEAD_HEADER = b"x-moltconsole-overhead-ms"
REQUEST_ID_HEADER = b"x-moltconsole-request-id"
BUDGET_HEADER = b"x-moltconsole-budget-warning"

# Upstream answers worth another try before anything reached the agent.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 30.0

# Response headers never relayed to the agent: hop-by-hop ones, cookies, the provider's framing
# (ours is our own), and anything claiming to be ours (plus what the Connection header names).
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"upgrade",
        b"set-cookie",
        b"trailer",
        b"te",
        b"proxy-authenticate",
        b"proxy-connection",
        b"date",
        b"server",
        b"content-length",
    }
)
_OURS = b"x-moltconsole-"

# Errors the gateway answers itself.
UpstreamFailure = tuple[int, str, str, bytes, list[tuple[bytes, bytes]]]


class Refused(Exception):
    """The gateway answers the agent itself (budget, bad request, misconfiguration)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        ledger_kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or []
        self.ledger_kind = ledger_kind  # set when the refusal gets a ledger row


def new_request_id() -> str:
    """A random (version 4) UUID as 32 hex digits: a request's id (uuid4() costs 3x as much)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def error_body(api: Api, kind: str, message: str) -> bytes:
    """An error in the shape the agent's SDK for that API understands."""
    if api == "anthropic-messages":
        payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": kind, "code": kind, "param": None}}
    return json.dumps(payload).encode()


def connection_tokens(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names a message's ``Connection`` header lists: hop-by-hop, never forwarded."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return frozenset(names)


def relayable_headers(
    headers: Sequence[tuple[bytes, bytes]], redactor: Redactor
) -> list[tuple[bytes, bytes]]:
    """A provider's response headers as the agent may see them."""
    named = connection_tokens(headers)
    drop = _DROP_RESPONSE if named <= _DROP_RESPONSE else _DROP_RESPONSE | named
    clean = redactor.clean if redactor else None
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in drop or lower.startswith(_OURS):
            continue
        out.append((name, clean(value) if clean is not None else value))
    return out


class Exchange:
    """One request from the agent, through every upstream attempt, to its ledger row."""

    def __init__(
        self,
        proxy: GatewayProxy,
        request: Request,
        writer: ResponseWriter,
        api: Api,
        provider_name: str,
        sandbox: str,
        started: float,
        t0: float,
    ) -> None:
        self.proxy, self.request, self.writer = proxy, request, writer
        self.api, self.provider_name, self.sandbox = api, provider_name, sandbox
        self.started, self.t0 = started, t0
        self.id = new_request_id()
        self.waited = 0.0  # seconds spent waiting on upstream, a worker or backing off (not overhead)
        self.attempts: list[AttemptRecord] = []
        self.ttfb_ms: float | None = None
        self.body: ParsedBody | None = None
        self.requested_model = ""
        self.stream = False
        self.in_flight: UpstreamConnection | None = None  # sent, its response not yet begun
        self.redactor = proxy.redactor()
        writer.on_lost = self._agent_gone

    def _agent_gone(self) -> None:
        if self.in_flight is not None:
            self.in_flight.abandon()  # the provider stops generating for nobody

    def _on_sent(self, conn: UpstreamConnection) -> None:
        self.in_flight = conn
        if self.writer.lost:
            conn.abandon()

    def _ours(self, overhead_ms: float | None = None) -> list[tuple[bytes, bytes]]:
        if overhead_ms is None:
            overhead_ms = (time.perf_counter() - self.t0 - self.waited) * 1000
        return [(OVERHEAD_HEADER, f"{overhead_ms:.3f}".encode()), (REQUEST_ID_HEADER, self.id.encode())]

    async def run(self) -> None:
        """Answer the request and record it."""
        try:
            try:
                t = time.perf_counter()
                self.body = await self.proxy.bodies.read(self.api, self.request.body)
                if len(self.request.body) > self.proxy.bodies.inline_bytes:
                    self.waited += time.perf_counter() - t  # a worker's time, not the loop's
            except BadRequest as exc:
                raise Refused(400, "invalid_request_error", str(exc)) from None
            self.requested_model = self.body.facts.model
            self.stream = self.body.facts.stream
            targets = self.proxy.targets(self.api, self.provider_name, self.requested_model)
            warning = self._budget(targets)
            await self._forward(targets, warning)
        except Refused as refused:
            self._refuse(refused)

    def _budget(self, targets: list[Target]) -> str:
        guard = self.proxy.guard
        if guard is None:
            return ""
        decision = guard.check(self.sandbox)
        if decision.action == "block":
            raise budget_refusal(decision.message)
        if decision.action == "fallback":
            cheap = self.proxy.target(self.proxy.settings.budget_fallback_model, targets[0].provider)
            if cheap is None or cheap.settings.api != targets[0].settings.api:
                raise budget_refusal(decision.message)
            targets[:] = [cheap]
            return decision.message + f" Serving {cheap.model} instead."
        return decision.warning

    async def _forward(self, targets: list[Target], warning: str) -> None:
        settings = self.proxy.settings
        assert self.body is not None
        incoming = self.request.headers
        last_error: UpstreamFailure | None = None
        for target in targets:
            t = time.perf_counter()
            try:
                payload = await self.body.payload(self.api, target.model)
            except BadRequest as exc:
                raise Refused(400, "invalid_request_error", str(exc)) from None
            if payload is not self.request.body and len(payload) > self.proxy.bodies.inline_bytes:
                self.waited += time.perf_counter() - t
            headers = self.proxy.upstream_headers(target.provider, target.settings, incoming)
            url = self.proxy.upstream_url(target, self.api)
            for retry in range(settings.retries + 1):
                outcome = await self._attempt(target, url, headers, payload, warning)
                if outcome is None:
                    return  # the response went to the agent and is recorded
                if self.writer.lost:
                    self._gone(target)
                    return
                last_error = outcome
                status = outcome[0]
                if status not in RETRYABLE and status != 0:
                    self._relay_error(target, outcome)
                    return
                if retry < settings.retries:
                    await self._backoff(retry, outcome[4])
                    if self.writer.lost:
                        self._gone(target)
                        return
        assert last_error is not None
        self._relay_error(targets[-1], last_error)

    async def _backoff(self, retry: int, headers: list[tuple[bytes, bytes]]) -> None:
        delay = self.proxy.settings.retry_backoff * (2**retry)
        for name, value in headers:
            if name.lower() == b"retry-after":
                with contextlib.suppress(ValueError):
                    delay = max(delay, min(float(value), MAX_RETRY_AFTER))
        if delay > 0:
            t = time.perf_counter()
            await asyncio.sleep(delay)
            self.waited += time.perf_counter() - t

    async def _attempt(
        self,
        target: Target,
        url: str,
        headers: list[tuple[str, str]],
        payload: bytes,
        warning: str,
    ) -> UpstreamFailure | None:
        """One upstream call. None when the response went to the agent; else the error to weigh."""
        client = self.proxy.http()
        attempt = AttemptRecord(
            attempt=len(self.attempts) + 1,
            started_at=time.time(),
            provider=target.provider,
            model=target.model,
            status=0,
        )
        self.attempts.append(attempt)
        a0 = time.perf_counter()
        try:
            response = await client.request("POST", url, headers, payload, self._on_sent)
        except UpstreamAbandoned:
            return self._failed(attempt, a0, "client_disconnected", "the agent went away")
        except UpstreamTimeout as exc:
            return self._failed(attempt, a0, "timeout", f"no answer from {target.provider}: {exc}")
        except UpstreamError as exc:
            return self._failed(attempt, a0, "connect", f"cannot reach {target.provider}: {exc}")
        finally:
            # From here the connection is the response's to close or give back (and, given back,
            # another request's): the agent going away no longer abandons it through us.
            self.in_flight = None
        headers_at = time.perf_counter()
        self.waited += headers_at - a0
        attempt.status = response.status
        attempt.ttfb_ms = (headers_at - a0) * 1000
        if response.status >= 400:
            try:
                body = await response.read()
            except UpstreamError:
                body = b""
            finally:
                response.release()
            self.waited += time.perf_counter() - headers_at
            kind, message = usage_mod.error_kind_for(response.status, body)
            attempt.error_kind = kind
            attempt.duration_ms = (time.perf_counter() - a0) * 1000
            return response.status, kind, message, body, list(response.raw_headers)
        await self._relay(target, attempt, response, a0, warning)
        return None

    def _failed(self, attempt: AttemptRecord, a0: float, kind: str, message: str) -> UpstreamFailure:
        elapsed = time.perf_counter() - a0
        self.waited += elapsed
        attempt.error_kind = kind
        attempt.duration_ms = elapsed * 1000
        return 0, kind, message, b"", []

    def _parser_for(self, response: UpstreamResponse) -> usage_mod.UsageParser:
        # The provider's framing decides, not the request's "stream": a body with two "stream"
        # keys can make the provider stream while the gateway read the other one.
        stream = self.stream
        for name, value in response.raw_headers:
            if name.lower() == b"content-type":
                stream = value.lower().startswith(b"text/event-stream")
                break
        return usage_mod.parser_for(self.api, stream)

    async def _relay(
        self,
        target: Target,
        attempt: AttemptRecord,
        response: UpstreamResponse,
        a0: float,
        warning: str,
    ) -> None:
        """Stream an upstream response to the agent, parsing a copy, until its end."""
        parser = self._parser_for(response)
        overhead_ms = (time.perf_counter() - self.t0 - self.waited) * 1000
        out_headers = relayable_headers(response.raw_headers, self.redactor) + self._ours(overhead_ms)
        if warning:
            out_headers.append((BUDGET_HEADER, warning.encode("ascii", "replace")))
        writer = self.writer
        settings = self.proxy.settings
        relay = Relay(
            writer,
            parser,
            response,
            self.redactor if self.redactor else None,
            drain_bytes=settings.drain_max_mb * 1024 * 1024,
            drain_seconds=settings.drain_timeout,
        )
        if writer.lost:
            relay.lost()
        else:
            # The head leaves with what the provider sent along with its own headers, if
            # anything, in one write; else right after relay() (flush).
            writer.start(response.status, out_headers, hold=True)
            writer.on_lost = relay.lost
            writer.on_pause = response.pause
            writer.on_resume = response.resume
        response.relay(relay)
        if writer.started:
            writer.flush()
            self.ttfb_ms = (time.perf_counter() - self.t0) * 1000
        result = await relay.finished
        relay.stop_timer()
        writer.on_pause = writer.on_resume = None
        agent_gone = relay.agent_gone
        failure = _stream_failure(result) if isinstance(result, UpstreamError) else ""
        if result is None:
            response.release()
        else:
            response.close()  # drops the upstream connection: the provider stops generating
        if not agent_gone:
            if failure:
                # The provider's connection broke: break the agent's too, so it sees a cut
                # stream rather than one that looks complete.
                writer.abort()
            else:
                tail = relay.flush()
                if tail:
                    writer.write(tail)
                writer.end()
        end = time.perf_counter()
        parsed = parser.result(complete=result is None)
        usage = parsed.usage
        if usage.source != "provider" and not parsed.error_kind:
            # The provider's report never came: the agent left and the answer could not be read
            # to its end, the stream broke, or it ended without one. It still cost money.
            usage = parser.estimate(self.body.input_estimate() if self.body else 0)
        outcome: Outcome = "ok"
        kind = parsed.error_kind
        message = parsed.error_message or failure or None
        if agent_gone:
            outcome, kind = "cancelled", "client_disconnected"
            message = message or _gone_message(result)
        elif failure:
            outcome, kind = "error", kind or "stream_broken"
        elif parsed.error_kind:
            outcome = "error"
        elif parser_stream(parser) and not parsed.finished:
            outcome, kind = "error", "stream_broken"
            message = "the provider's stream ended without its final event"
        served = parsed.model or target.model
        cost = self.proxy.prices.cost(target.provider, served, usage)
        attempt.duration_ms = (end - a0) * 1000
        attempt.usage = usage
        attempt.error_kind = kind
        attempt.cost_nanos = cost.total_nanos
        attempt.model = served
        self._finish(
            target=target,
            served=served,
            status=response.status,
            outcome=outcome,
            kind=kind,
            message=message,
            usage=usage,
            cost=cost,
            duration_ms=(end - self.t0) * 1000,
            overhead_ms=overhead_ms,
        )

    def _relay_error(self, target: Target, error: UpstreamFailure) -> None:
        """Hand the last upstream error to the agent as the provider sent it (or ours if none came)."""
        status, kind, message, body, headers = error
        ours = self._ours()
        if status == 0:
            status = 502
            text = f"moltconsole gateway: {message} after {len(self.attempts)} attempt(s)"
            self.writer.respond(
                status,
                error_body(self.api, "api_error", text),
                [(b"content-type", b"application/json"), *ours],
            )
        else:
            out = relayable_headers(headers, self.redactor)
            self.writer.respond(status, self.redactor.clean(body) if self.redactor else body, [*out, *ours])
        self.ttfb_ms = (time.perf_counter() - self.t0) * 1000
        self._finish(
            target=target,
            served=target.model,
            status=status,
            outcome="error",
            kind=kind,
            message=self.redactor.clean_text(message) if self.redactor else message,
            usage=Usage(),
            cost=Cost(total_nanos=0, pricing_version=self.proxy.prices.version),
            duration_ms=(time.perf_counter() - self.t0) * 1000,
            overhead_ms=None,
        )

    def _gone(self, target: Target) -> None:
        """The agent went away before its response started: nothing to send, the row says so."""
        self._finish(
            target=target,
            served=target.model,
            status=499,
            outcome="cancelled",
            kind="client_disconnected",
            message="the agent disconnected before the response started",
            usage=Usage(),
            cost=Cost(total_nanos=0, pricing_version=self.proxy.prices.version),
            duration_ms=(time.perf_counter() - self.t0) * 1000,
            overhead_ms=None,
        )

    def _refuse(self, refused: Refused) -> None:
        headers = [(b"content-type", b"application/json"), *refused.headers, *self._ours()]
        self.writer.respond(refused.status, error_body(self.api, refused.kind, refused.message), headers)
        if refused.ledger_kind is not None:
            outcome: Outcome = "blocked" if refused.ledger_kind == BUDGET_KIND else "error"
            self._finish(
                target=None,
                served=self.requested_model,
                status=refused.status,
                outcome=outcome,
                kind=refused.ledger_kind,
                message=refused.message,
                usage=Usage(),
                cost=Cost(total_nanos=0, pricing_version=self.proxy.prices.version),
                duration_ms=(time.perf_counter() - self.t0) * 1000,
                overhead_ms=None,
            )

    def _finish(
        self,
        *,
        target: Target | None,
        served: str,
        status: int,
        outcome: Outcome,
        kind: str | None,
        message: str | None,
        usage: Usage,
        cost: Cost,
        duration_ms: float,
        overhead_ms: float | None,
    ) -> None:
        record = RequestRecord(
            id=self.id,
            started_at=self.started,
            sandbox=self.sandbox,
            api=self.api,
            provider=target.provider if target else self.provider_name,
            model=served,
            requested_model=self.requested_model,
            stream=self.stream,
            status=status,
            outcome=outcome,
            error_kind=kind,
            error_message=(message or None) and str(message)[:500],
            ttfb_ms=self.ttfb_ms,
            duration_ms=duration_ms,
            overhead_ms=overhead_ms,
            usage=usage,
            cost=cost,
            trigger=self.body.trigger() if self.body else "unknown",
            origin="proxy",
            attempts=self.attempts,
        )
        if self.proxy.guard is not None:
            self.proxy.guard.add(self.sandbox, cost.total_nanos, record.id, record.started_at)
        try:
            self.proxy.record(record)
        except Exception:
            log.exception("could not queue ledger row %s", self.id)


# The agent-facing answer when a budget is spent; see budget_refusal.
BUDGET_STATUS = 429
BUDGET_ERROR_TYPE = "rate_limit_error"
BUDGET_KIND = "budget_exceeded"  # in the ledger


def budget_refusal(message: str) -> Refused:
    """What the agent gets when a budget is spent: a 429 rate-limit error without retry-after.

    Read from OpenClaw 2026.9.6's provider-error classification and measured with the real
    agent: a 402 (or billing words at any status) is a *billing* failure, shown as "your API key
    has run out of credits" and followed by disabling the provider key for 10 minutes (doubling
    up to 24 h), stored in the agent's state so a restart does not lift it. A 429
    ``rate_limit_error`` is the one category whose text OpenClaw shows the user as written (if
    it says when it resets and stays under 300 characters: ``budgets.spent_message``); with
    "daily"/"monthly" in it, OpenClaw does not retry, and it stores no cooldown for the key, so
    the next turn after the budget is raised goes through at once. A ``retry-after`` header
    would make OpenClaw fall back to its generic "API rate limit reached" text.
    """
    return Refused(
        BUDGET_STATUS,
        BUDGET_ERROR_TYPE,
        message,
        headers=[(b"x-should-retry", b"false")],
        ledger_kind=BUDGET_KIND,
    )


_LOST = object()  # the agent went away and the provider's answer was not drained
_GAVE_UP = object()  # the drain hit its time or byte limit


def parser_stream(parser: usage_mod.UsageParser) -> bool:
    """Whether the parser reads an SSE stream (a stream must end with its final event)."""
    return isinstance(parser, usage_mod.SSEParser)


def _gone_message(result: object) -> str:
    if result is None:
        return "the agent disconnected mid-response; the provider's answer was read to its end for its usage"
    if result is _GAVE_UP:
        return (
            "the agent disconnected mid-response; the rest of the answer was not read "
            "(drain limit), usage estimated"
        )
    return "the agent disconnected mid-response; usage estimated"


class Relay:
    """The provider's body on its way to the agent, driven by the provider connection's callbacks.

    Each piece is written to the agent first (secrets redacted), then fed to the usage parser.
    If the agent goes away, the rest is only parsed (a drain), within ``drain_bytes`` and
    ``drain_seconds``. ``finished`` ends with None (the provider's body complete), the
    provider's error, ``_LOST`` (agent gone, no drain) or ``_GAVE_UP`` (drain limit hit).
    """

    __slots__ = (
        "agent_gone",
        "drain_bytes",
        "drain_seconds",
        "drained",
        "finished",
        "parse_failed",
        "parser",
        "redactor",
        "response",
        "timer",
        "writer",
    )

    def __init__(
        self,
        writer: ResponseWriter,
        parser: usage_mod.UsageParser,
        response: UpstreamResponse,
        redactor: Redactor | None,
        *,
        drain_bytes: int,
        drain_seconds: float,
    ) -> None:
        self.writer = writer
        self.parser = parser
        self.response = response
        self.redactor = redactor
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds
        self.finished: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.parse_failed = False
        self.agent_gone = False
        self.drained = 0
        self.timer: asyncio.TimerHandle | None = None

    def data(self, chunk: bytes) -> None:
        if self.agent_gone:
            self.drained += len(chunk)
            if self.drained > self.drain_bytes:
                self._end(_GAVE_UP)
                return
        elif self.redactor is None:
            self.writer.write(chunk)
        else:
            self.writer.write(self.redactor.feed(chunk))
        if self.parse_failed:
            return
        try:
            self.parser.feed(chunk)
        except Exception:  # the bytes still reach the agent; the ledger row says what is known
            self.parse_failed = True
            log.exception("could not parse the provider's response for usage; relaying it unparsed")

    def done(self, error: UpstreamError | None) -> None:
        self._end(error)

    def lost(self) -> None:
        """The agent went away: drain what the provider still sends, within the limits."""
        if self.agent_gone or self.finished.done():
            return
        self.agent_gone = True
        if self.drain_seconds <= 0 or self.drain_bytes <= 0:
            self._end(_LOST)
            return
        self.response.resume()  # it may have been paused for the agent, who reads no more
        self.timer = asyncio.get_running_loop().call_later(self.drain_seconds, self._end, _GAVE_UP)

    def flush(self) -> bytes:
        """What the redactor still holds, for the end of the body."""
        return self.redactor.flush() if self.redactor is not None else b""

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _end(self, result: object) -> None:
        if not self.finished.done():
            self.finished.set_result(result)


def _stream_failure(exc: BaseException) -> str:
    if isinstance(exc, UpstreamTimeout):
        return "the provider sent nothing for longer than gateway.read_timeout"
    if isinstance(exc, UpstreamError):
        return f"the provider's connection broke mid-response ({type(exc).__name__})"
    return f"relaying the response failed ({type(exc).__name__})"
