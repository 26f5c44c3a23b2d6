"""Keeping the provider keys out of everything relayed to the agent.

A provider (or a proxy in front of one) may echo the request's headers back: in an error body,
in a response header, even in a streamed answer. The agent must never see the real key, so every
configured secret is replaced by ``[redacted by moltconsole]`` in what the gateway relays.

A streamed body is redacted as it passes without holding it back: a chunk goes out at once
unless it ends with the first bytes of a secret, and only those bytes wait for the next chunk.
An SSE event ends with a blank line, which no key starts with, so in practice nothing waits.
"""

from __future__ import annotations

from collections.abc import Iterable

MARK = b"[redacted by moltconsole]"
MIN_SECRET = 8  # shorter values are not treated as secrets (they would match ordinary text)


class Redactor:
    """Replaces known secrets in bytes, whole or streamed."""

    __slots__ = ("_alphabet", "_held", "_longest", "_secrets")

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        found = {s.encode() if isinstance(s, str) else s for s in secrets}
        self._secrets = sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)
        self._longest = len(self._secrets[0]) if self._secrets else 0
        self._alphabet = frozenset(b for s in self._secrets for b in s)  # bytes a secret can end a chunk with
        self._held = b""

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def fresh(self) -> Redactor:
        """A redactor for another stream: the same secrets, nothing held (nothing recomputed)."""
        other = Redactor.__new__(Redactor)
        other._secrets, other._longest, other._alphabet = self._secrets, self._longest, self._alphabet
        other._held = b""
        return other

    def clean(self, data: bytes) -> bytes:
        """``data`` with every secret replaced."""
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, MARK)
        return data

    def clean_text(self, text: str) -> str:
        """A header value or message with every secret replaced."""
        return self.clean(text.encode("latin-1", "replace")).decode("latin-1")

    def feed(self, chunk: bytes) -> bytes:
        """The part of a stream that can go out now (a possible start of a secret waits)."""
        data = self._held + chunk if self._held else chunk
        data = self.clean(data)
        keep = self._partial_tail(data)
        if keep:
            self._held = data[-keep:]
            return data[:-keep]
        self._held = b""
        return data

    def flush(self) -> bytes:
        """What was held back, at the end of the stream."""
        held, self._held = self._held, b""
        return held

    def _partial_tail(self, data: bytes) -> int:
        """The length of the longest end of ``data`` that begins some secret (0 if none)."""
        n = len(data)
        if not n or data[-1] not in self._alphabet:
            return 0  # e.g. an SSE event's blank line: no secret contains a newline
        window = min(n, self._longest - 1)
        best = 0
        for secret in self._secrets:
            first = secret[:1]
            limit = min(window, len(secret) - 1)
            at = data.find(first, n - limit) if limit > 0 else -1
            while at >= 0:
                tail = n - at
                if tail > best and secret.startswith(data[at:]):
                    best = tail
                    break
                at = data.find(first, at + 1)
        return best
