"""The AI gateway against hostile agents and misbehaving providers (issue 9, "Keys", "Resources",
"Upstream misbehaviour"): real gateway, real sockets, a provider written by hand where needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from moltconsole_backend.gateway.exchange import REQUEST_ID_HEADER
from moltconsole_backend.settings import ProviderSettings
from tests.support.fake_llm import FakeServer, Reply
from tests.support.gateway import (
    ANTHROPIC_KEY,
    RawProvider,
    agent_headers,
    anthropic_body,
    post,
    sse_response,
)

SECRET_HEADER = "cf-secret-value-0123456789"


def echo_everything(head: bytes, body: bytes) -> bytes:
    """A provider (or a proxy before it) that echoes the request's headers back, everywhere."""
    echoed = head.decode("latin-1").replace("\r\n", " | ").replace('"', "'")
    payload = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": echoed}})
    return (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + b"x-echo: "
        + head.split(b"\r\n")[1:][0]
        + b" "
        + ANTHROPIC_KEY.encode()
        + b"\r\n"
        + b"content-length: %d\r\n\r\n" % len(payload)
        + payload.encode()
    )


async def test_a_provider_echoing_the_key_in_an_error_never_shows_it_to_the_agent(make_gateway: Any) -> None:
    async with RawProvider(echo_everything) as provider:
        gw = await make_gateway(
            providers={
                "anthropic": ProviderSettings(
                    api="anthropic",
                    base_url=provider.url,
                    api_key_env="ANTHROPIC_API_KEY",
                    headers={"cf-aig-authorization": "env:CF_SECRET"},
                )
            },
            env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "CF_SECRET": SECRET_HEADER},
        )
        response, data = await post(gw.url, "/v1/messages", anthropic_body())
        head, _ = provider.requests[0]
    # The provider really got both secrets (so it could echo them) ...
    assert ANTHROPIC_KEY.encode() in head and SECRET_HEADER.encode() in head
    # ... and the agent sees neither, in the body or in any header.
    assert response.status_code == 400
    seen = data + b"".join(k.encode() + v.encode() for k, v in response.headers.items())
    assert ANTHROPIC_KEY.encode() not in seen and SECRET_HEADER.encode() not in seen
    assert b"[redacted by moltconsole]" in data
    assert "[redacted by moltconsole]" in response.headers["x-echo"]
    row = await gw.record(response.headers[REQUEST_ID_HEADER.decode()])
    assert ANTHROPIC_KEY not in (row.error_message or "")


async def test_a_key_echoed_inside_a_stream_is_redacted_even_split_across_reads(make_gateway: Any) -> None:
    key = ANTHROPIC_KEY.encode()
    stream = sse_response(
        [
            b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-6",'
            b'"usage":{"input_tokens":10,"output_tokens":1}}}\n\n',
            b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta",'
            b'"text":"your key is ' + key + b" and again " + key + b'"}}\n\n',
            b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":30}}\n\n',
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ]
    )
    # Cut the stream in the middle of the first key: the two halves arrive as separate reads.
    cut = stream.index(key) + 9
    async with RawProvider(lambda head, body: [stream[:cut], stream[cut:]]) as provider:
        gw = await make_gateway(
            providers={
                "anthropic": ProviderSettings(
                    api="anthropic", base_url=provider.url, api_key_env="ANTHROPIC_API_KEY"
                )
            }
        )
        response, data = await post(gw.url, "/v1/messages", anthropic_body())
    assert response.status_code == 200
    assert key not in data and key[:9] not in data
    assert data.count(b"[redacted by moltconsole]") == 2
    assert data.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    row = await gw.record(response.headers[REQUEST_ID_HEADER.decode()])
    assert (row.outcome, row.usage.output_tokens) == ("ok", 30)


async def test_headers_named_in_connection_are_hop_by_hop_both_ways(make_gateway: Any) -> None:
    def answer(head: bytes, body: bytes) -> bytes:
        return sse_response(
            [b'event: message_stop\ndata: {"type":"message_stop"}\n\n'],
            extra_headers=b"connection: x-internal-route\r\nx-internal-route: node-7\r\n"
            b"x-moltconsole-request-id: forged\r\nx-moltconsole-budget-warning: forged\r\n",
        )

    async with RawProvider(answer) as provider:
        gw = await make_gateway(
            providers={
                "anthropic": ProviderSettings(
                    api="anthropic", base_url=provider.url, api_key_env="ANTHROPIC_API_KEY"
                )
            }
        )
        headers = {**agent_headers(), "connection": "keep-alive, x-agent-secret", "x-agent-secret": "s3"}
        response, _ = await post(gw.url, "/v1/messages", anthropic_body(), headers=headers)
        head, _ = provider.requests[0]
    # The agent's Connection-named header did not go upstream ...
    assert b"x-agent-secret" not in head.lower()
    # ... the provider's did not come back, nor its claims to be us.
    assert "x-internal-route" not in response.headers
    assert response.headers.get_list("x-moltconsole-request-id") == [
        response.headers["x-moltconsole-request-id"]
    ]
    assert response.headers["x-moltconsole-request-id"] != "forged"
    assert "x-moltconsole-budget-warning" not in response.headers


async def test_bad_tokens_are_counted_and_a_source_that_keeps_failing_is_slowed_down(
    make_gateway: Any, fake: FakeServer
) -> None:
    gw = await make_gateway(auth_failures_per_minute=5)
    async with httpx.AsyncClient(timeout=10) as client:
        statuses = []
        for _ in range(8):
            r = await client.post(
                gw.url + "/v1/messages", json=anthropic_body(), headers=agent_headers("wrong-token-1")
            )
            statuses.append(r.status_code)
        assert statuses == [401] * 5 + [429] * 3
        assert int(r.headers["retry-after"]) >= 1
        assert "invalid moltconsole gateway token" in r.json()["error"]["message"]
        # The right token from the same address is never slowed down.
        ok = await client.post(gw.url + "/v1/messages", json=anthropic_body(), headers=agent_headers())
        assert ok.status_code == 200
    stats = gw.proxy.stats()
    assert (stats["auth_refused"], stats["auth_throttled"]) == (5, 3)
    assert stats["auth_sources"] == ["127.0.0.1"]
    assert not any("wrong-token" in json.dumps(s.headers) for s in fake.provider.seen)


async def test_a_huge_body_of_tiny_arrays_does_not_stall_other_agents(
    make_gateway: Any, fake: FakeServer
) -> None:
    gw = await make_gateway()
    # 24 MiB of [],[],... inside a valid request: seconds of json.loads.
    bomb = b'{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"x":['
    bomb += b"[]," * (8 * 1024 * 1024) + b"[]]}"
    fake.provider.queue(Reply())
    async with httpx.AsyncClient(timeout=60) as client:
        heavy = asyncio.create_task(
            client.post(gw.url + "/v1/messages", content=bomb, headers=agent_headers())
        )
        await asyncio.sleep(0)  # let it start sending
        # Meanwhile another agent's requests are answered promptly.
        worst = 0.0
        for _ in range(20):
            t = time.perf_counter()
            r = await client.post(gw.url + "/v1/messages", json=anthropic_body(), headers=agent_headers())
            worst = max(worst, time.perf_counter() - t)
            assert r.status_code == 200
            if heavy.done():
                break
        response = await heavy
    assert response.status_code == 200, response.text  # a strange body, but a valid one: served
    assert worst < 1.0, f"another agent waited {worst * 1000:.0f} ms"  # inline: seconds


async def test_deep_nesting_is_a_clear_400_not_a_traceback(make_gateway: Any, fake: FakeServer) -> None:
    gw = await make_gateway()
    for depth in (200_000, 5_000):  # one read in a worker process, one in place
        nested = b"[" * depth + b"]" * depth
        body = b'{"model":"claude-sonnet-4-6","messages":' + nested + b"}"
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(gw.url + "/v1/messages", content=body, headers=agent_headers())
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "the request body nests too deeply to be read"
    assert not fake.provider.seen
