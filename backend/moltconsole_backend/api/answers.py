"""How every route answers: a message in its wire schema, or the one error body.

HTTP errors are ``{"error": {"kind", "message"}}`` with a 4xx/5xx status; a stream that cannot
go on sends the same body as its last message and closes (``moltconsole_shared.wire.errors``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from moltconsole_backend.sandbox.manager import OperationError
from moltconsole_shared.wire.errors import ErrorKind, error_body
from moltconsole_shared.wire.schema import WireSchema

log = logging.getLogger(__name__)
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


async def guarded(call: Callable[[], Awaitable[Response]]) -> Response:
    """``call``'s answer; an operation the sandbox refused is a 409, a bug a 500 that says where
    to look (the backend's log has the traceback)."""
    try:
        return await call()
    except OperationError as exc:
        return error("operation", str(exc), 409)
    except Exception as exc:  # a bug: still answer in JSON, and say where to look
        log.exception("request failed")
        return error("internal", f"internal error in the backend ({exc!r}); see the backend's log", 500)


async def answered(schema: WireSchema[T], result: Awaitable[T]) -> Response:
    """The answer to ``result``, once it is there."""
    return answer(schema, await result)


async def json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object ({} when it has no body), or the error answer to send."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return error("request", "the request body is not valid JSON", 400)
    if not isinstance(body, dict):
        return error("request", "the request body must be a JSON object", 400)
    return body
