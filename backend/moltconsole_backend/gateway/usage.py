"""Reading a copy of a provider's response as it streams past: tokens, model, ending, errors.

The proxy hands every chunk it relays to ``UsageParser.feed`` and asks for ``result`` at the end.
Chunks may split anywhere (mid-line, mid-UTF-8 character, between ``\\r`` and ``\\n``). Streams are
Server-Sent Events: lines end with CRLF, LF or CR; ``data:`` lines of one event are joined with
``\\n``; ``:`` lines are comments; a blank line ends the event.

Only events that can carry usage, the model or an error are decoded as JSON, so the cost per
content delta is a few byte comparisons:

* Anthropic Messages: ``message_start`` (model, prompt-side usage), ``message_delta`` (usage so
  far: output tokens and possibly updated input/cache counts; the latest value of each field
  wins, deltas are never summed), ``message_stop`` (finished) and ``error``.
* OpenAI Chat Completions: the first chunk (model), any chunk with a non-null ``usage`` (the
  ``stream_options.include_usage`` chunk) or ``error``; ``data: [DONE]`` ends the stream.
* OpenAI Responses: ``response.created`` / ``in_progress`` (model), ``response.completed`` /
  ``incomplete`` / ``failed`` (usage, end) and ``error``.

``Usage.input_tokens`` is always the uncached part of the prompt: OpenAI's prompt count minus its
cached and cache-written tokens. OpenAI cache writes (GPT-5.6 and later) are recorded as
``cache_write_5m_tokens``, the short-retention write bucket.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from moltconsole_shared.wire.records import Api, Usage, UsageSource

# What went wrong, as the ledger and the Costs screen group it.
ErrorKind = Literal[
    "rate_limit",
    "overloaded",
    "auth",
    "quota",
    "invalid_request",
    "not_found",
    "timeout",
    "server",
    "connect",
]

MAX_ERROR_MESSAGE = 300
MAX_BODY_BYTES = 64 * 1024 * 1024  # a non-streamed response longer than this is not parsed
MAX_LINE_BYTES = 8 * 1024 * 1024  # an SSE line longer than this is dropped
# Estimates, used only when a provider's usage report never arrived: English text averages about
# four characters a token in Anthropic's and OpenAI's tokenizers.
CHARS_PER_TOKEN = 4
JSON_ENVELOPE_BYTES = 400

_SECRET_RE = re.compile(r"\b(?:sk|key|pk|rk)-[A-Za-z0-9_\-*.]{6,}|\bBearer\s+\S+", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_TYPE_RE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,80})"')


@dataclass(slots=True)
class ParsedResponse:
    """What the parser read: usage (with its source), the model, how it ended, any error."""

    usage: Usage
    model: str | None = None  # the model the provider says served the request
    finished: bool = False  # the provider's own end marker arrived (or the full JSON body)
    stop_reason: str | None = None
    error_kind: str | None = None  # an ErrorKind
    error_type: str | None = None  # the provider's own error type, e.g. "overloaded_error"
    error_message: str | None = None  # short, cleaned, secrets masked


class UsageParser(Protocol):
    """An incremental reader of one response body."""

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body, exactly as relayed."""

    def result(self, complete: bool) -> ParsedResponse:
        """What was read. ``complete``: the body reached its end (no disconnect, no cut)."""

    def estimate(self, input_tokens: int) -> Usage:
        """Usage guessed from what was relayed, when the provider's own report never came.

        ``input_tokens`` is the request side's estimate; a prompt count the provider already
        reported (Anthropic's ``message_start``) wins over it. Call after ``result``.
        """


# --- errors ---------------------------------------------------------------------------------

_TYPE_KINDS: tuple[tuple[str, ErrorKind], ...] = (
    ("overloaded", "overloaded"),
    ("rate_limit", "rate_limit"),
    ("too_many_requests", "rate_limit"),
    ("insufficient_quota", "quota"),
    ("quota", "quota"),
    ("billing", "quota"),
    ("authentication", "auth"),
    ("invalid_api_key", "auth"),
    ("permission", "auth"),
    ("unauthorized", "auth"),
    ("not_found", "not_found"),
    ("timeout", "timeout"),
    ("timed_out", "timeout"),
    ("invalid_request", "invalid_request"),
    ("context_length", "invalid_request"),
    ("too_large", "invalid_request"),
    ("invalid_prompt", "invalid_request"),
    ("api_error", "server"),
    ("server_error", "server"),
    ("internal", "server"),
)


def kind_for_type(error_type: str | None) -> ErrorKind | None:
    """The error kind a provider's error type or code names, if it names one."""
    if not error_type:
        return None
    lowered = error_type.lower()
    for needle, kind in _TYPE_KINDS:
        if needle in lowered:
            return kind
    return None


def kind_for_status(status: int) -> ErrorKind:
    """The error kind an HTTP status means when the body does not say more."""
    if status in (401, 403):
        return "auth"
    if status == 402:
        return "quota"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limit"
    if status == 529:
        return "overloaded"
    if status in (408, 504, 524):
        return "timeout"
    if 400 <= status < 500:
        return "invalid_request"
    return "server"


def clean_message(message: Any) -> str:
    """A provider's error message made safe to store and show: one line, short, keys masked."""
    text = message if isinstance(message, str) else ("" if message is None else str(message))
    text = _CONTROL_RE.sub(" ", text).strip()
    text = _SECRET_RE.sub("***", text)
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 1] + "…"
    return text


def _error_fields(obj: Any) -> tuple[str | None, str]:
    """(provider type or code, message) from ``{"error": {...}}`` or ``{"type": "error", ...}``."""
    if not isinstance(obj, dict):
        return None, ""
    err = obj.get("error", obj)
    if isinstance(err, str):
        return None, err
    if not isinstance(err, dict):
        return None, ""
    etype = err.get("type")
    etype = etype if isinstance(etype, str) and etype not in ("", "error") else None
    code = err.get("code")
    code = code if isinstance(code, str) and code else None
    # OpenAI's type is often generic ("invalid_request_error", "tokens") while its code says what
    # happened ("invalid_api_key", "rate_limit_exceeded"): prefer the code when it is telling.
    if (
        code
        and kind_for_type(code)
        and (etype is None or etype == "invalid_request_error" or kind_for_type(etype) is None)
    ):
        name: str | None = code
    else:
        name = etype or code
    message = err.get("message")
    return name, message if isinstance(message, str) else ""


def error_kind_for(status: int, body: bytes | str | None) -> tuple[str, str]:
    """Map an HTTP error status and its body to (kind, short message)."""
    raw = body.encode("utf-8", "replace") if isinstance(body, str) else (body or b"")
    name: str | None = None
    message = ""
    if raw:
        try:
            name, message = _error_fields(json.loads(raw[:MAX_BODY_BYTES]))
        except (ValueError, RecursionError):
            message = raw[:MAX_ERROR_MESSAGE].decode("utf-8", "replace")
    kind: ErrorKind = kind_for_type(name) or kind_for_status(status)
    if status == 503 and kind == "server" and "overload" in message.lower():
        kind = "overloaded"
    return kind, clean_message(message) or f"HTTP {status}"


# --- request side ---------------------------------------------------------------------------


def request_model(api: Api, body: dict[str, Any]) -> str:
    """The model the request asks for ("" when it names none)."""
    model = body.get("model")
    return model.strip() if isinstance(model, str) else ""


def wants_stream(api: Api, body: dict[str, Any]) -> bool:
    """Whether the request asks for a streamed (SSE) response."""
    return body.get("stream") is True


# --- the parsers ----------------------------------------------------------------------------


def _int(obj: Any, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, int(value))


def _has_value(data: bytes, key: bytes) -> bool:
    """Whether ``"key":`` occurs with a value other than null (cheap, no JSON decode).

    Inside a JSON string the quotes around a key-like text are escaped, so a match is a real key.
    """
    start = 0
    while True:
        at = data.find(key, start)
        if at < 0:
            return False
        i = at + len(key)
        n = len(data)
        while i < n and data[i] in b" \t\r\n":
            i += 1
        if i < n and data[i] == 0x3A:  # ':'
            i += 1
            while i < n and data[i] in b" \t\r\n":
                i += 1
            if i < n and data[i] != 0x6E:  # 'n' of null
                return True
        start = at + 1


class _Base:
    """Shared state of all parsers: the usage fields read so far and the error."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.finished = False
        self.stop_reason: str | None = None
        self.error_kind: str | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.seen_usage = False
        self.input = 0
        self.output = 0
        self.cache_read = 0
        self.write_5m = 0
        self.write_1h = 0
        self.reasoning = 0

    def _set_error(self, obj: Any, fallback: ErrorKind = "server") -> None:
        name, message = _error_fields(obj)
        self.error_type = name
        self.error_kind = kind_for_type(name) or fallback
        self.error_message = clean_message(message) or (name or "error")

    def _set_model(self, value: Any) -> None:
        if isinstance(value, str) and value:
            self.model = value

    def _relayed_output_tokens(self) -> int:
        return 0

    def estimate(self, input_tokens: int) -> Usage:
        """Usage guessed from what was relayed (see ``UsageParser.estimate``)."""
        reported_prompt = self.input + self.cache_read + self.write_5m + self.write_1h
        return Usage(
            input_tokens=self.input if reported_prompt else max(0, input_tokens),
            output_tokens=max(self.output, self._relayed_output_tokens()),
            cache_read_tokens=self.cache_read,
            cache_write_5m_tokens=self.write_5m,
            cache_write_1h_tokens=self.write_1h,
            reasoning_tokens=self.reasoning,
            source="estimated",
        )

    def _result(self, complete: bool) -> ParsedResponse:
        source: UsageSource
        if not self.seen_usage:
            source = "none"
        elif self.finished:
            source = "provider"
        else:
            source = "partial"
        usage = Usage(
            input_tokens=self.input,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_5m_tokens=self.write_5m,
            cache_write_1h_tokens=self.write_1h,
            reasoning_tokens=self.reasoning,
            source=source,
        )
        return ParsedResponse(
            usage=usage,
            model=self.model,
            finished=self.finished,
            stop_reason=self.stop_reason,
            error_kind=self.error_kind,
            error_type=self.error_type,
            error_message=self.error_message,
        )

    # Usage payloads of the three APIs.

    def _anthropic_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.seen_usage = True
        for key, attr in (
            ("input_tokens", "input"),
            ("output_tokens", "output"),
            ("cache_read_input_tokens", "cache_read"),
        ):
            value = _int(usage, key)
            if value is not None:
                setattr(self, attr, value)
        total = _int(usage, "cache_creation_input_tokens")
        split = usage.get("cache_creation")
        five = _int(split, "ephemeral_5m_input_tokens")
        hour = _int(split, "ephemeral_1h_input_tokens")
        if five is not None or hour is not None:
            self.write_5m, self.write_1h = five or 0, hour or 0
        if total is not None and total != self.write_5m + self.write_1h:
            # Writes without a split (older API versions) are billed at the 5-minute rate.
            if total >= self.write_1h:
                self.write_5m = total - self.write_1h
            else:
                self.write_5m, self.write_1h = total, 0

    def _openai_usage(
        self, usage: Any, prompt_key: str, output_key: str, details: str, out_details: str
    ) -> None:
        if not isinstance(usage, dict):
            return
        self.seen_usage = True
        prompt = _int(usage, prompt_key) or 0
        detail = usage.get(details)
        cached = _int(detail, "cached_tokens") or 0
        written = _int(detail, "cache_write_tokens") or 0
        self.cache_read = cached
        self.write_5m = written
        self.write_1h = 0
        self.input = max(0, prompt - cached - written)
        self.output = _int(usage, output_key) or 0
        self.reasoning = _int(usage.get(out_details), "reasoning_tokens") or 0


class _SSE(_Base):
    """Splits a byte stream into SSE events; subclasses say which events to decode."""

    wanted: frozenset[bytes] = frozenset()
    text_keys: tuple[bytes, ...] = ()  # where a content delta's text sits, for estimates

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []  # bytes of the unfinished line
        self._pending = 0
        self._event: bytes = b""
        self._want = True  # whether to keep the data lines of the current event
        self._data: list[bytes] = []
        self._skip_line = False  # the current line overflowed MAX_LINE_BYTES
        self._closed = False
        # The data lines not decoded (content deltas): how many carried text, and how much.
        self._text_lines = 0
        self._text_chars = 0

    def feed(self, chunk: bytes) -> None:
        if not chunk or self._closed:
            return
        if b"\n" not in chunk and b"\r" not in chunk:
            self._hold(chunk)
            return
        if self._parts:
            buf = b"".join(self._parts) + chunk
            self._parts.clear()
            self._pending = 0
        else:
            buf = chunk
        held = b""
        if buf.endswith(b"\r"):
            # It may be the first half of a CRLF: decide when the next byte comes.
            buf, held = buf[:-1], b"\r"
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        head, sep, tail = buf.rpartition(b"\n")
        if sep:
            skip = self._skip_line
            self._skip_line = False
            lines = head.split(b"\n")
            if skip:
                lines = lines[1:]
            for line in lines:
                self._line(line)
        if tail or held:
            self._hold(tail + held)

    def _hold(self, part: bytes) -> None:
        if self._skip_line:
            return
        self._pending += len(part)
        if self._pending > MAX_LINE_BYTES:
            self._parts.clear()
            self._pending = 0
            self._skip_line = True
            return
        self._parts.append(part)

    def _line(self, line: bytes) -> None:
        if not line:
            if self._data:
                data = b"\n".join(self._data)
                self._data = []
                self._dispatch(self._event, data)
            self._event = b""
            self._want = True
            return
        first = line[0]
        if first == 0x64 and line.startswith(b"data:"):  # 'd'
            if self._want:
                value = line[5:]
                self._data.append(value[1:] if value[:1] == b" " else value)
            else:
                self._skipped(line)
        elif first == 0x65 and line.startswith(b"event:"):  # 'e'
            name = line[6:].strip()
            self._event = name
            self._want = name in self.wanted
        # ':' comments, id:, retry: and unknown fields carry nothing we need.

    def _flush(self) -> None:
        if self._closed:
            return
        if self._parts and not self._skip_line:
            rest = b"".join(self._parts).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._parts.clear()
            for line in rest.split(b"\n"):
                self._line(line)
        self._line(b"")  # an event the stream did not end with a blank line still counts
        self._closed = True

    def result(self, complete: bool) -> ParsedResponse:
        self._flush()
        return self._result(complete)

    def _dispatch(self, event: bytes, data: bytes) -> None:
        raise NotImplementedError

    def _skipped(self, line: bytes) -> None:
        """Count the text a content delta carries (its JSON string, escapes included)."""
        for key in self.text_keys:
            at = line.find(key)
            if at < 0:
                continue
            start = at + len(key)
            end = line.find(b'"', start)
            while end >= 0:
                back = end
                while back > start and line[back - 1] == 0x5C:  # backslashes before the quote
                    back -= 1
                if (end - back) % 2 == 0:
                    break  # not escaped: the string ends here
                end = line.find(b'"', end + 1)
            if end < 0:
                end = len(line)
            self._text_lines += 1
            self._text_chars += end - start
            return

    def _relayed_output_tokens(self) -> int:
        if not self._text_lines:
            return 0
        return max(self._text_lines, -(-self._text_chars // CHARS_PER_TOKEN))

    @staticmethod
    def _json(data: bytes) -> Any:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None


SSEParser = _SSE  # what every streamed-response parser is


class AnthropicStreamParser(_SSE):
    """Anthropic Messages API, ``stream: true``."""

    wanted = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})
    text_keys = (b'"text":"', b'"partial_json":"', b'"thinking":"')

    def _dispatch(self, event: bytes, data: bytes) -> None:
        if not event:
            # A stream without event: lines; the type leads the data. Skip deltas unread.
            match = _TYPE_RE.search(data, 0, 200)
            if match is None or match.group(1) not in self.wanted:
                return
            event = match.group(1)
        if event == b"message_stop":
            self.finished = True
            return
        obj = self._json(data)
        if not isinstance(obj, dict):
            return
        if event == b"message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self._set_model(message.get("model"))
                self._anthropic_usage(message.get("usage"))
        elif event == b"message_delta":
            self._anthropic_usage(obj.get("usage"))
            delta = obj.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]
        elif event == b"error":
            self._set_error(obj)


class OpenAIChatStreamParser(_SSE):
    """OpenAI Chat Completions API, ``stream: true``."""

    wanted = frozenset({b"", b"error", b"message"})
    text_keys = (b'"content":"', b'"arguments":"', b'"reasoning_content":"', b'"refusal":"')

    def __init__(self) -> None:
        super().__init__()
        self._first_seen = False  # the first chunk is decoded for the model

    def _dispatch(self, event: bytes, data: bytes) -> None:
        if data == b"[DONE]" or data.strip() == b"[DONE]":
            self.finished = True
            return
        if event == b"error":
            self._set_error(self._json(data))
            return
        if self._first_seen and not _has_value(data, b'"usage"') and not _has_value(data, b'"error"'):
            self._skipped(data)  # a content chunk: only counted, for an estimate
            return
        self._first_seen = True
        obj = self._json(data)
        if not isinstance(obj, dict):
            return
        if obj.get("error") is not None:
            self._set_error(obj)
            return
        self._set_model(obj.get("model"))
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._openai_usage(
                usage,
                "prompt_tokens",
                "completion_tokens",
                "prompt_tokens_details",
                "completion_tokens_details",
            )
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.stop_reason = choice["finish_reason"]


class OpenAIResponsesStreamParser(_SSE):
    """OpenAI Responses API, ``stream: true``."""

    text_keys = (b'"delta":"',)
    wanted = frozenset(
        {
            b"response.created",
            b"response.in_progress",
            b"response.completed",
            b"response.incomplete",
            b"response.failed",
            b"error",
        }
    )

    def _dispatch(self, event: bytes, data: bytes) -> None:
        if not event:
            match = _TYPE_RE.search(data, 0, 200)
            if match is None or match.group(1) not in self.wanted:
                return
            event = match.group(1)
        obj = self._json(data)
        if not isinstance(obj, dict):
            return
        if event == b"error":
            self._set_error(obj)
            return
        response = obj.get("response")
        if not isinstance(response, dict):
            return
        self._set_model(response.get("model"))
        if event in (b"response.completed", b"response.incomplete", b"response.failed"):
            self.finished = True
            _read_response(self, response)


def _read_response(parser: _Base, response: dict[str, Any]) -> None:
    """Usage, status and error of a Responses API ``response`` object."""
    parser._set_model(response.get("model"))
    usage = response.get("usage")
    if isinstance(usage, dict):
        parser._openai_usage(
            usage, "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"
        )
    status = response.get("status")
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        parser.stop_reason = reason if isinstance(reason, str) else "incomplete"
    elif isinstance(status, str):
        parser.stop_reason = status
    if status == "failed" or isinstance(response.get("error"), dict):
        parser._set_error(response)


class _JSONBody(_Base):
    """A non-streamed response: buffered (up to MAX_BODY_BYTES) and decoded at the end."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._size = 0
        self._overflow = False
        self._done = False
        self._received = 0

    def _relayed_output_tokens(self) -> int:
        # A cut JSON body: its bytes beyond a typical envelope, at the usual characters a token.
        return max(0, self._received - JSON_ENVELOPE_BYTES) // CHARS_PER_TOKEN

    def feed(self, chunk: bytes) -> None:
        if not chunk or self._overflow:
            return
        self._size += len(chunk)
        self._received = self._size
        if self._size > MAX_BODY_BYTES:
            self._parts.clear()
            self._overflow = True
            return
        self._parts.append(chunk)

    def result(self, complete: bool) -> ParsedResponse:
        if not self._done:
            self._done = True
            try:
                obj = json.loads(b"".join(self._parts)) if self._parts else None
            except (ValueError, RecursionError):
                obj = None
            self._parts.clear()
            if isinstance(obj, dict):
                self._read(obj)
                self.finished = True  # the whole body arrived, or it would not decode
        return self._result(complete)

    def _read(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError


class AnthropicJSONParser(_JSONBody):
    """Anthropic Messages API, ``stream: false``."""

    def _read(self, obj: dict[str, Any]) -> None:
        if obj.get("type") == "error":
            self._set_error(obj)
            return
        self._set_model(obj.get("model"))
        self._anthropic_usage(obj.get("usage"))
        if isinstance(obj.get("stop_reason"), str):
            self.stop_reason = obj["stop_reason"]


class OpenAIChatJSONParser(_JSONBody):
    """OpenAI Chat Completions API, ``stream: false``."""

    def _read(self, obj: dict[str, Any]) -> None:
        if obj.get("error") is not None:
            self._set_error(obj)
            return
        self._set_model(obj.get("model"))
        self._openai_usage(
            obj.get("usage"),
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        )
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            reason = choices[0].get("finish_reason")
            self.stop_reason = reason if isinstance(reason, str) else None


class OpenAIResponsesJSONParser(_JSONBody):
    """OpenAI Responses API, ``stream: false``."""

    def _read(self, obj: dict[str, Any]) -> None:
        if isinstance(obj.get("error"), dict) and obj.get("object") != "response":
            self._set_error(obj)
            return
        _read_response(self, obj)


_PARSERS: dict[tuple[str, bool], type[_SSE] | type[_JSONBody]] = {
    ("anthropic-messages", True): AnthropicStreamParser,
    ("anthropic-messages", False): AnthropicJSONParser,
    ("openai-chat", True): OpenAIChatStreamParser,
    ("openai-chat", False): OpenAIChatJSONParser,
    ("openai-responses", True): OpenAIResponsesStreamParser,
    ("openai-responses", False): OpenAIResponsesJSONParser,
}


def parser_for(api: Api, stream: bool) -> UsageParser:
    """A fresh parser for one response of ``api``, streamed or not."""
    try:
        return _PARSERS[(api, stream)]()
    except KeyError:
        raise ValueError(f"no usage parser for API {api!r}") from None
