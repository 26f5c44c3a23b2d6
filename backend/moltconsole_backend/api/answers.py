"""How every route answers: a message in its wire schema, or the one error body.

HTTP errors are ``{"error": {"kind", "message"}}`` with a 4xx/5xx status; a stream that cannot
go on sends the same body as its last message and closes (``moltconsole_shared.wire.errors``).
"""

from __future__ import annotations

import contextlib
from typing import TypeVar

from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from moltconsole_shared.wire.errors import ErrorKind, error_body
from moltconsole_shared.wire.schema import WireSchema

T = TypeVar("T")


def answer(schema: WireSchema[T], value: T, status: int = 200) -> Response:
    """``value`` as its wire schema writes it (encoded in one pass, no dict in between)."""
    return Response(schema.dump_json(value), status_code=status, media_type="application/json")


def error(kind: ErrorKind, message: str, status: int) -> JSONResponse:
    """The error body with its HTTP status; ``message`` says what happened and what to do."""
    return JSONResponse(error_body(kind, message), status_code=status)


async def refuse(ws: WebSocket, kind: ErrorKind, message: str) -> None:
    """End a stream with the error body as its last message (the client may be gone already)."""
    with contextlib.suppress(Exception):
        await ws.send_json(error_body(kind, message))
    with contextlib.suppress(Exception):
        await ws.close()
