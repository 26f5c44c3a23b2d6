"""What a request costs never depends on how the agent behaves (issue 9, "Money").

An agent that reads the whole answer and hangs up just before the usage event, a body that names
its model twice, a budget reached while rows are being written: the ledger and the budget must
still count what the provider bills. Real gateway, real ledger, the fake provider over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest

from moltconsole_backend.gateway.budgets import BudgetGuard
from moltconsole_backend.gateway.exchange import OVERHEAD_HEADER, REQUEST_ID_HEADER
from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_backend.settings import BudgetSettings, GatewaySettings, ProviderSettings
from tests.support.fake_llm import FakeServer, Reply
from tests.support.gateway import (
    TOKEN,
    RawProvider,
    agent_headers,
    anthropic_body,
    post,
    priced_row,
    sse_response,
)

# (path, body, what marks one content delta in the stream, price per input / output token in nanos)
APIS: dict[str, tuple[str, dict[str, Any], bytes]] = {
    "anthropic": ("/v1/messages", anthropic_body(), b"event: content_block_delta"),
    "openai-chat": (
        "/v1/chat/completions",
        {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "Say hello."}]},
        b'"delta":{"content":"',
    ),
    "openai-responses": (
        "/v1/responses",
        {"model": "gpt-4.1", "stream": True, "input": "Say hello."},
        b"event: response.output_text.delta",
    ),
}


async def read_content_then_hang_up(
    url: str, path: str, body: dict[str, Any], marker: bytes, deltas: int
) -> str:
    """Read the answer until every content delta arrived, then hang up before the rest."""
    headers = {**agent_headers(), "authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", url + path, json=body, headers=headers) as response:
            assert response.status_code == 200
            seen = b""
            async for chunk in response.aiter_raw():
                seen += chunk
                if seen.count(marker) >= deltas:
                    break
            return response.headers[REQUEST_ID_HEADER.decode()]


@pytest.mark.parametrize("api", list(APIS))
async def test_hanging_up_before_the_usage_event_still_pays_the_full_answer(
    make_gateway: Any, fake: FakeServer, api: str
) -> None:
    gw = await make_gateway()
    path, body, marker = APIS[api]
    # The usage event comes 0.2 s after the last content delta: the agent is gone by then.
    reply = Reply(chunks=6, chunk_delay=0.2, input_tokens=1000, output_tokens=5000)
    fake.provider.queue(reply, reply)
    _, whole = await post(gw.url, path, body, headers={**agent_headers(), "authorization": f"Bearer {TOKEN}"})
    honest = await gw.only_record()

    request_id = await read_content_then_hang_up(gw.url, path, body, marker, 6)
    row = await gw.record(request_id)

    assert (row.outcome, row.error_kind) == ("cancelled", "client_disconnected")
    # The provider's answer was read to its end off the agent's path: its own usage, exactly.
    assert row.usage.source == "provider"
    assert (row.usage.input_tokens, row.usage.output_tokens) == (1000, 5000)
    assert row.cost.total_nanos == honest.cost.total_nanos
    assert honest.cost.total_nanos is not None and honest.cost.total_nanos > 5000 * 1000
    assert whole  # the honest agent got the whole answer


@pytest.mark.parametrize("api", list(APIS))
async def test_when_the_provider_is_gone_too_the_usage_is_estimated_and_counted(
    make_gateway: Any, fake: FakeServer, api: str
) -> None:
    gw = await make_gateway(drain_timeout=0.2, budget=BudgetSettings(daily_usd=100.0))
    path, body, _marker = APIS[api]
    long_prompt = {**body}
    text = "word " * 4000  # about 5,000 tokens of prompt by the estimate (20,000 characters)
    if api == "anthropic" or api == "openai-chat":
        long_prompt["messages"] = [{"role": "user", "content": text}]
    else:
        long_prompt["input"] = text
    # Two content deltas, then the provider stalls: the drain gives up, the answer never ends.
    fake.provider.queue(Reply(behaviour="stall", chunks=6, input_tokens=5000, text="x" * 4000))
    request_id = await read_content_then_hang_up(gw.url, path, long_prompt, b"data:", 1)
    row = await gw.record(request_id)

    assert (row.outcome, row.error_kind) == ("cancelled", "client_disconnected")
    assert row.usage.source == "estimated"
    assert row.usage.input_tokens >= 4000  # reported by message_start, or estimated from the request
    assert row.cost.total_nanos is not None and row.cost.total_nanos > 0
    # ... and the budget counts it.
    assert gw.proxy.guard is not None
    assert gw.proxy.guard.spent_nanos()[0] == row.cost.total_nanos


async def test_a_stream_that_ends_without_a_usage_report_is_estimated_not_free(make_gateway: Any) -> None:
    # E.g. a body with two stream_options keys: the gateway reads include_usage in one, the
    # provider honours the other and reports no usage. The stream still cost money.
    chunk = b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4.1","choices":[{"index":0,'
    events = [chunk + b'"delta":{"content":"' + b"word " * 20 + b'"},"finish_reason":null}]}\n\n'] * 10
    events.append(b"data: [DONE]\n\n")
    async with RawProvider(lambda head, body: sse_response(events)) as provider:
        gw = await make_gateway(
            providers={
                "openai": ProviderSettings(api="openai", base_url=provider.url, api_key="sk-test-openai-0001")
            }
        )
        body = {
            "model": "gpt-4.1",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hello " * 2000}],
        }
        headers = {"authorization": f"Bearer {TOKEN}"}
        response, data = await post(gw.url, "/v1/chat/completions", body, headers=headers)
    assert response.status_code == 200 and data.endswith(b"[DONE]\n\n"), data
    row = await gw.record(response.headers[REQUEST_ID_HEADER.decode()])
    assert row.usage.source == "estimated"
    assert row.usage.input_tokens >= 2000  # 12,000 characters of prompt
    assert 200 <= row.usage.output_tokens <= 300  # 10 deltas of 100 characters
    assert row.cost.total_nanos is not None and row.cost.total_nanos > 0


async def test_a_body_naming_two_models_is_priced_by_the_model_the_provider_served(
    make_gateway: Any, fake: FakeServer
) -> None:
    gw = await make_gateway()
    # The provider honours the first "model" key; json.loads (and the ledger, before) the last.
    fake.provider.queue(Reply(model="claude-opus-4-1", input_tokens=1000, output_tokens=1000))
    raw = (
        b'{"model":"claude-opus-4-1","max_tokens":100,"stream":true,'
        b'"messages":[{"role":"user","content":"hi"}],"model":"claude-haiku-4-5"}'
    )
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(gw.url + "/v1/messages", content=raw, headers=agent_headers())
    assert response.status_code == 200
    row = await gw.record(response.headers[REQUEST_ID_HEADER.decode()])
    assert (row.requested_model, row.model) == ("claude-haiku-4-5", "claude-opus-4-1")
    # Opus 4.1: $15 / $75 per million tokens (Haiku 4.5 would be $1 / $5).
    assert row.cost.total_nanos == 1000 * 15_000 + 1000 * 75_000
    assert row.attempts[0].model == "claude-opus-4-1"


async def test_a_budget_refusal_carries_the_request_id_and_overhead_headers(
    make_gateway: Any, fake: FakeServer
) -> None:
    gw = await make_gateway(budget=BudgetSettings(daily_usd=0.001))
    assert gw.proxy.guard is not None
    gw.proxy.guard.add("sb1", 2_000_000, "earlier", time.time())
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code >= 400
    assert json.loads(data)["error"]["message"].startswith("moltconsole budget reached")
    assert float(response.headers[OVERHEAD_HEADER.decode()]) >= 0
    row = await gw.record(response.headers[REQUEST_ID_HEADER.decode()])
    assert (row.outcome, row.error_kind) == ("blocked", "budget_exceeded")
    assert not fake.provider.seen  # nothing went upstream


def test_budget_totals_lose_no_request_recorded_during_a_refresh(tmp_path: Any) -> None:
    """The gateway's thread adds costs and queues rows while another thread refreshes."""
    settings = GatewaySettings(budget=BudgetSettings(daily_usd=1000.0, monthly_usd=10_000.0))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.open()
    try:
        guard = BudgetGuard(settings, ledger.spend_totals)
        guard.refresh()
        n, nanos = 3000, 1_000
        stop = threading.Event()

        def refresher() -> None:
            while not stop.is_set():
                guard.refresh()

        thread = threading.Thread(target=refresher)
        thread.start()
        now = time.time()
        for i in range(n):
            # As the proxy does: count the cost, then queue the ledger row.
            guard.add("sb1", nanos, f"r{i}", now)
            ledger.record(priced_row(nanos, request_id=f"r{i}", started=now))
            if i % 100 == 0:
                ledger.flush()
        stop.set()
        thread.join()
        assert guard.spent_nanos() == (n * nanos, n * nanos)
        ledger.flush()
        guard.refresh()
        assert guard.spent_nanos() == (n * nanos, n * nanos)
        assert ledger.spend_nanos(now - 1) == n * nanos
    finally:
        ledger.close()


async def test_parallel_agents_hanging_up_are_all_counted_exactly(
    make_gateway: Any, fake: FakeServer
) -> None:
    gw = await make_gateway(budget=BudgetSettings(daily_usd=1000.0))
    reply = Reply(chunks=4, chunk_delay=0.1, input_tokens=100, output_tokens=1000)
    fake.provider.queue(*[reply] * 10)
    path, body, marker = APIS["anthropic"]
    ids = await asyncio.gather(*(read_content_then_hang_up(gw.url, path, body, marker, 4) for _ in range(10)))
    rows = [await gw.record(i) for i in ids]
    assert all(r.usage.source == "provider" and r.usage.output_tokens == 1000 for r in rows)
    assert gw.proxy.guard is not None
    assert gw.proxy.guard.spent_nanos()[0] == sum(r.cost.total_nanos or 0 for r in rows)
