"""A fake Cloudflare API that serves one AI Gateway's request logs over real HTTP.

It speaks the wire format of ``GET /client/v4/accounts/{account_id}/ai-gateway/gateways/
{gateway_id}/logs`` as Cloudflare's API reference describes it:

- ``Authorization: Bearer <token>``. A header that is missing or not a bearer token gets
  HTTP 400 with error 6003 ("Invalid request headers", chained 6111); a wrong token gets
  HTTP 403 with error 10000 ("Authentication error"), which is what Cloudflare answers.
- The v4 envelope ``{"success", "errors", "messages", "result", "result_info"}`` with
  ``result_info = {"page", "per_page", "count", "total_count"}``.
- Page-number pagination (``page`` from 1, ``per_page``) and ``order_by`` /
  ``order_by_direction``. Ties keep insertion order, as a stable sort does.
- Log entries with the fields of the reference's LogListResponse (``id``, ``created_at``,
  ``provider``, ``model``, ``path``, ``tokens_in``, ``tokens_out``, ``cost``, ...).

Choices of this fake that the reference does not pin down: ``per_page`` defaults to 20 and
above ``max_per_page`` (50, the cap Cloudflare's own MCP server applies) is refused with a
400; an unknown account or gateway answers 404.

The server runs uvicorn in a thread of its own on a loopback port that is bound and listening
before the thread starts, so a client may connect at once. Faults are injected with
``fail_next`` (e.g. a 429 with Retry-After, a 500, an HTML page) and new log rows can be added
at any time, including from ``after_page`` between two pages of one import.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LOG_FIELDS_SORTABLE = ("created_at", "provider", "model", "model_type", "success", "cached")


def iso(moment: datetime) -> str:
    """Cloudflare's timestamp style: UTC, milliseconds, a trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Fault:
    """An answer served instead of the next page."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: a Cloudflare error envelope
    content_type: str = "application/json"


@dataclass
class ServedRequest:
    """What a client asked for and what it got."""

    params: dict[str, str]
    authorization: str | None
    status: int


class FakeCloudflare:
    """The fake API; use as a context manager, then point ``api_base`` at ``self.api_base``."""

    def __init__(
        self, *, account_id: str = "acc0123", gateway_id: str = "gw-test",
        token: str = "cf-test-token-0123456789", max_per_page: int = 50,
    ) -> None:
        self.account_id = account_id
        self.gateway_id = gateway_id
        self.token = token
        self.max_per_page = max_per_page
        self.requests: list[ServedRequest] = []
        # Called (in the server thread) after a page was built and before it is sent, with the
        # page number: the place to add rows "while the client is paging".
        self.after_page: Callable[[int], None] | None = None
        # Misbehaviours to test the client against: serve this many rows a page whatever was
        # asked (reported in result_info.per_page), and answer every page with page 1.
        self.serve_per_page: int | None = None
        self.ignore_page = False
        self._logs: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._clock = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
        self._serial = itertools.count(1)
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        assert self._sock is not None, "start the fake first"
        port = self._sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/client/v4"

    def start(self) -> FakeCloudflare:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        app = Starlette(routes=[Route(
            "/client/v4/accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs", self._list_logs,
        )])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="fake-cloudflare",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> FakeCloudflare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data --------------------------------------------------------------------------------

    def add_log(self, *, created_at: datetime | str | None = None, **fields: Any) -> dict[str, Any]:
        """Store one log entry; unspecified fields get plausible values. Returns the entry."""
        serial = next(self._serial)
        with self._lock:
            if created_at is None:
                self._clock += timedelta(milliseconds=250)
                created_at = self._clock
        entry: dict[str, Any] = {
            "id": f"01FAKE{serial:06d}{uuid.uuid4().hex[:14].upper()}",
            "cached": False,
            "created_at": created_at if isinstance(created_at, str) else iso(created_at),
            "duration": 800 + serial % 400,
            "model": "claude-sonnet-4-5",
            "path": "v1/messages",
            "provider": "anthropic",
            "success": True,
            "tokens_in": 1000 + serial,
            "tokens_out": 200 + serial % 50,
            "cost": None,
            "custom_cost": False,
            "metadata": None,
            "model_type": "chat",
            "request_content_type": "application/json",
            "request_type": "messages",
            "response_content_type": "application/json",
            "status_code": 200,
            "step": 0,
        }
        entry.update(fields)
        with self._lock:
            self._logs.append(entry)
        return entry

    def add_logs(self, count: int, **fields: Any) -> list[dict[str, Any]]:
        """Store ``count`` entries, each 250 ms after the previous (unless created_at is given)."""
        return [self.add_log(**fields) for _ in range(count)]

    @property
    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._logs)

    def fail_next(
        self, status: int, *, retry_after: str | None = None, times: int = 1,
        body: bytes | None = None, content_type: str = "application/json",
    ) -> None:
        """Answer the next ``times`` requests with ``status`` instead of a page."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._faults.extend(Fault(status, headers, body, content_type) for _ in range(times))

    # -- the endpoint ------------------------------------------------------------------------

    async def _list_logs(self, request: Request) -> Response:
        params = dict(request.query_params)
        authorization = request.headers.get("authorization")
        response = self._answer(request, params, authorization)
        self.requests.append(ServedRequest(params, authorization, response.status_code))
        return response

    def _answer(self, request: Request, params: dict[str, str], authorization: str | None) -> Response:
        if authorization is None or not authorization.startswith("Bearer ") or " " in authorization[7:]:
            return _error(400, 6003, "Invalid request headers",
                          chain=[{"code": 6111, "message": "Invalid format for Authorization header"}])
        if authorization[7:] != self.token:
            return _error(403, 10000, "Authentication error")
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            if fault.body is None:
                return _error(fault.status, 10001 if fault.status >= 500 else 971,
                              "Internal error" if fault.status >= 500 else "Please wait and try again",
                              headers=fault.headers)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type=fault.content_type)
        if (request.path_params["account_id"] != self.account_id
                or request.path_params["gateway_id"] != self.gateway_id):
            return _error(404, 7003, "Could not route to the requested gateway: not found")
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("per_page", "20"))
        except ValueError:
            return _error(400, 7001, "page and per_page must be numbers")
        order_by = params.get("order_by", "created_at")
        direction = params.get("order_by_direction", "desc")
        if page < 1 or not 1 <= per_page <= self.max_per_page:
            return _error(400, 7001, f"per_page must be between 1 and {self.max_per_page}")
        if order_by not in LOG_FIELDS_SORTABLE or direction not in ("asc", "desc"):
            return _error(400, 7001, "invalid order_by or order_by_direction")
        with self._lock:
            # Stable sort: ties keep the order the rows arrived in, in either direction.
            ordered = sorted(self._logs, key=lambda e: _sort_key(e.get(order_by)),
                             reverse=direction == "desc")
        if self.serve_per_page is not None:
            per_page = self.serve_per_page
        if self.ignore_page:
            page = 1
        rows = ordered[(page - 1) * per_page : page * per_page]
        if self.after_page is not None:
            self.after_page(page)
        return JSONResponse({
            "success": True, "errors": [], "messages": [], "result": rows,
            "result_info": {"page": page, "per_page": per_page, "count": len(rows),
                            "total_count": len(ordered)},
        })


def _sort_key(value: Any) -> tuple[int, Any]:
    # created_at strings in one format sort like the instants they name.
    return (0, "") if value is None else (1, value)


def _error(
    status: int, code: int, message: str, *, chain: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if chain:
        error["error_chain"] = chain
    return JSONResponse({"success": False, "errors": [error], "messages": [], "result": None},
                        status_code=status, headers=headers)


def times_from(start: datetime, count: int, step_ms: int = 250) -> Iterator[datetime]:
    """``count`` instants ``step_ms`` apart from ``start``."""
    for i in range(count):
        yield start + timedelta(milliseconds=step_ms * i)
