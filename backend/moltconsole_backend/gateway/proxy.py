"""The AI gateway's proxy: the agent's LLM calls in, the real provider out, every request priced.

The handler behind the gateway's own HTTP server (``http_server.py``). For each request it:

1. authenticates the sandbox by its gateway token (constant-time), never the provider key;
2. checks the budgets, then forwards the body to the provider with the real key, retrying and
   falling back (to another model or provider) only while nothing has reached the agent yet;
3. streams the provider's bytes to the agent unmodified and unbuffered while a copy is parsed
   incrementally for usage and errors: each piece is written to the agent from the callback that
   read it from the provider, with no task switch in between;
4. records one ledger row for the request and one per upstream attempt, with the cost.

Supported: Anthropic Messages (``/v1/messages``), OpenAI Chat Completions
(``/v1/chat/completions``) and Responses (``/v1/responses``). A provider can be named in the path
(``/<provider>/v1/messages``); otherwise the configured default for that API serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from moltconsole.settings import GatewaySettings, ProviderSettings

from . import usage as usage_mod
from .budgets import BudgetGuard
from .http_server import Request, ResponseWriter
from .pricing import PriceTable
from .records import Api, AttemptRecord, Cost, Outcome, RequestRecord, Usage
from .trigger import classify_trigger
from .upstream import (
    UpstreamAbandoned,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

OVERHEAD_HEADER = b"x-moltconsole-overhead-ms"
REQUEST_ID_HEADER = b"x-moltconsole-request-id"
BUDGET_HEADER = b"x-moltconsole-budget-warning"

# Upstream answers worth another try before anything reached the agent.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})
MAX_BODY_BYTES = 32 * 1024 * 1024
AUTH_REFUSED = "invalid or missing moltconsole gateway token (x-api-key or Authorization)"
MAX_RETRY_AFTER = 30.0

_ROUTES: dict[str, tuple[Api, str]] = {
    "/v1/messages": ("anthropic-messages", "anthropic"),
    "/v1/chat/completions": ("openai-chat", "openai"),
    "/v1/responses": ("openai-responses", "openai"),
}
# Request headers never passed upstream: the agent's credentials, and hop-by-hop headers.
_DROP_REQUEST = frozenset(
    {
        b"host",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"accept-encoding",
        b"cookie",
        b"expect",
    }
)
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"upgrade",
        b"set-cookie",
        b"trailer",
        b"proxy-authenticate",
        b"date",
        b"server",
    }
)


class TokenRegistry:
    """Which sandbox a gateway token belongs to. Every token is compared in constant time."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._tokens: list[tuple[bytes, str]] = []
        for token, sandbox in (tokens or {}).items():
            self.add(token, sandbox)

    def add(self, token: str, sandbox: str) -> None:
        """Accept ``token`` as the given sandbox's credential."""
        if token:
            self._tokens = [(t, s) for t, s in self._tokens if s != sandbox]
            self._tokens.append((token.encode(), sandbox))

    def sandbox_for(self, presented: bytes) -> str | None:
        """The sandbox whose token was presented, or None. Looks at every token either way."""
        found = None
        for token, sandbox in self._tokens:
            if hmac.compare_digest(token, presented):
                found = sandbox
        return found


@dataclass(slots=True)
class _Target:
    provider: str
    settings: ProviderSettings
    model: str


class _Refused(Exception):
    """The gateway answers the agent itself (auth, budget, bad request, misconfiguration)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class GatewayProxy:
    """What the sandbox's OpenClaw sends its model requests to (served by ``http_server``)."""

    def __init__(
        self,
        settings: GatewaySettings,
        tokens: TokenRegistry,
        prices: PriceTable,
        record: Callable[[RequestRecord], None],
        *,
        guard: BudgetGuard | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.prices = prices
        self.record = record
        self.guard = guard
        self._env = os.environ if env is None else env
        self._pool: UpstreamPool | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def _http(self) -> UpstreamPool:
        if self._pool is None:
            s = self.settings
            self._pool = UpstreamPool(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
        return self._pool

    async def aclose(self) -> None:
        """Close the upstream connections."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- requests ------------------------------------------------------------------------------

    async def handle(self, request: Request, writer: ResponseWriter) -> None:
        """Answer one request from the agent."""
        path = request.path
        if path in ("/healthz", "/readyz"):
            writer.respond(200, b'{"ok":true}')
            return
        started = time.time()
        t0 = time.perf_counter()
        api, provider_name = self._route(path)
        if api is None:
            _error(
                writer,
                "anthropic-messages",
                404,
                "not_found_error",
                f"the moltconsole gateway has no route {path!r}; it serves "
                "/v1/messages, /v1/chat/completions and /v1/responses",
            )
            return
        if request.method != "POST":
            _error(writer, api, 405, "invalid_request_error", f"{path} takes POST")
            return
        sandbox = self._authenticate(request.headers)
        if sandbox is None:
            _error(
                writer,
                api,
                401,
                "authentication_error",
                AUTH_REFUSED,
            )
            return
        await _Exchange(self, request, writer, api, provider_name, sandbox, started, t0).run()

    def admit(self, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes] | None:
        """Refuse a request without a valid token on its headers alone, before its body is read."""
        if path in ("/healthz", "/readyz") or self._authenticate(headers) is not None:
            return None
        api, _ = self._route(path)
        return 401, error_body(api or "anthropic-messages", "authentication_error", AUTH_REFUSED)

    def _route(self, path: str) -> tuple[Api | None, str]:
        route = _ROUTES.get(path)
        if route is not None:
            api, family = route
            default = (
                self.settings.default_anthropic if family == "anthropic" else self.settings.default_openai
            )
            return api, default
        # /<provider>/v1/...
        head, sep, rest = path[1:].partition("/")
        if sep and head in self.settings.providers:
            route = _ROUTES.get("/" + rest)
            if route is not None:
                return route[0], head
        return None, ""

    def _authenticate(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        presented = b""
        for name, value in headers:
            if name == b"x-api-key":
                presented = value.strip()
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
                break
        if not presented:
            return None
        return self.tokens.sandbox_for(presented)

    def key_for(self, name: str, provider: ProviderSettings) -> str:
        """The provider's real key, from the config or the backend's environment."""
        key = provider.api_key or (self._env.get(provider.api_key_env, "") if provider.api_key_env else "")
        if not key and not provider.headers:
            hint = (
                f"set {provider.api_key_env} in the backend's environment or " if provider.api_key_env else ""
            )
            raise _Refused(
                502,
                "gateway_config",
                f"moltconsole has no API key for provider {name!r}: {hint}"
                f"set gateway.providers.{name}.api_key_env in the moltconsole config, "
                "then restart the backend",
            )
        return key

    def upstream_headers(
        self, name: str, provider: ProviderSettings, incoming: list[tuple[bytes, bytes]]
    ) -> list[tuple[str, str]]:
        """The agent's headers minus its credentials, plus the provider's real ones."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in incoming if k not in _DROP_REQUEST]
        headers.append(("accept-encoding", "identity"))
        key = self.key_for(name, provider)
        if key:
            if provider.api == "anthropic":
                headers.append(("x-api-key", key))
            else:
                headers.append(("authorization", "Bearer " + key))
        for header, value in provider.headers.items():
            if value.startswith("env:"):
                value = self._env.get(value[4:], "")
            headers.append((header.lower(), value))
        return headers

    def targets(self, api: Api, provider_name: str, model: str) -> list[_Target]:
        """The first choice and its configured fallbacks, all of the same API family."""
        family = "anthropic" if api == "anthropic-messages" else "openai"
        out: list[_Target] = []
        for spec in [f"{provider_name}/{model}", *self.settings.fallbacks.get(model, [])]:
            target = self._target(spec, provider_name)
            if target is None:
                log.warning("gateway fallback %r names no configured provider; skipped", spec)
                continue
            if target.settings.api != family:
                log.warning(
                    "gateway fallback %r speaks %s, not %s; skipped", spec, target.settings.api, family
                )
                continue
            out.append(target)
        if not out:
            raise _Refused(
                502,
                "gateway_config",
                f"moltconsole gateway: provider {provider_name!r} is not configured "
                f"(gateway.providers.{provider_name})",
            )
        return out

    def _target(self, spec: str, default_provider: str) -> _Target | None:
        provider, sep, model = spec.partition("/")
        if not sep or provider not in self.settings.providers:
            provider, model = default_provider, spec
        settings = self.settings.providers.get(provider)
        return _Target(provider, settings, model) if settings is not None else None


class _Exchange:
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
        self.id = uuid.uuid4().hex
        self.waited = 0.0  # seconds spent waiting on upstream or backing off (not our overhead)
        self.attempts: list[AttemptRecord] = []
        self.ttfb_ms: float | None = None
        self.body: dict[str, Any] = {}
        self.requested_model = ""
        self.stream = False
        self.in_flight: UpstreamConnection | None = None  # sent, its response not yet begun
        writer.on_lost = self._agent_gone

    def _agent_gone(self) -> None:
        if self.in_flight is not None:
            self.in_flight.abandon()  # the provider stops generating for nobody

    def _on_sent(self, conn: UpstreamConnection) -> None:
        self.in_flight = conn
        if self.writer.lost:
            conn.abandon()

    async def run(self) -> None:
        try:
            raw = self.request.body
            try:
                body = json.loads(raw)
            except ValueError:
                raise _Refused(400, "invalid_request_error", "the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _Refused(400, "invalid_request_error", "the request body must be a JSON object")
            self.body = body
            self.requested_model = usage_mod.request_model(self.api, body)
            if not self.requested_model:
                raise _Refused(400, "invalid_request_error", "the request names no model")
            self.stream = usage_mod.wants_stream(self.api, body)
            targets = self.proxy.targets(self.api, self.provider_name, self.requested_model)
            warning = self._budget(targets)
            await self._forward(raw, targets, warning)
        except _Refused as refused:
            self._refuse(refused)

    def _budget(self, targets: list[_Target]) -> str:
        guard = self.proxy.guard
        if guard is None:
            return ""
        decision = guard.check(self.sandbox)
        if decision.action == "block":
            raise _Refused(402, "budget_exceeded", decision.message)
        if decision.action == "fallback":
            cheap = self.proxy._target(self.proxy.settings.budget_fallback_model, targets[0].provider)
            if cheap is None or cheap.settings.api != targets[0].settings.api:
                raise _Refused(402, "budget_exceeded", decision.message)
            targets[:] = [cheap]
            return decision.message + f" Serving {cheap.model} instead."
        return decision.warning

    async def _forward(self, raw: bytes, targets: list[_Target], warning: str) -> None:
        settings = self.proxy.settings
        incoming = self.request.headers
        last_error: tuple[int, str, str, bytes, list[tuple[bytes, bytes]]] | None = None
        for target in targets:
            payload = self._payload(raw, target)
            headers = self.proxy.upstream_headers(target.provider, target.settings, incoming)
            url = target.settings.base_url + _ROUTE_PATH[self.api]
            for retry in range(settings.retries + 1):
                outcome = await self._attempt(target, url, headers, payload, warning)
                if outcome is None:
                    return  # the response went to the agent and is recorded
                if self.writer.lost:
                    self._gone(target)
                    return
                last_error = outcome
                status, _kind, _message, _body, _headers = outcome
                if status not in RETRYABLE and status != 0:
                    self._relay_error(target, outcome)
                    return
                if retry < settings.retries:
                    await self._backoff(retry, _headers)
                    if self.writer.lost:
                        self._gone(target)
                        return
        assert last_error is not None
        self._relay_error(targets[-1], last_error)

    def _payload(self, raw: bytes, target: _Target) -> bytes:
        body = self.body
        changed = False
        if target.model != self.requested_model:
            body = {**body, "model": target.model}
            changed = True
        if self.api == "openai-chat" and self.stream:
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                # Without it OpenAI reports no usage on a stream, and the request could not be priced.
                body = {
                    **body,
                    "stream_options": {
                        **(options if isinstance(options, dict) else {}),
                        "include_usage": True,
                    },
                }
                changed = True
        return json.dumps(body, separators=(",", ":")).encode() if changed else raw

    async def _backoff(self, retry: int, headers: list[tuple[bytes, bytes]]) -> None:
        delay = self.proxy.settings.retry_backoff * (2**retry)
        for name, value in headers:
            if name == b"retry-after":
                with contextlib.suppress(ValueError):
                    delay = max(delay, min(float(value), MAX_RETRY_AFTER))
        if delay > 0:
            t = time.perf_counter()
            await asyncio.sleep(delay)
            self.waited += time.perf_counter() - t

    async def _attempt(
        self,
        target: _Target,
        url: str,
        headers: list[tuple[str, str]],
        payload: bytes,
        warning: str,
    ) -> tuple[int, str, str, bytes, list[tuple[bytes, bytes]]] | None:
        """One upstream call. None when the response went to the agent; else the error to weigh."""
        client = self.proxy._http()
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

    def _failed(
        self, attempt: AttemptRecord, a0: float, kind: str, message: str
    ) -> tuple[int, str, str, bytes, list[tuple[bytes, bytes]]]:
        elapsed = time.perf_counter() - a0
        self.waited += elapsed
        attempt.error_kind = kind
        attempt.duration_ms = elapsed * 1000
        return 0, kind, message, b"", []

    async def _relay(
        self,
        target: _Target,
        attempt: AttemptRecord,
        response: UpstreamResponse,
        a0: float,
        warning: str,
    ) -> None:
        """Stream an upstream response to the agent, parsing a copy, until the end or a disconnect."""
        parser = usage_mod.parser_for(self.api, self.stream)
        out_headers = [(k, v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE]
        overhead_ms = (time.perf_counter() - self.t0 - self.waited) * 1000
        out_headers += [
            (OVERHEAD_HEADER, f"{overhead_ms:.3f}".encode()),
            (REQUEST_ID_HEADER, self.id.encode()),
        ]
        if warning:
            out_headers.append((BUDGET_HEADER, warning.encode("ascii", "replace")))
        writer = self.writer
        if writer.lost:
            response.close()
            cancelled, failure = True, ""
        else:
            writer.start(response.status, out_headers)
            self.ttfb_ms = (time.perf_counter() - self.t0) * 1000
            relay = _Relay(writer, parser)
            writer.on_lost = relay.lost
            writer.on_pause = response.pause
            writer.on_resume = response.resume
            response.relay(relay)
            result = await relay.finished
            writer.on_pause = writer.on_resume = None
            cancelled = result is _LOST
            failure = _stream_failure(result) if isinstance(result, UpstreamError) else ""
            if cancelled or failure:
                response.close()  # drops the upstream connection: the provider stops generating
            else:
                response.release()
            if failure and not cancelled:
                # The provider's connection broke: break the agent's too, so it sees a cut
                # stream rather than one that looks complete.
                writer.abort()
            elif not cancelled:
                writer.end()
        outcome: Outcome = "error" if failure else "ok"
        end = time.perf_counter()
        parsed = parser.result(complete=not cancelled and not failure)
        attempt.duration_ms = (end - a0) * 1000
        attempt.usage = parsed.usage
        if cancelled:
            outcome = "cancelled"
        elif parsed.error_kind:
            outcome = "error"
        elif not failure and self.stream and not parsed.finished:
            outcome, failure = "error", "the provider's stream ended without its final event"
        kind = parsed.error_kind or ("stream_broken" if failure else None)
        if cancelled:
            kind = "client_disconnected"
        attempt.error_kind = kind
        cost = self.proxy.prices.cost(target.provider, target.model, parsed.usage)
        attempt.cost_nanos = cost.total_nanos
        self._finish(
            target=target,
            status=response.status,
            outcome=outcome,
            kind=kind,
            message=parsed.error_message or failure or None,
            usage=parsed.usage,
            cost=cost,
            duration_ms=(end - self.t0) * 1000,
            overhead_ms=overhead_ms,
        )

    def _relay_error(
        self, target: _Target, error: tuple[int, str, str, bytes, list[tuple[bytes, bytes]]]
    ) -> None:
        """Hand the last upstream error to the agent as the provider sent it (or ours if none came)."""
        status, kind, message, body, headers = error
        overhead_ms = (time.perf_counter() - self.t0 - self.waited) * 1000
        ours = [(OVERHEAD_HEADER, f"{overhead_ms:.3f}".encode()), (REQUEST_ID_HEADER, self.id.encode())]
        if status == 0:
            status = 502
            text = f"moltconsole gateway: {message} after {len(self.attempts)} attempt(s)"
            body = error_body(self.api, "api_error", text)
            self.writer.respond(status, body, [(b"content-type", b"application/json"), *ours])
        else:
            out = [
                (k, v)
                for k, v in headers
                if k.lower() not in _DROP_RESPONSE and k.lower() != b"content-length"
            ]
            self.writer.respond(status, body, [*out, *ours])
        self.ttfb_ms = (time.perf_counter() - self.t0) * 1000
        self._finish(
            target=target,
            status=status,
            outcome="error",
            kind=kind,
            message=message,
            usage=Usage(),
            cost=Cost(total_nanos=0, pricing_version=self.proxy.prices.version),
            duration_ms=(time.perf_counter() - self.t0) * 1000,
            overhead_ms=overhead_ms,
        )

    def _gone(self, target: _Target) -> None:
        """The agent went away before its response started: nothing to send, the row says so."""
        self._finish(
            target=target,
            status=499,
            outcome="cancelled",
            kind="client_disconnected",
            message="the agent disconnected before the response started",
            usage=Usage(),
            cost=Cost(total_nanos=0, pricing_version=self.proxy.prices.version),
            duration_ms=(time.perf_counter() - self.t0) * 1000,
            overhead_ms=None,
        )

    def _refuse(self, refused: _Refused) -> None:
        _error(self.writer, self.api, refused.status, refused.kind, refused.message)
        if refused.kind in ("budget_exceeded", "gateway_config"):
            outcome: Outcome = "blocked" if refused.kind == "budget_exceeded" else "error"
            self._finish(
                target=None,
                status=refused.status,
                outcome=outcome,
                kind=refused.kind,
                message=refused.message,
                usage=Usage(),
                cost=Cost(total_nanos=0, pricing_version=self.proxy.prices.version),
                duration_ms=(time.perf_counter() - self.t0) * 1000,
                overhead_ms=None,
            )

    def _finish(
        self,
        *,
        target: _Target | None,
        status: int,
        outcome: Outcome,
        kind: str | None,
        message: str | None,
        usage: Usage,
        cost: Cost,
        duration_ms: float,
        overhead_ms: float | None,
    ) -> None:
        try:
            trigger = classify_trigger(self.api, self.body) if self.body else "unknown"
        except Exception:  # a heuristic must never lose the ledger row
            trigger = "unknown"
        record = RequestRecord(
            id=self.id,
            started_at=self.started,
            sandbox=self.sandbox,
            api=self.api,
            provider=target.provider if target else self.provider_name,
            model=target.model if target else self.requested_model,
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
            trigger=trigger,
            origin="proxy",
            attempts=self.attempts,
        )
        if self.proxy.guard is not None:
            self.proxy.guard.add(self.sandbox, cost.total_nanos)
        try:
            self.proxy.record(record)
        except Exception:
            log.exception("could not queue ledger row %s", self.id)


_ROUTE_PATH: dict[Api, str] = {api: path for path, (api, _family) in _ROUTES.items()}


_LOST = object()  # what a relay ends with when the agent went away


class _Relay:
    """The provider's body on its way to the agent, driven by the provider connection's callbacks.

    Each piece is written to the agent first, then fed to the usage parser. ``finished`` ends
    with None (complete), the provider's error, or ``_LOST``.
    """

    __slots__ = ("finished", "parse_failed", "parser", "writer")

    def __init__(self, writer: ResponseWriter, parser: usage_mod.UsageParser) -> None:
        self.writer = writer
        self.parser = parser
        self.finished: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.parse_failed = False

    def data(self, chunk: bytes) -> None:
        self.writer.write(chunk)
        if self.parse_failed:
            return
        try:
            self.parser.feed(chunk)
        except Exception:  # the bytes still reach the agent; the ledger row says what is known
            self.parse_failed = True
            log.exception("could not parse the provider's response for usage; relaying it unparsed")

    def done(self, error: UpstreamError | None) -> None:
        if not self.finished.done():
            self.finished.set_result(error)

    def lost(self) -> None:
        if not self.finished.done():
            self.finished.set_result(_LOST)


def _stream_failure(exc: BaseException) -> str:
    if isinstance(exc, UpstreamTimeout):
        return "the provider sent nothing for longer than gateway.read_timeout"
    if isinstance(exc, UpstreamError):
        return f"the provider's connection broke mid-response ({type(exc).__name__})"
    return f"relaying the response failed ({type(exc).__name__})"


def error_body(api: Api, kind: str, message: str) -> bytes:
    """An error in the shape the agent's SDK for that API understands."""
    if api == "anthropic-messages":
        payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": kind, "code": kind, "param": None}}
    return json.dumps(payload).encode()


def _error(writer: ResponseWriter, api: Api, status: int, kind: str, message: str) -> None:
    writer.respond(status, error_body(api, kind, message))
