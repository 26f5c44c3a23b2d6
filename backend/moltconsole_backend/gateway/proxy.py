"""The AI gateway's proxy: the agent's LLM calls in, the real provider out, every request priced.

The handler behind the gateway's own HTTP server (``http_server.py``). This module decides who
may call and where a call goes; ``exchange.py`` carries one call through:

1. ``admit`` looks at a request's headers before its body is read: the sandbox's gateway token
   (constant-time), never the provider key. A source that keeps presenting bad tokens is told
   to slow down (429) instead of being checked over and over, and refusals are counted and
   logged (without the token);
2. ``handle`` routes it: ``/v1/messages`` (Anthropic Messages), ``/v1/chat/completions`` and
   ``/v1/responses`` (OpenAI), optionally behind a provider's name (``/<provider>/v1/messages``);
3. ``targets`` lists the provider and model to try and their fallbacks; ``upstream_headers``
   swaps the agent's token for the provider's real key; ``redactor`` keeps every configured key
   out of what is relayed back.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moltconsole_backend.settings import GatewaySettings, ProviderSettings
from moltconsole_shared.wire.records import Api, RequestRecord

from .budgets import BudgetGuard
from .exchange import Exchange, Refused, connection_tokens, error_body
from .http_server import Request, ResponseWriter
from .pricing import PriceTable
from .redact import Redactor
from .request_body import BodyReader
from .upstream import UpstreamPool

log = logging.getLogger(__name__)

# On a 502 OpenClaw retries for 90 s (8 more requests) unless retry-after is longer than that
# window: with it, one request and the error at once (measured with OpenClaw 2026.9.6).
CONFIG_RETRY_AFTER = [(b"retry-after", b"120")]
AUTH_REFUSED = "invalid or missing moltconsole gateway token (x-api-key or Authorization)"
HEALTH_PATHS = ("/healthz", "/readyz")

ROUTES: dict[str, tuple[Api, str]] = {
    "/v1/messages": ("anthropic-messages", "anthropic"),
    "/v1/chat/completions": ("openai-chat", "openai"),
    "/v1/responses": ("openai-responses", "openai"),
}
ROUTE_PATH: dict[Api, str] = {api: path for path, (api, _family) in ROUTES.items()}

# Request headers never passed upstream: the agent's credentials, and hop-by-hop headers
# (plus whatever the request's own Connection header names).
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


class TokenRegistry:
    """Which sandbox a gateway token belongs to. Every token is compared in constant time."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._tokens: list[tuple[bytes, str]] = []
        for token, sandbox in (tokens or {}).items():
            self.add(token, sandbox)

    def add(self, token: str, sandbox: str) -> None:
        """Accept ``token`` as the given sandbox's credential (replacing its previous one)."""
        if token:
            self._tokens = [(t, s) for t, s in self._tokens if s != sandbox] + [(token.encode(), sandbox)]

    def remove(self, sandbox: str) -> None:
        """Refuse the sandbox's token from now on."""
        self._tokens = [(t, s) for t, s in self._tokens if s != sandbox]

    def sandbox_for(self, presented: bytes) -> str | None:
        """The sandbox whose token was presented, or None. Looks at every token either way."""
        found = None
        for token, sandbox in self._tokens:
            if hmac.compare_digest(token, presented):
                found = sandbox
        return found


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    logged_at: float = float("-inf")
    refused: int = 0


@dataclass(slots=True)
class AuthStats:
    """Requests refused for their token, as ``moltconsole status`` shows them."""

    refused: int = 0  # 401: a missing or wrong token
    throttled: int = 0  # 429: from a source past gateway.auth_failures_per_minute
    sources: set[str] = field(default_factory=set)  # addresses refused since start (bounded)


class AuthThrottle:
    """Bad tokens per source address: a token bucket of ``per_minute`` failures.

    A valid token is never slowed down. Once a source has used up its bucket, its bad requests
    get 429 with a retry-after until the bucket refills, and are no longer logged one by one.
    """

    MAX_SOURCES = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.stats = AuthStats()
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def failed(self, peer: str) -> float:
        """Count a bad token from ``peer``: 0 to answer 401, else the seconds to ask it to wait."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(peer)
            if bucket is None:
                if len(self._buckets) >= self.MAX_SOURCES:
                    self._prune(now)
                bucket = self._buckets[peer] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            bucket.refused += 1
            if len(self.stats.sources) < 1000:
                self.stats.sources.add(peer)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                self.stats.refused += 1
                if now - bucket.logged_at >= 60.0:
                    bucket.logged_at = now
                    log.warning(
                        "AI gateway: refused a request from %s with a missing or invalid token "
                        "(%d refused from that address so far)",
                        peer or "an unknown address",
                        bucket.refused,
                    )
                return 0.0
            self.stats.throttled += 1
            return max(1.0, math.ceil((1.0 - bucket.tokens) / self.rate))

    def _prune(self, now: float) -> None:
        full = [p for p, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.capacity]
        for peer in full or list(self._buckets)[: self.MAX_SOURCES // 2]:
            del self._buckets[peer]


@dataclass(slots=True)
class Target:
    """One place to send a request: a configured provider and the model to ask it for."""

    provider: str
    settings: ProviderSettings
    model: str


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
        body_reader: BodyReader | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.prices = prices
        self.record = record
        self.guard = guard
        self._env = os.environ if env is None else env
        self._pool: UpstreamPool | None = None
        self.bodies = body_reader or BodyReader()
        self.throttle = AuthThrottle(settings.auth_failures_per_minute)
        self._redactor: tuple[list[str], Redactor] | None = None  # the secrets it was built from

    # -- lifecycle -----------------------------------------------------------------------------

    def http(self) -> UpstreamPool:
        """The pool of connections to the providers (made on first use, in the gateway's loop)."""
        if self._pool is None:
            s = self.settings
            self._pool = UpstreamPool(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
        return self._pool

    async def aclose(self) -> None:
        """Close the upstream connections and the body readers."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self.bodies.close()

    # -- requests ------------------------------------------------------------------------------

    def admit(
        self, path: str, headers: list[tuple[bytes, bytes]], peer: str = ""
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """Refuse a request without a valid token on its headers alone, before its body is read."""
        if path in HEALTH_PATHS or self._authenticate(headers) is not None:
            return None
        api = self.route(path)[0] or "anthropic-messages"
        wait = self.throttle.failed(peer)
        if wait:
            message = (
                f"too many requests with an invalid moltconsole gateway token from {peer or 'this address'}; "
                f"retry in {wait:.0f} s"
            )
            return 429, error_body(api, "rate_limit_error", message), [(b"retry-after", b"%d" % wait)]
        return 401, error_body(api, "authentication_error", AUTH_REFUSED), []

    async def handle(self, request: Request, writer: ResponseWriter) -> None:
        """Answer one request from the agent."""
        path = request.path
        if path in HEALTH_PATHS:
            writer.respond(200, b'{"ok":true}')
            return
        started = time.time()
        t0 = time.perf_counter()
        api, provider_name = self.route(path)
        if api is None:
            message = (
                f"the moltconsole gateway has no route {path!r}; it serves "
                "/v1/messages, /v1/chat/completions and /v1/responses"
            )
            writer.respond(404, error_body("anthropic-messages", "not_found_error", message))
            return
        if request.method != "POST":
            writer.respond(405, error_body(api, "invalid_request_error", f"{path} takes POST"))
            return
        sandbox = self._authenticate(request.headers)
        if sandbox is None:
            if self.throttle.failed(request.peer):
                writer.respond(429, error_body(api, "rate_limit_error", "too many invalid tokens"))
            else:
                writer.respond(401, error_body(api, "authentication_error", AUTH_REFUSED))
            return
        await Exchange(self, request, writer, api, provider_name, sandbox, started, t0).run()

    def route(self, path: str) -> tuple[Api | None, str]:
        """The API a path speaks and the provider that serves it (None when nothing does)."""
        route = ROUTES.get(path)
        if route is not None:
            api, family = route
            default = (
                self.settings.default_anthropic if family == "anthropic" else self.settings.default_openai
            )
            return api, default
        # /<provider>/v1/...
        head, sep, rest = path[1:].partition("/")
        if sep and head in self.settings.providers:
            route = ROUTES.get("/" + rest)
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

    # -- providers -----------------------------------------------------------------------------

    def key_for(self, name: str, provider: ProviderSettings) -> str:
        """The provider's real key, from the config or the backend's environment."""
        key = provider.api_key or (self._env.get(provider.api_key_env, "") if provider.api_key_env else "")
        if not key and not provider.headers:
            hint = (
                f"set {provider.api_key_env} with 'moltconsole keys set {provider.api_key_env}' or "
                if provider.api_key_env
                else ""
            )
            raise Refused(
                502,
                "gateway_config",
                headers=CONFIG_RETRY_AFTER,
                ledger_kind="gateway_config",
                message=f"moltconsole has no API key for provider {name!r}: {hint}"
                f"set gateway.providers.{name}.api_key_env in the moltconsole config",
            )
        return key

    def _header_value(self, value: str) -> str:
        return self._env.get(value[4:], "") if value.startswith("env:") else value

    def redactor(self) -> Redactor:
        """Every secret the gateway holds (keys, secret headers, the Cloudflare token), to redact.

        The values are looked up for every request, so a key changed in the keys file is
        redacted from the first request that could send it; the redactor is built again only
        when they changed (a new one per request cost more than the lookups).
        """
        env = self._env
        secrets: list[str] = []
        for provider in self.settings.providers.values():
            if provider.api_key:
                secrets.append(provider.api_key)
            if provider.api_key_env:
                secrets.append(env.get(provider.api_key_env, ""))
            for value in provider.headers.values():
                secrets.append(self._header_value(value))
        cloudflare = self.settings.cloudflare.api_token_env
        if cloudflare:
            secrets.append(env.get(cloudflare, ""))
        cached = self._redactor
        if cached is None or cached[0] != secrets:
            cached = self._redactor = (secrets, Redactor(s for s in secrets if s))
        return cached[1].fresh()

    def upstream_headers(
        self, name: str, provider: ProviderSettings, incoming: list[tuple[bytes, bytes]]
    ) -> list[tuple[str, str]]:
        """The agent's headers minus its credentials and hop-by-hop ones, plus the provider's."""
        named = connection_tokens(incoming)
        drop = _DROP_REQUEST if named <= _DROP_REQUEST else _DROP_REQUEST | named
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in incoming if k not in drop]
        headers.append(("accept-encoding", "identity"))
        key = self.key_for(name, provider)
        if key:
            if provider.api == "anthropic":
                headers.append(("x-api-key", key))
            else:
                headers.append(("authorization", "Bearer " + key))
        for header, value in provider.headers.items():
            headers.append((header.lower(), self._header_value(value)))
        return headers

    def targets(self, api: Api, provider_name: str, model: str) -> list[Target]:
        """The first choice and its configured fallbacks, all of the same API family."""
        family = "anthropic" if api == "anthropic-messages" else "openai"
        out: list[Target] = []
        for spec in [f"{provider_name}/{model}", *self.settings.fallbacks.get(model, [])]:
            target = self.target(spec, provider_name)
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
            raise Refused(
                502,
                "gateway_config",
                headers=CONFIG_RETRY_AFTER,
                ledger_kind="gateway_config",
                message=f"moltconsole gateway: provider {provider_name!r} is not configured "
                f"(gateway.providers.{provider_name})",
            )
        return out

    def target(self, spec: str, default_provider: str) -> Target | None:
        """``model`` or ``provider/model`` as a Target (None when the provider is unknown)."""
        provider, sep, model = spec.partition("/")
        if not sep or provider not in self.settings.providers:
            provider, model = default_provider, spec
        settings = self.settings.providers.get(provider)
        return Target(provider, settings, model) if settings is not None else None

    def upstream_url(self, target: Target, api: Api) -> str:
        """Where a request of ``api`` goes at ``target``'s provider."""
        return target.settings.base_url + ROUTE_PATH[api]

    def stats(self) -> dict[str, Any]:
        """Refusals so far, for the status API."""
        s = self.throttle.stats
        return {
            "auth_refused": s.refused,
            "auth_throttled": s.throttled,
            "auth_sources": sorted(s.sources)[:20],
        }
