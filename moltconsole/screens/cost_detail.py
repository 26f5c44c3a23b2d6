"""One request of the Costs screen in full: every field, each upstream attempt, copy as JSON.

The screen opens with the row as the table listed it, and a worker fetches the record as the
ledger has it now (with every attempt), which replaces it. Money here is exact, to the
nano-dollar the ledger keeps (``$0.006045``); the tables round.
"""

from __future__ import annotations

import asyncio
import json
import time

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from moltconsole.client import BackendError
from moltconsole.screens.cost_feeds import CostSource
from moltconsole.widgets.cost_format import NO_PRICE, millis, money_exact, tokens
from moltconsole.widgets.cost_rows import outcome_text
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.records_json import to_json

USAGE_SOURCES = {
    "provider": "reported by the provider", "partial": "partial: the stream ended early",
    "none": "none: no usage was reported", "imported": "imported",
    "estimated": "estimated: the provider's report never came; counted from the request and "
                 "the output relayed",
}


class DetailLoaded(Message):
    """The full record (with its attempts) arrived from the backend, or ``problem`` says why not."""

    def __init__(self, record: RequestRecord | None, problem: str | None) -> None:
        super().__init__()
        self.record = record
        self.problem = problem


def stamp(epoch: float) -> str:
    """``2027-01-15 07:30:00.250 UTC``: local time, to the millisecond, with its zone."""
    moment = time.localtime(epoch)
    millis_part = round(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%d %H:%M:%S", moment) + f".{millis_part:03d} " + time.strftime(
        "%Z", moment)


def record_fields(r: RequestRecord) -> Table:
    """Every field of a request, as a two-column table (agent-made text is sanitised).

    Tokens: "prompt" is all that was sent, and the lines under it its parts (uncached, cache
    read, cache writes); "output" all that was generated, reasoning included.
    """
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    u, c = r.usage, r.cost

    def row(label: str, value: str | Text) -> None:
        table.add_row(label, value if isinstance(value, Text) else Text(sanitize(value)))

    row("id", r.id)
    row("time", stamp(r.started_at))
    row("sandbox", r.sandbox)
    row("api", r.api)
    row("provider", r.provider)
    row("model", r.model)
    if r.requested_model != r.model:
        row("asked for", Text(sanitize(r.requested_model) + " (served by a fallback)",
                              style="yellow"))
    else:
        row("asked for", r.requested_model)
    row("stream", "yes" if r.stream else "no")
    row("outcome", outcome_text(r))
    row("status", str(r.status))
    row("error", Text(sanitize(r.error_kind), style="red") if r.error_kind else "-")
    if r.error_message:
        row("message", r.error_message)
    row("trigger", r.trigger)
    row("origin", "imported from Cloudflare AI Gateway" if r.origin == "cloudflare" else "proxy")
    row("first byte", millis(r.ttfb_ms))
    row("duration", millis(r.duration_ms))
    row("gateway overhead", millis(r.overhead_ms))
    row("prompt", tokens(u.prompt_tokens))
    row("  uncached", tokens(u.input_tokens))
    row("  cache read", tokens(u.cache_read_tokens))
    row("  cache write 5m", tokens(u.cache_write_5m_tokens))
    row("  cache write 1h", tokens(u.cache_write_1h_tokens))
    row("output", tokens(u.output_tokens))
    row("  reasoning", tokens(u.reasoning_tokens))
    row("usage", USAGE_SOURCES.get(u.source, u.source))
    if c.total_nanos is None:
        row("cost", Text("no price: this model is not in the price table; add it under "
                         "[gateway.prices]", style="yellow"))
    else:
        row("cost", Text(money_exact(c.total_nanos), style="bold"))
    row("cache saved", money_exact(c.cache_savings_nanos))
    row("long context", "yes (long-context rates)" if c.long_context else "no")
    row("price table", c.pricing_version or "-")
    return table


def attempts_text(r: RequestRecord) -> Text:
    """Each upstream attempt (the first try, retries, fallbacks) in three short lines: what was
    called, how it ended and how long it took, then tokens and cost."""
    if not r.attempts:
        return Text("no upstream attempt (refused before any call)" if r.outcome == "blocked"
                    else "no upstream attempts recorded", style="dim")
    text = Text()
    for n, a in enumerate(r.attempts):
        if n:
            text.append("\n")
        text.append(f"#{a.attempt}", "bold")
        text.append(f"  +{(a.started_at - r.started_at) * 1000:,.0f} ms  ", "dim")
        text.append(sanitize(f"{a.provider}/{a.model}"))
        ok = 200 <= a.status < 300 and not a.error_kind
        text.append("\n    ")
        text.append(f"HTTP {a.status}" if a.status else "no response", "green" if ok else "red")
        if a.error_kind:
            text.append(f" ({sanitize(a.error_kind)})", "red")
        text.append(f"   first byte {millis(a.ttfb_ms)}   duration {millis(a.duration_ms)}", "dim")
        used = a.usage.prompt_tokens or a.usage.output_tokens
        if a.cost_nanos is not None:
            cost = Text(money_exact(a.cost_nanos))
        elif used:
            cost = Text(NO_PRICE, style="yellow")
        else:
            cost = Text("-")
        text.append(f"\n    prompt {tokens(a.usage.prompt_tokens)}   "
                    f"output {tokens(a.usage.output_tokens)}   cost ", "dim")
        text.append_text(cost)
    return text


class CostDetailScreen(ModalScreen[None]):
    """One request in full: every field and each upstream attempt."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss", "Close", id="costs.detail.close"),
        Binding("y", "copy", "Copy JSON", id="costs.detail.copy"),
    ]

    def __init__(self, client: CostSource, record: RequestRecord) -> None:
        super().__init__()
        self.client = client
        self.record = record
        self.loaded = asyncio.Event()  # set once the full record is shown (tests await it)

    def compose(self) -> ComposeResult:
        with Vertical(id="costs-detail"):
            with VerticalScroll(id="costs-detail-body"):
                yield Static(record_fields(self.record), id="costs-detail-fields")
                yield Static(Text("upstream attempts", style="bold"),
                             id="costs-detail-attempts-title")
                yield Static(attempts_text(self.record), id="costs-detail-attempts")
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#costs-detail").border_title = f"request {sanitize(self.record.id)}"
        self.query_one("#costs-detail-body").focus()
        self._fetch(self.record.id)

    @work(exclusive=True, group="costs-detail", exit_on_error=False)
    async def _fetch(self, request_id: str) -> None:
        """The record as the ledger has it now, with every attempt."""
        try:
            record = await self.client.costs_request(request_id)
        except BackendError as exc:
            self.post_message(DetailLoaded(None, str(exc)))
            return
        self.post_message(DetailLoaded(record, None))

    @on(DetailLoaded)
    def _detail_loaded(self, event: DetailLoaded) -> None:
        if event.record is not None:
            self.record = event.record
            self.query_one("#costs-detail-fields", Static).update(record_fields(event.record))
            self.query_one("#costs-detail-attempts", Static).update(attempts_text(event.record))
        elif event.problem:
            self.notify(f"showing the row as listed: {event.problem}", severity="warning",
                        markup=False)
        self.loaded.set()

    def action_copy(self) -> None:
        """Copy the request as JSON (every field, attempts included) to the clipboard."""
        text = json.dumps(to_json(self.record), indent=2)
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied request {self.record.id} ({len(text):,} characters).", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        """Close the detail view."""
        self.dismiss(result)
