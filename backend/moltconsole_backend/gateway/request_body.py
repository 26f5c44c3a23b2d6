"""Reading the agent's request body: what the gateway needs to know of it, and never on its loop.

The gateway reads a few facts from each body (the model, whether it streams, OpenAI's
``stream_options``, what triggered it, roughly how many prompt tokens it carries) and sometimes
rewrites it (a fallback model, ``include_usage``). Decoding JSON holds the GIL for as long as it
takes, and a hostile 32 MiB body of ``[],[],...`` takes seconds: on the gateway's event loop
that would stall every other agent's stream. So small bodies (``INLINE_BYTES``) are decoded in
place, where that costs well under a millisecond even for the worst shapes that fit, and larger
ones in a worker process (``BodyReader``), which has a GIL of its own.

Pathological bodies are refused with a clear 400: nesting deeper than Python's recursion limit,
or decoding longer than ``PARSE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import multiprocessing
from dataclasses import dataclass
from typing import Any

from . import usage as usage_mod
from .records import Api, Trigger
from .trigger import classify_trigger

log = logging.getLogger(__name__)

INLINE_BYTES = 64 * 1024  # decoded on the event loop up to this size (worst shape: ~5 ms)
PARSE_TIMEOUT = 20.0
WORKERS = 2
IMAGE_TOKENS = 1_600  # what one image costs as input, about (Anthropic: ~1.15 MP image)


class BadRequest(Exception):
    """The body cannot be served; the message says why, for the agent."""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the gateway reads from one request body."""

    model: str
    stream: bool
    include_usage: bool  # OpenAI Chat: stream_options.include_usage was asked for
    trigger: Trigger
    input_estimate: int  # prompt tokens, roughly: for a ledger row whose usage never came


def read_request(api: Api, raw: bytes) -> tuple[RequestFacts, dict[str, Any]]:
    """Decode and check a body: its facts and the decoded object. Raises BadRequest."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest("the request body nests too deeply to be read") from None
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = usage_mod.request_model(api, body)
    if not model:
        raise BadRequest("the request names no model")
    options = body.get("stream_options")
    try:
        trigger = classify_trigger(api, body)
    except Exception:  # a heuristic must never refuse a request
        trigger = "unknown"
    facts = RequestFacts(
        model=model,
        stream=usage_mod.wants_stream(api, body),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        trigger=trigger,
        input_estimate=estimate_input_tokens(body),
    )
    return facts, body


def rewrite_request(body: dict[str, Any], model: str | None, include_usage: bool) -> bytes:
    """The body with another model and/or ``stream_options.include_usage`` set, compact JSON."""
    if model is not None:
        body = {**body, "model": model}
    if include_usage:
        options = body.get("stream_options")
        body = {
            **body,
            "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
        }
    return json.dumps(body, separators=(",", ":")).encode()


def estimate_input_tokens(body: Any) -> int:
    """Prompt tokens, roughly: characters of text over four, plus a flat cost per image.

    Only used when a provider's usage never arrives; base64 payloads count as images, not text.
    """
    chars = 0
    images = 0
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str) and (key == "data" or value.startswith("data:")):
                    images += 1  # an inline image or document: base64, not prompt text
                elif key != "model":
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return -(-chars // usage_mod.CHARS_PER_TOKEN) + images * IMAGE_TOKENS


def _read_in_worker(api: Api, raw: bytes) -> RequestFacts:
    return read_request(api, raw)[0]


def _rewrite_in_worker(api: Api, raw: bytes, model: str | None, include_usage: bool) -> bytes:
    _facts, body = read_request(api, raw)
    return rewrite_request(body, model, include_usage)


class BodyReader:
    """Reads request bodies: small ones in place, large ones in worker processes."""

    def __init__(self, inline_bytes: int = INLINE_BYTES, timeout: float = PARSE_TIMEOUT) -> None:
        self.inline_bytes = inline_bytes
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the backend has threads, and a forked child would inherit their locks.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def read(self, api: Api, raw: bytes) -> ParsedBody:
        """The body's facts. Raises BadRequest."""
        if len(raw) <= self.inline_bytes:
            facts, body = read_request(api, raw)
            return ParsedBody(facts, raw, body, self)
        offloaded: RequestFacts = await self._offload(_read_in_worker, api, raw)
        return ParsedBody(offloaded, raw, None, self)

    async def _offload(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._executor()
            future = loop.run_in_executor(pool, fn, *args)
            try:
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                # A worker stuck on one body: replace the pool so the next bodies are not queued behind it.
                self._discard(pool)
                raise BadRequest(
                    f"the request body took over {self.timeout:.0f} s to read; it is refused"
                ) from None
            except concurrent.futures.process.BrokenProcessPool:
                self._discard(pool)
                if attempt == 2:
                    raise BadRequest(
                        "the request body could not be read (the reader process failed)"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # a worker stuck in json.loads never finishes on its own
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._discard(self._pool)


class ParsedBody:
    """One request's body: its raw bytes, its facts, and a way to get a rewritten copy."""

    __slots__ = ("_body", "_reader", "facts", "raw")

    def __init__(
        self, facts: RequestFacts, raw: bytes, body: dict[str, Any] | None, reader: BodyReader
    ) -> None:
        self.facts = facts
        self.raw = raw
        self._body = body
        self._reader = reader

    async def payload(self, api: Api, model: str) -> bytes:
        """What goes upstream for ``model``: the raw body unless something must change."""
        facts = self.facts
        new_model = model if model != facts.model else None
        include_usage = api == "openai-chat" and facts.stream and not facts.include_usage
        if new_model is None and not include_usage:
            return self.raw
        if self._body is not None:
            return rewrite_request(self._body, new_model, include_usage)
        result: bytes = await self._reader._offload(
            _rewrite_in_worker, api, self.raw, new_model, include_usage
        )
        return result
