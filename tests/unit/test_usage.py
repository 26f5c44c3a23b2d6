"""Usage parsers: real wire formats fed in arbitrary chunks, errors after the 200, cheap skipping."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from moltconsole_backend.gateway import usage as usage_mod
from moltconsole_backend.gateway.usage import (
    ParsedResponse,
    error_kind_for,
    parser_for,
    request_model,
    wants_stream,
)
from moltconsole_shared.wire.records import Api


def sse(*events: tuple[str | None, Any], eol: str = "\n") -> bytes:
    """An SSE stream: (event name or None, data object or raw string) per event."""
    out = []
    for name, data in events:
        if name is not None:
            out.append(f"event: {name}{eol}")
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        out.append(f"data: {text}{eol}{eol}")
    return "".join(out).encode()


def chunkings(body: bytes) -> Iterator[list[bytes]]:
    """Whole, byte by byte, every two-way split, and some random splits."""
    yield [body]
    yield [body[i:i + 1] for i in range(len(body))]
    for cut in range(1, len(body)):
        yield [body[:cut], body[cut:]]
    rng = random.Random(4)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(body)), k=min(12, len(body) - 1)))
        yield [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def parse(api: Api, stream: bool, chunks: list[bytes], complete: bool = True) -> ParsedResponse:
    parser = parser_for(api, stream)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.result(complete=complete)


# --- Anthropic Messages ----------------------------------------------------------------------

MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_01", "type": "message", "role": "assistant", "content": [],
    "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 20000,
              "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
              "output_tokens": 1, "service_tier": "standard"}}}


def delta(text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}


def anthropic_stream(eol: str = "\n", *, stop: bool = True) -> bytes:
    events: list[tuple[str | None, Any]] = [
        ("message_start", MESSAGE_START),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", delta("Grüße 🚀, ")),
        ("content_block_delta", delta("der \"usage\": 99 und message_delta")),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                               "stop_sequence": None},
                           "usage": {"output_tokens": 57}}),
    ]
    if stop:
        events.append(("message_stop", {"type": "message_stop"}))
    return sse(*events, eol=eol)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_anthropic_stream_in_any_chunks(eol: str) -> None:
    body = anthropic_stream(eol)
    for chunks in chunkings(body):
        parsed = parse("anthropic-messages", True, chunks)
        assert parsed.finished, chunks
        assert parsed.model == "claude-sonnet-4-5-20250929"
        assert parsed.stop_reason == "end_turn"
        assert parsed.error_kind is None
        u = parsed.usage
        assert (u.input_tokens, u.output_tokens, u.cache_read_tokens) == (12, 57, 20_000), chunks
        assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (1000, 2000)
        assert u.source == "provider"


def test_anthropic_message_delta_is_cumulative_never_summed() -> None:
    body = sse(
        ("message_start", MESSAGE_START),
        ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 10}}),
        # Later deltas repeat the running totals and may update the prompt side as well.
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 42, "input_tokens": 15,
                                     "cache_read_input_tokens": 20000,
                                     "cache_creation_input_tokens": 3000}}),
        ("message_stop", {"type": "message_stop"}),
    )
    u = parse("anthropic-messages", True, [body]).usage
    assert u.output_tokens == 42  # not 1 + 10 + 42
    assert u.input_tokens == 15
    # The total still matches the split from message_start, so the split stays.
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (1000, 2000)


def test_anthropic_cache_writes_without_a_split_count_as_5_minute() -> None:
    start = json.loads(json.dumps(MESSAGE_START))
    del start["message"]["usage"]["cache_creation"]
    body = sse(("message_start", start), ("message_stop", {"type": "message_stop"}))
    u = parse("anthropic-messages", True, [body]).usage
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (3000, 0)


def test_anthropic_error_after_the_200() -> None:
    body = anthropic_stream(stop=False)[: anthropic_stream(stop=False).index(b"event: message_delta")]
    body += sse(("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "Überlastet, try again 🚀"}}))
    for chunks in chunkings(body):
        parsed = parse("anthropic-messages", True, chunks)
        assert parsed.error_kind == "overloaded"
        assert parsed.error_type == "overloaded_error"
        assert parsed.error_message == "Überlastet, try again 🚀"
        assert not parsed.finished
        # What was read before the error is kept, marked partial.
        assert parsed.usage.input_tokens == 12
        assert parsed.usage.source == "partial"


def test_anthropic_stream_cut_short_is_partial() -> None:
    body = anthropic_stream()
    cut = body.index(b"event: message_delta")
    parsed = parse("anthropic-messages", True, [body[:cut]], complete=False)
    assert not parsed.finished
    assert parsed.usage.source == "partial"
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (12, 1)


def test_anthropic_nothing_read_has_no_usage() -> None:
    parsed = parse("anthropic-messages", True, [b"event: ping\ndata: {}\n\n"], complete=False)
    assert parsed.usage.source == "none"
    assert parsed.model is None


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_multi_line_data_comments_and_missing_final_blank_line(eol: str) -> None:
    start = json.dumps(MESSAGE_START, indent=1).splitlines()
    text = (": keep-alive\n" + "event: message_start\n" + "".join(f"data: {line}\n" for line in start)
            + "\n:ping\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}")
    body = text.replace("\n", eol).encode()
    for chunks in chunkings(body):
        parsed = parse("anthropic-messages", True, chunks)
        assert parsed.usage.cache_read_tokens == 20_000, chunks
        assert parsed.finished  # the last event counts even without its blank line


def test_anthropic_stream_without_event_lines() -> None:
    body = sse((None, MESSAGE_START), (None, delta("hi")), (None, {"type": "message_stop"}))
    parsed = parse("anthropic-messages", True, [body])
    assert parsed.finished and parsed.usage.cache_read_tokens == 20_000


def test_anthropic_json() -> None:
    body = json.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 100,
                  "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100}},
    }).encode()
    for chunks in chunkings(body):
        parsed = parse("anthropic-messages", False, chunks)
        assert parsed.finished
        assert parsed.model == "claude-haiku-4-5-20251001"
        assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (5, 7)
        assert parsed.usage.cache_write_1h_tokens == 100
        assert parsed.usage.source == "provider"


def test_json_body_cut_short() -> None:
    body = json.dumps({"type": "message", "usage": {"input_tokens": 5, "output_tokens": 7}}).encode()
    parsed = parse("anthropic-messages", False, [body[:20]], complete=False)
    assert not parsed.finished
    assert parsed.usage.source == "none"


# --- OpenAI Chat Completions -----------------------------------------------------------------


def chat_chunk(content: str | None = None, *, finish: str | None = None, usage: Any = None,
               choices: bool = True) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                             "model": "gpt-4.1-mini-2025-04-14", "system_fingerprint": None,
                             "choices": [], "usage": usage}
    if choices:
        chunk["choices"] = [{"index": 0, "delta": {} if content is None else {"content": content},
                             "logprobs": None, "finish_reason": finish}]
    return chunk


CHAT_USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0}}


def chat_stream() -> bytes:
    return sse(
        (None, chat_chunk("")), (None, chat_chunk("Hé")), (None, chat_chunk('"usage": 3')),
        (None, chat_chunk(finish="stop")), (None, chat_chunk(usage=CHAT_USAGE, choices=False)),
        (None, "[DONE]"),
    )


def test_openai_chat_stream_in_any_chunks() -> None:
    for chunks in chunkings(chat_stream()):
        parsed = parse("openai-chat", True, chunks)
        assert parsed.finished
        assert parsed.model == "gpt-4.1-mini-2025-04-14"
        u = parsed.usage
        # input is the UNCACHED part of the prompt: 1200 - 1024
        tokens = (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens)
        assert tokens == (176, 1024, 300, 128)
        assert u.source == "provider"


def test_openai_chat_decodes_only_the_chunks_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []
    real = json.loads

    def counting(data: Any) -> Any:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(json, "loads", counting)
    body = sse(*([(None, chat_chunk(""))] + [(None, chat_chunk(f"word {i} \"usage\"")) for i in range(50)]
                 + [(None, chat_chunk(usage=CHAT_USAGE, choices=False)), (None, "[DONE]")]))
    parsed = parse("openai-chat", True, [body])
    assert parsed.usage.cache_read_tokens == 1024
    assert len(decoded) == 2  # the first chunk (model) and the usage chunk


def test_anthropic_decodes_no_content_delta(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []
    real = json.loads

    def counting(data: Any) -> Any:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(json, "loads", counting)
    body = sse(("message_start", MESSAGE_START), *[("content_block_delta", delta("x")) for _ in range(50)],
               ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}}),
               ("message_stop", {"type": "message_stop"}))
    assert parse("anthropic-messages", True, [body]).usage.output_tokens == 5
    assert len(decoded) == 2  # message_start and message_delta


def test_openai_chat_without_usage_or_done() -> None:
    body = sse((None, chat_chunk("a")), (None, chat_chunk("b")))
    parsed = parse("openai-chat", True, [body])
    assert not parsed.finished
    assert parsed.usage.source == "none"
    assert parsed.model == "gpt-4.1-mini-2025-04-14"


def test_openai_chat_error_in_stream() -> None:
    body = sse((None, chat_chunk("a")),
               (None, {"error": {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": None, "code": None}}))
    parsed = parse("openai-chat", True, [body])
    assert parsed.error_kind == "server"
    assert parsed.error_type == "server_error"
    assert "server had an error" in (parsed.error_message or "")
    assert not parsed.finished


def test_openai_chat_cache_writes_are_not_input() -> None:
    usage = {"prompt_tokens": 5000, "completion_tokens": 10,
             "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000}}
    body = json.dumps({"id": "c", "object": "chat.completion", "model": "gpt-5.6-terra",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                    "finish_reason": "stop"}], "usage": usage}).encode()
    parsed = parse("openai-chat", False, [body])
    u = parsed.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_5m_tokens) == (1000, 1000, 3000)
    assert parsed.stop_reason == "stop" and parsed.finished


# --- OpenAI Responses ------------------------------------------------------------------------

RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress",
            "model": "gpt-5-2025-08-07", "output": [], "usage": None, "error": None}
RESPONSE_USAGE = {"input_tokens": 9000, "input_tokens_details": {"cached_tokens": 8000},
                  "output_tokens": 700, "output_tokens_details": {"reasoning_tokens": 500},
                  "total_tokens": 9700}


def responses_stream(end: str = "response.completed", **changes: Any) -> bytes:
    done = {**RESPONSE, "status": "completed", "usage": RESPONSE_USAGE, **changes}
    return sse(
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": RESPONSE}),
        ("response.in_progress", {"type": "response.in_progress", "sequence_number": 1,
                                  "response": RESPONSE}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2,
                                        "item_id": "m", "output_index": 0, "content_index": 0,
                                        "delta": "Hallo 🌍"}),
        (end, {"type": end, "sequence_number": 3, "response": done}),
    )


def test_openai_responses_stream_in_any_chunks() -> None:
    for chunks in chunkings(responses_stream()):
        parsed = parse("openai-responses", True, chunks)
        assert parsed.finished
        assert parsed.model == "gpt-5-2025-08-07"
        u = parsed.usage
        tokens = (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens)
        assert tokens == (1000, 8000, 700, 500)
        assert u.source == "provider"


def test_openai_responses_failed() -> None:
    body = responses_stream("response.failed", status="failed",
                            error={"code": "server_error", "message": "Something went wrong"})
    parsed = parse("openai-responses", True, [body])
    assert parsed.error_kind == "server"
    assert parsed.error_message == "Something went wrong"


def test_openai_responses_incomplete_is_a_finished_response() -> None:
    body = responses_stream("response.incomplete", status="incomplete",
                            incomplete_details={"reason": "max_output_tokens"})
    parsed = parse("openai-responses", True, [body])
    assert parsed.finished and parsed.error_kind is None
    assert parsed.stop_reason == "max_output_tokens"
    assert parsed.usage.source == "provider"


def test_openai_responses_error_event() -> None:
    body = responses_stream()[: responses_stream().index(b"event: response.completed")]
    body += sse(("error", {"type": "error", "code": "rate_limit_exceeded",
                           "message": "Rate limit reached", "param": None, "sequence_number": 3}))
    parsed = parse("openai-responses", True, [body])
    assert parsed.error_kind == "rate_limit"
    assert not parsed.finished
    assert parsed.usage.source == "none"


def test_openai_responses_json() -> None:
    body = json.dumps({**RESPONSE, "status": "completed", "usage": RESPONSE_USAGE}).encode()
    parsed = parse("openai-responses", False, [body])
    assert parsed.finished and parsed.usage.input_tokens == 1000 and parsed.stop_reason == "completed"


# --- errors and request helpers --------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "kind"), [
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "overloaded"),
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, "rate_limit"),
    (401, {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}, "auth"),
    (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "too long"}},
     "invalid_request"),
    (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}, "not_found"),
    (500, {"type": "error", "error": {"type": "api_error", "message": "Internal"}}, "server"),
    (429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                     "code": "insufficient_quota"}}, "quota"),
    (429, {"error": {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}},
     "rate_limit"),
    (400, {"error": {"message": "maximum context length", "type": "invalid_request_error",
                     "code": "context_length_exceeded"}}, "invalid_request"),
    (404, {"error": {"message": "The model does not exist", "type": "invalid_request_error",
                     "code": "model_not_found"}}, "not_found"),
    (502, "<html>Bad Gateway</html>", "server"),
    (504, "", "timeout"),
    (503, {"error": {"message": "The engine is currently overloaded", "type": "server_error"}},
     "overloaded"),
    (418, None, "invalid_request"),
])
def test_error_kind_for(status: int, body: Any, kind: str) -> None:
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or "").encode()
    got, message = error_kind_for(status, raw)
    assert got == kind
    assert message


def test_error_messages_are_short_one_line_and_mask_keys() -> None:
    body = json.dumps({"error": {"message": "Incorrect API key provided: sk-proj-abcdefghijkl1234.\n"
                                 + "x" * 1000, "type": "invalid_request_error", "code": "invalid_api_key"}})
    kind, message = error_kind_for(401, body.encode())
    assert kind == "auth"
    assert "abcdefghijkl" not in message
    assert "\n" not in message
    assert len(message) <= usage_mod.MAX_ERROR_MESSAGE


def test_request_helpers() -> None:
    assert request_model("anthropic-messages", {"model": " claude-sonnet-4-5 ", "stream": True}) == \
        "claude-sonnet-4-5"
    assert request_model("openai-chat", {"messages": []}) == ""
    assert request_model("openai-chat", {"model": 5}) == ""
    assert wants_stream("openai-responses", {"stream": True})
    assert not wants_stream("openai-chat", {"stream": "yes"})
    assert not wants_stream("anthropic-messages", {})


def test_parser_for_every_api() -> None:
    for api in ("anthropic-messages", "openai-chat", "openai-responses"):
        for stream in (True, False):
            assert parser_for(api, stream).result(complete=True).usage.source == "none"
    with pytest.raises(ValueError, match="no usage parser"):
        parser_for("gemini", True)  # type: ignore[arg-type]


def test_result_after_result_is_stable() -> None:
    parser = parser_for("anthropic-messages", True)
    parser.feed(anthropic_stream())
    first = parser.result(complete=True)
    assert parser.result(complete=True) == first
