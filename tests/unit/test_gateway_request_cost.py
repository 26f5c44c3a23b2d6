"""What the gateway does for each request before the agent's first byte, and what it leaves out.

The gateway reports its own time per request (``x-moltconsole-overhead-ms``): the work between
the agent's request and the response's head. These tests pin down the work kept off that path:
the ledger row's facts of a body (its trigger, its input estimate) are read once the response
has gone out, the estimate only when it is needed; the redactor is built again only when a
secret changed; a response's head leaves in the same write as the first piece of its body.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from moltconsole_backend.gateway import proxy as proxy_mod
from moltconsole_backend.gateway import request_body
from moltconsole_backend.gateway.exchange import new_request_id
from moltconsole_backend.gateway.http_server import ResponseWriter
from moltconsole_backend.gateway.pricing import PriceTable
from moltconsole_backend.gateway.proxy import GatewayProxy, TokenRegistry
from moltconsole_backend.gateway.redact import MARK, Redactor
from moltconsole_backend.gateway.request_body import BodyReader
from moltconsole_backend.gateway.trigger import classify_trigger
from moltconsole_backend.settings import GatewaySettings, ProviderSettings

KEY = "sk-ant-real-key-0123456789"
BODY = json.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "stream": True,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "word " * 400}],
    }
).encode()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often this process classified a trigger and estimated input tokens."""
    counted = {"trigger": 0, "estimate": 0}
    classify, estimate = classify_trigger, request_body.estimate_input_tokens

    def counting_classify(*args: Any) -> Any:
        counted["trigger"] += 1
        return classify(*args)

    def counting_estimate(*args: Any) -> Any:
        counted["estimate"] += 1
        return estimate(*args)

    monkeypatch.setattr("moltconsole_backend.gateway.request_body.classify_trigger", counting_classify)
    monkeypatch.setattr(request_body, "estimate_input_tokens", counting_estimate)
    return counted


async def test_a_small_body_is_read_without_the_facts_only_its_ledger_row_needs(
    calls: dict[str, int],
) -> None:
    body = await BodyReader().read("anthropic-messages", BODY)
    assert (body.facts.model, body.facts.stream) == ("claude-sonnet-4-6", True)
    assert calls == {"trigger": 0, "estimate": 0}  # nothing the request waits for

    assert body.trigger() == "user"
    assert body.input_estimate() == 508  # 2,032 characters of text in the prompt's fields, over 4
    body.trigger(), body.input_estimate()
    assert calls == {"trigger": 1, "estimate": 1}  # read once, when asked


async def test_a_body_read_by_a_worker_brings_its_ledger_facts_along(calls: dict[str, int]) -> None:
    reader = BodyReader(inline_bytes=0)
    try:
        body = await reader.read("anthropic-messages", BODY)
    finally:
        workers = list(reader._all)
        reader.close()
        for worker in workers:  # reaped before the test's loop closes
            await worker.process.wait()
    assert (body.trigger(), body.input_estimate()) == ("user", 508)
    assert calls == {"trigger": 0, "estimate": 0}  # the worker did it, off the gateway's loop


def proxy_with(env: dict[str, str]) -> GatewayProxy:
    settings = GatewaySettings(
        providers={"anthropic": ProviderSettings(api="anthropic", base_url="http://x", api_key_env="KEY")}
    )
    return GatewayProxy(settings, TokenRegistry(), PriceTable(settings), lambda _: None, env=env)


def test_the_redactor_is_built_again_only_when_a_secret_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Redactor] = []

    class CountedRedactor(Redactor):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(proxy_mod, "Redactor", CountedRedactor)
    env = {"KEY": KEY}
    proxy = proxy_with(env)
    first, second = proxy.redactor(), proxy.redactor()
    assert len(built) == 1

    # Each request still has a stream of its own: what one holds back is not the other's.
    assert first.feed(b"data: " + KEY[:10].encode()) == b"data: "
    assert second.feed(b"data: ok\n") == b"data: ok\n"
    assert first.feed(KEY[10:].encode() + b"\n") == MARK + b"\n"

    env["KEY"] = "sk-ant-another-key-987654"  # rotated in the keys file
    third = proxy.redactor()
    assert len(built) == 2
    assert third.clean(b"echo sk-ant-another-key-987654") == b"echo " + MARK


class Recorded:
    """Stands in for the agent's connection: every write the response makes, as it made it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def response_done(self, writer: ResponseWriter, keep: bool) -> None:
        pass


def writer_on(conn: Recorded) -> ResponseWriter:
    return ResponseWriter(conn, close_after=False)  # type: ignore[arg-type]


def test_a_held_head_leaves_with_the_first_piece_of_body() -> None:
    conn = Recorded()
    writer = writer_on(conn)
    writer.start(200, [(b"content-type", b"text/event-stream")], hold=True)
    assert conn.writes == []
    writer.write(b"event: one\n\n")
    writer.write(b"event: two\n\n")
    writer.end()
    assert len(conn.writes) == 3
    assert conn.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert conn.writes[0].endswith(b"\r\n\r\nc\r\nevent: one\n\n\r\n")
    assert conn.writes[1:] == [b"c\r\nevent: two\n\n\r\n", b"0\r\n\r\n"]


def test_a_held_head_goes_out_on_flush_when_no_body_came_with_it() -> None:
    conn = Recorded()
    writer = writer_on(conn)
    writer.start(200, [(b"content-type", b"text/event-stream")], hold=True)
    writer.write(b"")  # a piece the redactor held back entirely
    writer.flush()
    assert len(conn.writes) == 1 and conn.writes[0].endswith(b"chunked\r\n\r\n")
    writer.flush()
    writer.end()
    assert conn.writes[1:] == [b"0\r\n\r\n"]


@pytest.mark.parametrize("status", [200, 204])
def test_a_whole_response_is_one_write(status: int) -> None:
    conn = Recorded()
    writer_on(conn).respond(status, b'{"ok":true}')
    assert len(conn.writes) == 1
    assert conn.writes[0].endswith(b"\r\n\r\n" + (b'{"ok":true}' if status == 200 else b""))


def test_a_request_id_is_a_version_4_uuid_in_hex() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)
