"""What the gateway knows about a request: its tokens, its attempts upstream, and its cost.

These plain records are shared by the proxy (which fills them), the usage parsers, the pricing
table, the ledger (which stores them) and the Cloudflare importer.

Money is kept as integer nano-dollars (1e-9 USD): every published per-million-token rate with up
to three decimals is then an exact integer per token, and sums never drift.

The gateway builds these as plain dataclasses (no validation on its hot path: the data is its
own); the console reads them back through ``records_json``, which checks them against the same
annotations (strict: ``1.5`` or ``true`` is no token count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

NANOS_PER_USD = 1_000_000_000

# Where a request's token counts came from.
#   provider  - the provider's own usage report, complete
#   partial   - the stream ended early (client gone, error mid-stream); counts so far
#   none      - no usage could be read (e.g. refused before any upstream call)
#   imported  - taken from another gateway's logs (Cloudflare AI Gateway)
#   estimated - the provider's report never came (the agent left and the provider's answer
#               could not be read to its end, or a stream ended without one): counted from the
#               request's size and the output relayed, so a budget still sees it
UsageSource = Literal["provider", "partial", "none", "imported", "estimated"]

# Which API the agent called.
Api = Literal["anthropic-messages", "openai-chat", "openai-responses"]

# How a request ended.
#   ok         - a complete response reached the agent
#   error      - the provider (or the gateway) answered with an error, before or after the 200
#   cancelled  - the agent went away before the end; the upstream request was cancelled
#   blocked    - refused by a budget before any upstream call
Outcome = Literal["ok", "error", "cancelled", "blocked"]

# Why a request was made, as far as the gateway can tell from its body.
#   user       - the conversation's last turn is a person's message
#   tool       - the agent continues after a tool result
#   heartbeat  - OpenClaw's heartbeat prompt
#   background - other unattended work (memory dreaming, compaction, titles)
#   unknown    - the body did not say (imported rows, unparseable bodies)
Trigger = Literal["user", "tool", "heartbeat", "background", "unknown"]


@dataclass(slots=True)
class Usage:
    """Token counts of one response, split the way providers price them.

    ``input_tokens`` counts uncached prompt tokens only (Anthropic's ``input_tokens``; OpenAI's
    ``prompt_tokens`` minus ``cached_tokens``). ``output_tokens`` includes reasoning tokens;
    ``reasoning_tokens`` says how many of them were reasoning, for display only.
    """

    input_tokens: StrictInt = 0
    output_tokens: StrictInt = 0
    cache_read_tokens: StrictInt = 0
    cache_write_5m_tokens: StrictInt = 0
    cache_write_1h_tokens: StrictInt = 0
    reasoning_tokens: StrictInt = 0
    source: UsageSource = "none"

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token, cached or not (what long-context tiers are measured on)."""
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
        )


@dataclass(slots=True)
class Cost:
    """The price of one Usage. ``total_nanos`` is None when the model has no price (never 0)."""

    total_nanos: StrictInt | None
    # What the cache-read tokens would have cost as plain input, minus what they did cost,
    # minus the cache-write premium paid (can be negative when writes outweigh reads).
    cache_savings_nanos: StrictInt = 0
    pricing_version: StrictStr = ""
    long_context: StrictBool = False

    @property
    def priced(self) -> bool:
        return self.total_nanos is not None


@dataclass(slots=True)
class AttemptRecord:
    """One call upstream on behalf of a request (the first try, a retry, or a fallback)."""

    attempt: StrictInt  # 1-based
    started_at: StrictFloat  # epoch seconds
    provider: StrictStr
    model: StrictStr
    status: StrictInt  # HTTP status from upstream; 0 when no response came (connect error, timeout)
    error_kind: StrictStr | None = None  # e.g. "overloaded_error", "rate_limit", "connect", "timeout"
    ttfb_ms: StrictFloat | None = None
    duration_ms: StrictFloat = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_nanos: StrictInt | None = None


@dataclass(slots=True)
class RequestRecord:
    """One request from the agent, as the ledger keeps it."""

    id: StrictStr  # unique; uuid4 hex for proxied requests, "cf:<id>" for imported ones
    started_at: StrictFloat  # epoch seconds
    sandbox: StrictStr
    api: Api
    provider: StrictStr  # provider that served the final attempt
    model: StrictStr  # model that served the final attempt
    requested_model: StrictStr  # model the agent asked for
    stream: StrictBool
    status: StrictInt  # HTTP status the agent received
    outcome: Outcome
    error_kind: StrictStr | None = None
    error_message: StrictStr | None = None  # short, provider's own message; never a secret
    ttfb_ms: StrictFloat | None = None  # first byte to the agent
    duration_ms: StrictFloat = 0.0
    overhead_ms: StrictFloat | None = None  # time spent in the gateway itself
    usage: Usage = field(default_factory=Usage)
    cost: Cost = field(default_factory=lambda: Cost(total_nanos=None))
    trigger: Trigger = "unknown"
    origin: Literal["proxy", "cloudflare"] = "proxy"
    attempts: list[AttemptRecord] = field(default_factory=list)
