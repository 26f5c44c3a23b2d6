"""What each table of the Costs screen shows: its columns, and a row per model or request.

Columns are listed in display order; ``rank`` says which stay when the table is narrow (see
:mod:`moltconsole.widgets.cost_table`). Token words are the same everywhere (the screen, the
detail view, ``moltconsole costs``): "prompt" is every token sent to the model, cache reads and
writes included; "cache read" and "cache write" are the parts of it the provider's prompt cache
served or stored; "output" is every token generated, "reasoning" included. Agent-made text
(model names, error messages) is sanitised here, before it reaches the screen.
"""

from __future__ import annotations

import time

from rich.text import Text

from moltconsole.widgets.cost_format import NO_PRICE, millis, money, tokens
from moltconsole.widgets.cost_table import Column, Row
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.reports import ModelUsage

TRIGGER_STYLES = {"user": "", "tool": "dim", "heartbeat": "yellow", "background": "yellow",
                  "unknown": "dim"}

MODEL_COLUMNS = (
    Column("model", "model", 0), Column("requests", "requests", 2, right=True),
    Column("cost", "cost", 1, right=True), Column("prompt", "prompt", 3, right=True),
    Column("cache_read", "cache read", 4, right=True),
    Column("cache_write", "cache write", 6, right=True),
    Column("output", "output", 5, right=True), Column("reasoning", "reasoning", 8, right=True),
    Column("saved", "cache saved", 7, right=True), Column("errors", "errors", 9, right=True),
    Column("provider", "provider", 10),
)
# Most telling columns first: cost and model, then when and how big.
TOP_COLUMNS = (
    Column("cost", "cost", 0, right=True), Column("model", "model", 1), Column("when", "when", 2),
    Column("prompt", "prompt", 3, right=True), Column("output", "output", 4, right=True),
    Column("trigger", "trigger", 5), Column("duration", "duration", 6, right=True),
    Column("sandbox", "sandbox", 7),
)
# The message wraps in the width the others leave; narrow, the model goes before the message.
ERROR_COLUMNS = (
    Column("when", "when", 0), Column("model", "model", 4), Column("error", "error", 1),
    Column("outcome", "outcome", 2), Column("message", "message", 3, lines=3),
)
TAIL_COLUMNS = (
    Column("when", "when", 0), Column("model", "model", 1), Column("cost", "cost", 2, right=True),
    Column("outcome", "outcome", 3), Column("trigger", "trigger", 4),
    Column("prompt", "prompt", 5, right=True), Column("output", "output", 6, right=True),
    Column("duration", "duration", 7, right=True),
)


def when(started_at: float, now: float) -> str:
    """A request's time: clock time today, date and time before."""
    moment = time.localtime(started_at)
    if time.strftime("%Y%m%d", moment) == time.strftime("%Y%m%d", time.localtime(now)):
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%m-%d %H:%M", moment)


def right(value: str, style: str = "") -> Text:
    """A right-aligned cell."""
    return Text(value, style=style, justify="right")


def cost_text(record: RequestRecord) -> Text:
    """A request's cost, or "no price" (yellow) when its model has none."""
    total = record.cost.total_nanos
    if total is None:
        return Text(NO_PRICE, style="yellow", justify="right")
    return right(money(total))


def outcome_text(record: RequestRecord) -> Text:
    """``ok``, or the outcome and status in red/yellow."""
    if record.outcome == "ok":
        return Text("ok", style="green")
    style = "yellow" if record.outcome in ("cancelled", "blocked") else "red"
    return Text(f"{record.outcome} {record.status or ''}".strip(), style=style)


def trigger_text(record: RequestRecord) -> Text:
    """What made the agent call: user, tool, heartbeat (yellow), background (yellow)."""
    return Text(record.trigger, style=TRIGGER_STYLES.get(record.trigger, ""))


def model_row(m: ModelUsage) -> Row:
    """One model's requests, spend and tokens."""
    if m.unpriced >= m.requests and m.unpriced:
        cost = Text(NO_PRICE, style="yellow", justify="right")
    elif m.unpriced:
        cost = right(f"{money(m.cost_nanos)} +{m.unpriced} no price", "yellow")
    else:
        cost = right(money(m.cost_nanos))
    cache_write = m.cache_write_5m_tokens + m.cache_write_1h_tokens
    prompt = m.input_tokens + m.cache_read_tokens + cache_write
    return Row(f"{m.provider}/{m.model}", {
        "model": Text(sanitize(m.model)), "requests": right(f"{m.requests:,}"), "cost": cost,
        "prompt": right(tokens(prompt)), "cache_read": right(tokens(m.cache_read_tokens)),
        "cache_write": right(tokens(cache_write)), "output": right(tokens(m.output_tokens)),
        "reasoning": right(tokens(m.reasoning_tokens)),
        "saved": right(money(m.cache_savings_nanos)),
        "errors": right(f"{m.errors:,}", "red" if m.errors else ""),
        "provider": Text(sanitize(m.provider)),
    })


def request_row(r: RequestRecord, now: float) -> Row:
    """One request, with a cell for every column of the top, errors and tail tables."""
    return Row(r.id, {
        "cost": cost_text(r), "model": Text(sanitize(r.model)), "when": Text(when(r.started_at, now)),
        "prompt": right(tokens(r.usage.prompt_tokens)), "output": right(tokens(r.usage.output_tokens)),
        "trigger": trigger_text(r), "duration": right(millis(r.duration_ms)),
        "sandbox": Text(sanitize(r.sandbox)), "outcome": outcome_text(r),
        "error": Text(sanitize(r.error_kind or "-"), style="red"),
        "message": Text(sanitize(r.error_message or "")),
    })
