"""The AI gateway over real HTTP: agent -> proxy (own thread and server) -> fake provider -> ledger.

The fake provider speaks Anthropic's and OpenAI's wire formats; everything else is real: the
server, the sockets, httpx, SQLite.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from moltconsole_backend.gateway import http_server
from moltconsole_backend.gateway.exchange import OVERHEAD_HEADER, REQUEST_ID_HEADER
from moltconsole_backend.settings import BudgetSettings, ProviderSettings
from tests.support.fake_llm import FakeServer, Reply
from tests.support.gateway import (
    ANTHROPIC_KEY,
    NANO,
    OPENAI_KEY,
    TOKEN,
    RawProvider,
    agent_headers,
    anthropic_body,
    post,
    priced_row,
    sse_response,
)


async def test_anthropic_stream_arrives_unmodified_and_is_priced(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    reply = Reply(
        input_tokens=1000, output_tokens=200, cache_read=10_000, cache_write_5m=2000, cache_write_1h=500
    )
    fake.provider.queue(reply, reply)
    _, direct_bytes = await post(fake.url, "/v1/messages", anthropic_body())
    response, data = await post(gw.url, "/v1/messages", anthropic_body())

    assert response.status_code == 200
    assert data == direct_bytes  # byte for byte what the provider sent
    assert response.headers["content-type"].startswith("text/event-stream")
    assert float(response.headers[OVERHEAD_HEADER.decode()]) >= 0
    row = await gw.record(response.headers[REQUEST_ID_HEADER.decode()])
    assert (row.outcome, row.status, row.stream, row.sandbox) == ("ok", 200, True, "sb1")
    assert (row.provider, row.model, row.requested_model) == (
        "anthropic",
        "claude-sonnet-4-6",
        "claude-sonnet-4-6",
    )
    u = row.usage
    assert (
        u.input_tokens,
        u.output_tokens,
        u.cache_read_tokens,
        u.cache_write_5m_tokens,
        u.cache_write_1h_tokens,
        u.source,
    ) == (1000, 200, 10_000, 2000, 500, "provider")
    # Sonnet 4.6 at $3 in, $15 out, $0.30 cache read, $3.75 5-minute write, $6 1-hour write per MTok:
    # 1000*3 + 200*15 + 10000*0.3 + 2000*3.75 + 500*6 = 3000+3000+3000+7500+3000 = 19,500 $/MTok-token
    # = $0.0195 = 19,500,000 nanos.
    assert row.cost.total_nanos == 19_500_000
    assert row.trigger == "user"
    assert [a.status for a in row.attempts] == [200]
    # The provider saw the real key; the sandbox's token never left the gateway.
    seen = fake.provider.seen[-1]
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert TOKEN not in json.dumps(seen.headers)
    assert seen.headers["anthropic-version"] == "2023-06-01"


async def test_non_streaming_message(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    response, data = await post(gw.url, "/v1/messages", anthropic_body(stream=False))
    assert response.status_code == 200
    assert json.loads(data)["content"][0]["text"] == "Hello from the fake model."
    row = await gw.only_record()
    assert (row.stream, row.usage.input_tokens, row.usage.output_tokens) == (False, 1200, 85)
    assert row.cost.total_nanos == 1200 * 3000 + 85 * 15000


async def test_openai_chat_stream_gets_usage_and_bearer_key(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    fake.provider.queue(Reply(input_tokens=700, cache_read=300, output_tokens=50, reasoning=20))
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response, data = await post(
        gw.url, "/v1/chat/completions", body, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    assert data.rstrip().endswith(b"data: [DONE]")
    seen = fake.provider.seen[-1]
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.body["stream_options"] == {"include_usage": True}
    row = await gw.only_record()
    assert (row.api, row.provider) == ("openai-chat", "openai")
    u = row.usage
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (700, 300, 50, 20)
    assert row.cost.priced


async def test_openai_responses_stream(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    fake.provider.queue(Reply(input_tokens=400, cache_read=100, output_tokens=30))
    body = {"model": "gpt-4o-mini", "stream": True, "input": "hi"}
    response, _ = await post(gw.url, "/v1/responses", body, headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    row = await gw.only_record()
    assert (row.api, row.outcome, row.usage.input_tokens, row.usage.cache_read_tokens) == (
        "openai-responses",
        "ok",
        400,
        100,
    )


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer " + TOKEN[:-1]}])
async def test_a_wrong_token_is_refused_and_nothing_is_forwarded(
    make_gateway: Any,
    fake: FakeServer,
    headers: dict[str, str],
) -> None:
    gw = await make_gateway()
    response, data = await post(gw.url, "/v1/messages", anthropic_body(), headers=headers)
    assert response.status_code == 401
    assert json.loads(data)["error"]["type"] == "authentication_error"
    assert fake.provider.seen == []


async def test_an_error_event_after_the_200_is_a_failure(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    fake.provider.queue(Reply(behaviour="midstream_error", error_type="overloaded_error"))
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 200
    assert b"event: error" in data  # the agent sees the provider's own error event
    row = await gw.only_record()
    assert (row.outcome, row.error_kind) == ("error", "overloaded")
    assert row.usage.source == "partial"
    assert len(fake.provider.seen) == 1  # bytes had reached the agent: no retry, no double billing


async def test_overloaded_is_retried_before_any_byte(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    fake.provider.queue(Reply(behaviour="status", status=529, error_type="overloaded_error"))
    response, _ = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 200
    row = await gw.only_record()
    assert [a.status for a in row.attempts] == [529, 200]
    assert row.attempts[0].error_kind == "overloaded"
    assert row.outcome == "ok"


async def test_a_bad_request_is_relayed_without_retry(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    fake.provider.queue(
        Reply(
            behaviour="status",
            status=400,
            error_type="invalid_request_error",
            error_message="max_tokens: too large",
        )
    )
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 400
    assert json.loads(data)["error"]["message"] == "max_tokens: too large"
    assert float(response.headers[OVERHEAD_HEADER.decode()]) >= 0
    row = await gw.only_record()
    assert (row.outcome, row.error_kind, len(row.attempts)) == ("error", "invalid_request", 1)
    assert row.cost.total_nanos == 0


async def test_fallback_to_another_model_and_provider(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway(retries=1, fallbacks={"claude-sonnet-4-6": ["backup/claude-haiku-4-5"]})
    overloaded = Reply(behaviour="status", status=529, error_type="overloaded_error")
    fake.provider.queue(overloaded, overloaded)
    response, _ = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 200
    row = await gw.only_record()
    assert [(a.provider, a.model, a.status) for a in row.attempts] == [
        ("anthropic", "claude-sonnet-4-6", 529),
        ("anthropic", "claude-sonnet-4-6", 529),
        ("backup", "claude-haiku-4-5", 200),
    ]
    assert (row.provider, row.model, row.requested_model) == (
        "backup",
        "claude-haiku-4-5",
        "claude-sonnet-4-6",
    )
    assert fake.provider.seen[-1].body["model"] == "claude-haiku-4-5"
    assert fake.provider.seen[-1].headers["x-api-key"] == "sk-backup-key"


async def test_all_attempts_failing_returns_the_last_error(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway(retries=1)
    overloaded = Reply(behaviour="status", status=529, error_type="overloaded_error", retry_after="0")
    fake.provider.queue(overloaded, overloaded)
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 529
    assert json.loads(data)["error"]["type"] == "overloaded_error"
    row = await gw.only_record()
    assert (row.outcome, row.error_kind, len(row.attempts)) == ("error", "overloaded", 2)


async def test_an_unreachable_provider_is_a_clear_502(make_gateway: Any, fake: FakeServer) -> None:
    from tests.conftest import free_port

    dead = ProviderSettings(api="anthropic", base_url=f"http://127.0.0.1:{free_port()}", api_key="k")
    gw = await make_gateway(retries=0, providers={"anthropic": dead})
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 502
    assert "cannot reach anthropic" in json.loads(data)["error"]["message"]
    row = await gw.only_record()
    assert (row.outcome, row.error_kind, row.attempts[0].status) == ("error", "connect", 0)


async def test_a_client_disconnect_drains_then_cancels_upstream_and_records_estimated_usage(
    make_gateway: Any,
    fake: FakeServer,
) -> None:
    gw = await make_gateway(drain_timeout=0.3)
    fake.provider.queue(Reply(behaviour="stall", input_tokens=5000))
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream(
            "POST", gw.url + "/v1/messages", json=anthropic_body(), headers=agent_headers()
        ) as response:
            async for chunk in response.aiter_raw():
                if b"message_start" in chunk:
                    break
    # The agent hung up while the provider was still generating: the gateway reads on for the
    # usage, up to gateway.drain_timeout, then hangs up too.
    async with asyncio.timeout(10):
        await fake.provider.seen[-1].disconnected.wait()
    row = await gw.only_record()
    assert (row.outcome, row.error_kind) == ("cancelled", "client_disconnected")
    # message_start reported the prompt exactly; the output is estimated from what was relayed.
    assert (row.usage.source, row.usage.input_tokens) == ("estimated", 5000)
    assert row.usage.output_tokens >= 1
    assert row.cost.total_nanos == 5000 * 3000 + row.usage.output_tokens * 15000


async def test_an_agent_gone_before_the_answer_abandons_the_upstream_request(
    make_gateway: Any,
    fake: FakeServer,
) -> None:
    gw = await make_gateway()
    fake.provider.queue(Reply(first_delay=60))  # the provider is slow to start answering
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(anthropic_body()).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in agent_headers().items())
    writer.write(
        f"POST /v1/messages HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{head}\r\n".encode() + body
    )
    async with asyncio.timeout(10):
        await fake.provider.received.wait()
    writer.close()  # the agent gives up while the provider has not answered yet
    # The gateway drops the provider's request at once rather than leave it generating.
    async with asyncio.timeout(10):
        await fake.provider.seen[-1].disconnected.wait()
    row = await gw.only_record()
    assert (row.status, row.outcome, row.error_kind) == (499, "cancelled", "client_disconnected")
    assert [(a.status, a.error_kind) for a in row.attempts] == [(0, "client_disconnected")]
    assert row.cost.total_nanos == 0
    del reader


async def test_a_dropped_upstream_connection_is_recorded(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    fake.provider.queue(Reply(behaviour="drop", chunks=8))
    with pytest.raises(httpx.HTTPError):
        await post(gw.url, "/v1/messages", anthropic_body())
    row = await gw.only_record()
    assert row.outcome == "error"
    assert row.usage.source == "estimated"  # counted from what was relayed
    assert row.error_kind is not None


async def test_a_long_generation_is_not_cut_by_a_default_timeout(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    # 12 events 0.5 s apart: longer than httpx's 5 s default, well inside the 600 s idle limit.
    fake.provider.queue(Reply(chunks=8, chunk_delay=0.5))
    response, _ = await post(gw.url, "/v1/messages", anthropic_body(), timeout=60)
    row = await gw.only_record()
    assert (response.status_code, row.outcome) == (200, "ok")
    assert row.duration_ms > 5000


async def test_a_model_without_a_price_is_flagged_not_free(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    response, _ = await post(gw.url, "/v1/messages", anthropic_body(model="claude-unknown-9"))
    assert response.status_code == 200
    row = await gw.only_record()
    assert row.cost.total_nanos is None
    assert not row.cost.priced


async def test_a_missing_provider_key_says_what_to_set(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway(env={})
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 502
    assert "ANTHROPIC_API_KEY" in json.loads(data)["error"]["message"]
    assert fake.provider.seen == []


async def test_a_spent_budget_blocks_with_an_error_the_agent_reports(
    make_gateway: Any, fake: FakeServer
) -> None:
    gw = await make_gateway(budget=BudgetSettings(daily_usd=1.0), seed=[priced_row(NANO + 1)])
    response, data = await post(gw.url, "/v1/messages", anthropic_body())
    # A rate-limit error without retry-after: the one answer OpenClaw shows as written and
    # neither retries nor holds against the key (see exchange.budget_refusal).
    assert response.status_code == 429
    assert "retry-after" not in response.headers and response.headers["x-should-retry"] == "false"
    error = json.loads(data)["error"]
    assert error["type"] == "rate_limit_error"
    assert error["message"] == (
        "moltconsole budget reached: the daily limit of $1.00 for the overall budget is spent ($1.00); "
        "it resets at local midnight. Raise gateway.budget.daily_usd in the moltconsole config to "
        "continue now."
    )
    assert fake.provider.seen == []
    row = await gw.only_record()  # the seeded row came before the listener
    assert (row.outcome, row.error_kind, row.status) == ("blocked", "budget_exceeded", 429)


async def test_a_spent_budget_can_fall_back_to_a_cheaper_model(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway(
        sandbox_budgets={"sb1": BudgetSettings(monthly_usd=1.0)},
        budget_action="fallback",
        budget_fallback_model="claude-haiku-4-5",
        seed=[priced_row(2 * NANO)],
    )
    response, _ = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 200
    assert fake.provider.seen[-1].body["model"] == "claude-haiku-4-5"
    assert "x-moltconsole-budget-warning" in response.headers


async def test_a_budget_warning_header_near_the_limit(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway(
        budget=BudgetSettings(daily_usd=1.0), budget_warn_percent=50, seed=[priced_row(NANO * 6 // 10)]
    )
    response, _ = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 200
    assert "60% spent" in response.headers["x-moltconsole-budget-warning"]



START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-6",'
    b'"usage":{"input_tokens":10,"output_tokens":1}}}\n\n'
)
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


@pytest.mark.parametrize("with_head", [True, False])
async def test_the_head_leaves_with_what_the_provider_sent_along_with_its_own(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch, with_head: bool
) -> None:
    # Together: one write, so a send, a packet and a wakeup of the agent fewer per response.
    # Apart: the head is not held back waiting for the body.
    writes: list[bytes] = []
    write = http_server._Connection.write

    def recorded(conn: http_server._Connection, data: bytes) -> None:
        writes.append(data)
        write(conn, data)

    monkeypatch.setattr(http_server._Connection, "write", recorded)
    stream = sse_response([START, STOP])
    split = stream.index(b"\r\n\r\n") + 4 + (len(START) if with_head else 0)
    async with RawProvider(lambda head, body: [stream[:split], stream[split:]]) as provider:
        gw = await make_gateway(
            providers={
                "anthropic": ProviderSettings(
                    api="anthropic", base_url=provider.url, api_key_env="ANTHROPIC_API_KEY"
                )
            }
        )
        response, data = await post(gw.url, "/v1/messages", anthropic_body())

    assert response.status_code == 200 and data == START + STOP
    head, _, first = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first == (chunk(START) if with_head else b"")
    assert writes[1:] == [chunk(STOP if with_head else START + STOP), b"0\r\n\r\n"]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
