"""The backend's error body, the same on HTTP and on every WebSocket stream::

    {"error": {"kind": "request", "message": "limit must be from 1 to 1000, not 0"}}

``kind`` says whose move it is: ``request`` (the caller sent something the API cannot use: a
4xx), ``not_found`` (404), ``operation`` (the sandbox cannot do it now: 409, or the stream
ends), ``internal`` (a backend bug: 500, the backend's log has the rest). ``message`` is one
sentence for people that says what happened and what to do; it never holds a secret.

The backend builds every error with :func:`error_body`; the console reads it with
:func:`read_error`, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import StrictStr

from moltconsole_shared.wire.schema import WireFormatError, WireSchema

ErrorKind = Literal["request", "not_found", "operation", "internal"]


@dataclass(frozen=True, slots=True)
class BackendErrorDetail:
    """What went wrong (``kind``, see the module) and what to do about it (``message``).

    ``kind`` is read as any string: a newer backend may name kinds this console does not know.
    """

    kind: StrictStr
    message: StrictStr


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The whole body: an object whose one member is ``error``."""

    error: BackendErrorDetail


ERROR_BODY: WireSchema[ErrorBody] = WireSchema(ErrorBody, "error body")


def error_body(kind: ErrorKind, message: str) -> dict[str, Any]:
    """The error body as JSON-ready data (for an HTTP answer or a stream message)."""
    return {"error": {"kind": kind, "message": message}}


def read_error(data: Any) -> BackendErrorDetail | None:
    """The backend's error in ``data`` (a decoded body or stream message), or None when
    ``data`` is no error body, or one without a kind and a message as strings."""
    if not isinstance(data, dict) or "error" not in data:
        return None
    try:
        return ERROR_BODY.read(data).error
    except WireFormatError:
        return None
