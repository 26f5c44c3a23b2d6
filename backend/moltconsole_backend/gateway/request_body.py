"""Reading the agent's request body: what the gateway needs to know of it, and never on its loop.

The gateway reads a few facts from each body before sending it on (the model, whether it
streams, OpenAI's ``stream_options``) and sometimes rewrites it (a fallback model,
``include_usage``). What only the ledger row needs (what triggered the request, roughly how many
prompt tokens it carries) is read from a small body once the response has gone to the agent, and
the estimate only if the provider's usage never came: on an 80 KB prompt the estimate's walk
costs as much as decoding the JSON and the trigger a third of that, time the agent would
otherwise wait for its first byte.

Decoding JSON holds the GIL for as long as it takes, and a hostile 32 MiB body of ``[],[],...``
takes seconds: on the gateway's event loop that would stall every other agent's stream. So
small bodies (``INLINE_BYTES``) are decoded in place, where that costs well under a millisecond
even for the worst shapes that fit, and larger ones in a worker process (``BodyReader``), which
has a GIL of its own (and reads the ledger row's facts at the same time).

Pathological bodies are refused with a clear 400: nesting deeper than Python's recursion limit,
or decoding longer than ``PARSE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import sys
from dataclasses import dataclass
from typing import Any

from moltconsole_shared.wire.records import Api, Trigger

from . import usage as usage_mod
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
    """What the gateway reads from one request body before sending it on."""

    model: str
    stream: bool
    include_usage: bool  # OpenAI Chat: stream_options.include_usage was asked for


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What only the ledger row needs from a body (read by a worker along with its facts)."""

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
    facts = RequestFacts(
        model=model,
        stream=usage_mod.wants_stream(api, body),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
    )
    return facts, body


def request_trigger(api: Api, body: dict[str, Any]) -> Trigger:
    """Why the request was made (``classify_trigger``), "unknown" if the heuristic fails."""
    try:
        return classify_trigger(api, body)
    except Exception:  # a heuristic must never refuse a request
        return "unknown"


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


PROMPT_FIELDS = ("system", "messages", "tools", "input", "instructions", "tool_choice")
MAX_WALK = 200_000  # values looked at for an estimate; the rest is estimated from its size


def estimate_input_tokens(body: dict[str, Any], raw_size: int = 0) -> int:
    """Prompt tokens, roughly: characters of text over four, plus a flat cost per image.

    Only used when a provider's usage never arrives. Base64 payloads count as images, not text.
    Only the prompt's fields are walked, and at most ``MAX_WALK`` values of them; past that the
    rest of the body counts by its size.
    """
    chars = 0
    images = 0
    stack: list[Any] = [body.get(name) for name in PROMPT_FIELDS if name in body]
    walked = 0
    while stack and walked < MAX_WALK:
        item = stack.pop()
        walked += 1
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str) and (key == "data" or value.startswith("data:")):
                    images += 1  # an inline image or document: base64, not prompt text
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    if stack:
        chars = max(chars, raw_size)
    return -(-chars // usage_mod.CHARS_PER_TOKEN) + images * IMAGE_TOKENS


class BodyReader:
    """Reads request bodies: small ones in place, large ones in worker processes.

    A worker is ``python -m moltconsole_backend.gateway.body_worker``, started on first need and
    kept; each takes one body at a time over its stdin and answers on its stdout (length-prefixed
    pickles, between this process and its own child only). A worker that takes longer than
    ``timeout`` is killed, and the body refused.
    """

    def __init__(self, inline_bytes: int = INLINE_BYTES, timeout: float = PARSE_TIMEOUT) -> None:
        self.inline_bytes = inline_bytes
        self.timeout = timeout
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None

    async def read(self, api: Api, raw: bytes) -> ParsedBody:
        """The body's facts. Raises BadRequest."""
        if len(raw) <= self.inline_bytes:
            facts, body = read_request(api, raw)
            return ParsedBody(api, facts, raw, body, self)
        offloaded: tuple[RequestFacts, RecordFacts] = await self._offload("read", api, raw, None, False)
        return ParsedBody(api, offloaded[0], raw, None, self, offloaded[1])

    async def _offload(self, op: str, api: Api, raw: bytes, model: str | None, include_usage: bool) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(WORKERS)
        async with self._slots:
            worker = self._idle.pop() if self._idle else None
            if worker is None or worker.dead:
                worker = await _Worker.start()
                self._all.add(worker)
            try:
                status, value = await asyncio.wait_for(
                    worker.call((op, api, raw, model, include_usage)), self.timeout
                )
            except TimeoutError:
                worker.kill()  # stuck in json.loads: it would never take another body
                self._all.discard(worker)
                raise BadRequest(
                    f"the request body took over {self.timeout:.0f} s to read; it is refused"
                ) from None
            except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError):
                worker.kill()
                self._all.discard(worker)
                raise BadRequest("the request body could not be read (the reader process failed)") from None
            self._idle.append(worker)
        if status == "bad":
            raise BadRequest(str(value))
        return value

    def close(self) -> None:
        """Stop the worker processes."""
        for worker in self._all:
            worker.kill()
        self._all.clear()
        self._idle.clear()


class _Worker:
    """One body-reading child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.dead = False

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "moltconsole_backend.gateway.body_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def call(self, message: tuple[Any, ...]) -> tuple[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        stdin.write(len(data).to_bytes(8, "big") + data)
        await stdin.drain()
        size = int.from_bytes(await stdout.readexactly(8), "big")
        answer: tuple[str, Any] = pickle.loads(await stdout.readexactly(size))  # noqa: S301 - our own child
        return answer

    def kill(self) -> None:
        self.dead = True
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


def serve_worker(stdin: Any, stdout: Any) -> None:
    """The worker's loop: read a body, answer its facts (or its rewrite), until stdin closes."""
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return
        op, api, raw, model, include_usage = pickle.loads(stdin.read(int.from_bytes(head, "big")))  # noqa: S301
        try:
            facts, body = read_request(api, raw)
            if op == "read":  # the worker has the time: the row's facts too, off the gateway's loop
                record = RecordFacts(request_trigger(api, body), estimate_input_tokens(body, len(raw)))
                value: Any = (facts, record)
            else:
                value = rewrite_request(body, model, include_usage)
            answer: tuple[str, Any] = ("ok", value)
        except BadRequest as exc:
            answer = ("bad", str(exc))
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(len(data).to_bytes(8, "big") + data)
        stdout.flush()


class ParsedBody:
    """One request's body: its raw bytes, its facts, and a way to get a rewritten copy.

    ``trigger`` and ``input_estimate`` are read from a body decoded here only when first asked
    for (after the response has started; the estimate only when the usage never came); a
    worker's read brings them along.
    """

    __slots__ = ("_api", "_body", "_estimate", "_reader", "_trigger", "facts", "raw")

    def __init__(
        self,
        api: Api,
        facts: RequestFacts,
        raw: bytes,
        body: dict[str, Any] | None,
        reader: BodyReader,
        record: RecordFacts | None = None,
    ) -> None:
        self._api = api
        self.facts = facts
        self.raw = raw
        self._body = body
        self._reader = reader
        self._trigger: Trigger | None = record.trigger if record else None
        self._estimate: int | None = record.input_estimate if record else None

    def trigger(self) -> Trigger:
        """Why the request was made, for its ledger row."""
        if self._trigger is None:
            self._trigger = request_trigger(self._api, self._body) if self._body is not None else "unknown"
        return self._trigger

    def input_estimate(self) -> int:
        """Prompt tokens, roughly, for a ledger row whose usage never came."""
        if self._estimate is None:
            body = self._body
            self._estimate = estimate_input_tokens(body, len(self.raw)) if body is not None else 0
        return self._estimate

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
            "rewrite", api, self.raw, new_model, include_usage
        )
        return result
