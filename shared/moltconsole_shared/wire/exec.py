"""``WS /v1/sandboxes/NAME/exec``: a command run inside the sandbox.

The client sends ``{"cmd": [...]}``; the backend answers with binary frames, each one byte
naming the stream (``STDOUT`` or ``STDERR``) followed by the bytes as the command wrote them,
and last a JSON ``{"exit_code": N}`` (or the error body).
"""

from __future__ import annotations

STDOUT = 1
STDERR = 2


def frame(stream: int, data: bytes) -> bytes:
    """One output frame: the stream's byte, then ``data``."""
    return bytes((stream,)) + data
