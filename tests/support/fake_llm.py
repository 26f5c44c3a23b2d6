"""A stand-in for Anthropic's and OpenAI's APIs, speaking their real wire formats over real HTTP.

The only fake in the gateway's tests: a paid model API cannot be reached from here. It answers
Anthropic Messages (SSE events ``message_start`` .. ``message_stop``, usage in ``message_start``
and cumulative in ``message_delta``), OpenAI Chat Completions (chunks, ``include_usage`` final
chunk, ``[DONE]``) and OpenAI Responses (``response.*`` events), streaming or not. Tests script
what comes next: an error status, an SSE ``error`` event after the 200, a slow stream, a dropped
connection. Every request it receives is kept, headers included, so tests can see which key
arrived. ``close_connections`` makes it answer ``connection: close`` and hang up after each
response, as some providers and proxies in front of them do (the client reconnects each time).

Run standalone for benchmarks: ``python -m tests.support.fake_llm --port 0`` prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn

Behaviour = Literal["ok", "status", "midstream_error", "drop", "stall"]


@dataclass
class Reply:
    """What the fake answers to one request."""

    behaviour: Behaviour = "ok"
    status: int = 200  # for behaviour "status"
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    retry_after: str | None = None
    text: str = "Hello from the fake model."
    chunks: int = 4  # content deltas in a stream
    chunk_delay: float = 0.0  # seconds between stream events (a slow generation)
    first_delay: float = 0.0  # seconds before the response starts (time to first byte)
    input_tokens: int = 1200
    output_tokens: int = 85
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    model: str | None = None  # the model the provider says served it (default: the requested one)


@dataclass
class Seen:
    """A request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


class FakeProvider:
    """The ASGI app; ``queue`` scripts the next replies, ``default`` answers the rest."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.seen: list[Seen] = []
        self.keep_seen = True
        self.received = asyncio.Event()  # set at each request (binds to a loop on first use)
        self.close_connections = False  # "connection: close" on every response

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.close_connections:
            send = _closing(send)
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        seen = Seen(scope["path"], headers, body)
        if self.keep_seen:
            self.seen.append(seen)
            self.received.set()
        reply = self.replies.popleft() if self.replies else self.default
        path = scope["path"]
        api = (
            "anthropic"
            if path.endswith("/v1/messages")
            else "chat"
            if path.endswith("/chat/completions")
            else "responses"
            if path.endswith("/v1/responses")
            else None
        )
        if api is None:
            await _json(send, 404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})
            return
        watcher = asyncio.ensure_future(_watch_disconnect(receive, seen))
        try:
            await self._answer(send, api, reply, body, seen)
        finally:
            watcher.cancel()

    async def _answer(self, send: Any, api: str, reply: Reply, body: dict[str, Any], seen: Seen) -> None:
        if reply.first_delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.disconnected.wait(), reply.first_delay)
            if seen.disconnected.is_set():
                return  # the caller gave up before the response started
        if reply.behaviour == "status":
            await _json(send, reply.status, _error_payload(api, reply), retry_after=reply.retry_after)
            return
        model = reply.model or str(body.get("model", "unknown"))
        if not body.get("stream"):
            await _json(send, 200, _whole(api, model, reply))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"request-id", b"req_fake"),
                ],
            }
        )
        events = list(_events(api, model, reply, body))
        # Paced on a fixed schedule from the first event, as a model generates: a late wake-up
        # delays one event, it does not push every later one back.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, event in enumerate(events):
            if seen.disconnected.is_set():
                return
            if reply.behaviour == "drop" and index == len(events) // 2:
                raise ConnectionResetError("the fake drops the connection mid-stream")
            if reply.behaviour == "stall" and index == 2:
                await seen.disconnected.wait()
                return
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if reply.chunk_delay:
                await asyncio.sleep(max(0.0, start + (index + 1) * reply.chunk_delay - loop.time()))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _closing(send: Any) -> Any:
    """``send`` that adds ``connection: close`` to the response's headers (uvicorn then closes)."""

    async def closing_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing_send


async def _watch_disconnect(receive: Any, seen: Seen) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            seen.disconnected.set()
            return


async def _json(send: Any, status: int, payload: Any, retry_after: str | None = None) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _error_payload(api: str, reply: Reply) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": reply.error_type, "message": reply.error_message}}
    return {
        "error": {
            "message": reply.error_message,
            "type": reply.error_type,
            "param": None,
            "code": reply.error_type,
        }
    }


def _anthropic_usage(reply: Reply, output: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": reply.cache_write_5m + reply.cache_write_1h,
        "cache_read_input_tokens": reply.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_write_5m,
            "ephemeral_1h_input_tokens": reply.cache_write_1h,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }


def _openai_chat_usage(reply: Reply) -> dict[str, Any]:
    prompt = reply.input_tokens + reply.cache_read
    return {
        "prompt_tokens": prompt,
        "completion_tokens": reply.output_tokens,
        "total_tokens": prompt + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _responses_usage(reply: Reply) -> dict[str, Any]:
    prompt = reply.input_tokens + reply.cache_read
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": reply.cache_read},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning},
        "total_tokens": prompt + reply.output_tokens,
    }


def _pieces(text: str, n: int) -> list[str]:
    n = max(1, n)
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _whole(api: str, model: str, reply: Reply) -> dict[str, Any]:
    if api == "anthropic":
        return {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": _anthropic_usage(reply, reply.output_tokens),
        }
    if api == "chat":
        return {
            "id": "chatcmpl-fake01",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _openai_chat_usage(reply),
            "system_fingerprint": "fp_fake",
        }
    return {
        "id": "resp_fake01",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_fake01",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        ],
        "usage": _responses_usage(reply),
    }


def _sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _events(api: str, model: str, reply: Reply, body: dict[str, Any]) -> list[bytes]:
    pieces = _pieces(reply.text, reply.chunks)
    error = {"type": "error", "error": {"type": reply.error_type, "message": reply.error_message}}
    if api == "anthropic":
        start: dict[str, Any] = {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(reply, 1),
        }
        out = [
            _sse("message_start", {"type": "message_start", "message": start}),
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            _sse("ping", {"type": "ping"}),
        ]
        for piece in pieces:
            out.append(
                _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        if reply.behaviour == "midstream_error":
            out.append(_sse("error", error))
            return out
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        out.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            )
        )
        out.append(_sse("message_stop", {"type": "message_stop"}))
        return out
    if api == "chat":
        base = {
            "id": "chatcmpl-fake01",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        out = [
            _sse(
                None,
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ],
                },
            )
        ]
        for piece in pieces:
            out.append(
                _sse(
                    None,
                    {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]},
                )
            )
        if reply.behaviour == "midstream_error":
            out.append(_sse(None, {"error": {"message": reply.error_message, "type": reply.error_type}}))
            return out
        out.append(_sse(None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            out.append(_sse(None, {**base, "choices": [], "usage": _openai_chat_usage(reply)}))
        out.append(_sse(None, "[DONE]"))
        return out
    resp = {
        "id": "resp_fake01",
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "in_progress",
        "output": [],
        "usage": None,
    }
    out = [_sse("response.created", {"type": "response.created", "sequence_number": 0, "response": resp})]
    for n, piece in enumerate(pieces):
        out.append(
            _sse(
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": n + 1,
                    "item_id": "msg_fake01",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                },
            )
        )
    if reply.behaviour == "midstream_error":
        out.append(
            _sse(
                "error",
                {
                    "type": "error",
                    "sequence_number": 99,
                    "code": reply.error_type,
                    "message": reply.error_message,
                    "param": None,
                },
            )
        )
        return out
    done = {**resp, "status": "completed", "usage": _responses_usage(reply)}
    out.append(
        _sse("response.completed", {"type": "response.completed", "sequence_number": 98, "response": done})
    )
    return out


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # leave the test runner's signals alone
        yield


class FakeServer:
    """The fake served over real TCP by uvicorn inside the caller's event loop."""

    def __init__(self, provider: FakeProvider | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.provider = provider or FakeProvider()
        self.host = host
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, small SSE writes wait on delayed ACKs.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> FakeServer:
        config = uvicorn.Config(self.provider, log_level="error", access_log=False, lifespan="off")
        self._server = _QuietServer(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._sock.close()


def main() -> None:  # pragma: no cover - used by the benchmark
    parser = argparse.ArgumentParser(description="fake Anthropic/OpenAI upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--close", action="store_true", help="close the connection after each response")
    args = parser.parse_args()
    provider = FakeProvider()
    provider.keep_seen = False
    provider.close_connections = args.close
    provider.default = Reply(chunks=args.chunks, chunk_delay=args.chunk_delay)

    async def run() -> None:
        async with FakeServer(provider, args.host, args.port) as server:
            print(server.url, flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":  # pragma: no cover
    main()
