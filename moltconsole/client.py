"""The one way the console and the CLI talk to the backend: HTTP and WebSocket on a unix socket."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus, WebSocketException
from websockets.frames import CloseCode

from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire import exec as exec_wire
from moltconsole_shared.wire.backend import HEALTH, KEYS_REPORT, PROCESS_TABLE
from moltconsole_shared.wire.devices import DEVICE_LIST
from moltconsole_shared.wire.errors import read_error
from moltconsole_shared.wire.logs import LOG_QUERY, LogQuery
from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.records_json import RECORD, REQUESTS_PAGE, TAIL_BATCH
from moltconsole_shared.wire.reports import (
    DAYS,
    MODELS,
    SERIES,
    SUMMARY,
    DayUsage,
    ModelUsage,
    SeriesPoint,
    Summary,
)
from moltconsole_shared.wire.sandbox import EVENT_STREAM, EVENT_TYPES, SANDBOX_STATUS, STATS_SAMPLE
from moltconsole_shared.wire.sandboxes import (
    CREATE_REQUEST,
    SANDBOX_LIST,
    SANDBOX_SUMMARY,
    CreateRequest,
    SandboxList,
    SandboxSummary,
)
from moltconsole_shared.wire.schema import WireFormatError, WireSchema

if TYPE_CHECKING:
    from moltconsole.memory_client import MemoryClient

T = TypeVar("T")
EXEC_STDOUT = exec_wire.STDOUT
EXEC_STDERR = exec_wire.STDERR
# The default sandbox's resources at their first paths (operations and processes: /v1/sandbox/X).
_DEFAULT_PATHS = {
    "status": "/v1/status", "events": "/v1/events", "stats": "/v1/stats", "logs": "/v1/logs",
    "exec": "/v1/exec", "devices": "/v1/devices", "memory": "/v1/memory",
}


class BackendError(Exception):
    """The backend refused a request; ``kind`` is its error kind, the message is for the user."""

    def __init__(self, message: str, kind: str = "backend", status: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class BackendUnreachable(BackendError):
    """No backend answers on the socket."""


class BackendWentAway(BackendUnreachable):
    """A backend answered, then the connection broke (it crashed, was killed or shut down)."""


class BackendClient:
    """An async client for the backend API.

    ``sandbox`` is the sandbox the per-sandbox calls address (status, operations, events,
    stats, logs, devices, exec); None addresses the backend's default sandbox. It may be
    changed between calls (the console's sandbox picker does); streams already open keep
    the sandbox they were opened on.
    """

    def __init__(
        self, socket_path: Path, *, timeout: float | None = 30.0, sandbox: str | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.sandbox = sandbox
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://moltconsole",
            timeout=httpx.Timeout(timeout),
        )

    async def __aenter__(self) -> BackendClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def _unreachable(self, exc: BaseException) -> BackendUnreachable:
        return BackendUnreachable(
            f"no moltconsole backend answers on {self.socket_path} ({_describe(exc)}). "
            "Start one with 'moltconsole serve' (or just run 'moltconsole')."
        )

    def _went_away(self, what: str, exc: BaseException) -> BackendWentAway:
        return BackendWentAway(
            f"the moltconsole backend on {self.socket_path} went away during {what} "
            f"({_describe(exc)}); it may have crashed or been stopped. Its log says why; "
            "start it again with 'moltconsole serve' (or just run 'moltconsole')."
        )

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        timeout: float | object | None = httpx.USE_CLIENT_DEFAULT, params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """One request answered in JSON; ``timeout=None`` waits as long as the operation takes
        (builds)."""
        response = await self._send(method, path, body, timeout, params, content)
        try:
            data = response.json() if response.content else {}
        except ValueError:
            raise BackendError(
                f"the backend answered {method} {path} with HTTP {response.status_code} and a body "
                f"that is not JSON: {sanitize(response.text[:200])!r}. This is a backend bug; "
                "its log says more.",
                "backend", response.status_code,
            ) from None
        if response.status_code >= 400:
            raise self._backend_error(f"{method} {path}", data, response.status_code, response.text)
        return data

    async def _bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """A GET answered with raw bytes (a file's content); an error is the usual error body."""
        response = await self._send("GET", path, None, httpx.USE_CLIENT_DEFAULT, params, None)
        if response.status_code >= 400:
            try:
                data = response.json()
            except ValueError:
                data = None
            raise self._backend_error(f"GET {path}", data, response.status_code, response.text)
        return response.content

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float | object | None,
        params: dict[str, Any] | None, content: bytes | None,
    ) -> httpx.Response:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            return await self._http.request(
                method, path, json=body, timeout=timeout, params=clean or None,  # type: ignore[arg-type]
                content=content,
            )
        except httpx.TimeoutException:
            raise BackendError(
                f"the backend did not answer {method} {path} in time; it may be busy. "
                "Try again, or look at its log."
            ) from None
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from None
        except httpx.TransportError as exc:
            # Connected, then the connection broke (ReadError, RemoteProtocolError, ...).
            raise self._went_away(f"{method} {path}", exc) from None
        except OSError as exc:
            raise self._unreachable(exc) from None

    @staticmethod
    def _backend_error(what: str, data: Any, status: int = 0, text: str = "") -> BackendError:
        """The backend's own error body (``moltconsole_shared.wire.errors``), from an HTTP answer
        with ``status`` or a stream, as a BackendError of its kind; anything else in its place
        says what came."""
        detail = read_error(data)
        if detail is not None:
            return BackendError(detail.message, detail.kind, status)
        if status:
            return BackendError(
                f"the backend answered {what} with HTTP {status}: {sanitize(text[:200])}", "backend", status
            )
        said = data.get("error") if isinstance(data, dict) else data
        return BackendError(
            f"the backend ended {what} with an error it did not explain "
            f"({sanitize(str(said)[:200])!r}); its log says more."
        )

    @staticmethod
    def _read(schema: WireSchema[T], what: str, data: Any) -> T:
        """``data`` checked against its wire schema; a message that does not fit is a BackendError."""
        try:
            return schema.read(data)
        except WireFormatError as exc:
            raise BackendError(
                f"the backend sent {what} this console cannot read ({exc}); the backend and the "
                "console may be different versions. Restart the backend."
            ) from None

    def _at(self, resource: str) -> str:
        """The path of one of the selected sandbox's resources (``status``, ``start``, ``logs``)."""
        from urllib.parse import quote

        if self.sandbox is None:
            return _DEFAULT_PATHS.get(resource) or f"/v1/sandbox/{resource}"
        return f"/v1/sandboxes/{quote(self.sandbox, safe='')}/{resource}"

    @property
    def memory(self) -> MemoryClient:
        """The selected sandbox's memory (snapshots, files, restore...)."""
        from moltconsole.memory_client import MemoryClient

        return MemoryClient(self)

    # --- the sandboxes -----------------------------------------------------------------------
    async def sandboxes(self) -> SandboxList:
        """Every sandbox the backend supervises, the default first (checked)."""
        data = await self._request("GET", "/v1/sandboxes")
        return self._read(SANDBOX_LIST, "a /v1/sandboxes answer", data)

    async def create_sandbox(
        self, name: str, *, openclaw_version: str | None = None, memory_limit: str | None = None,
        cpus: float | None = None, gateway_port: int = 0, start: bool = True,
    ) -> SandboxSummary:
        """Add a sandbox (what is left out comes from ``[sandbox]``); with ``start``, start it too."""
        request = CreateRequest(
            name=name, openclaw_version=openclaw_version, memory_limit=memory_limit, cpus=cpus,
            gateway_port=gateway_port, start=start,
        )
        data = await self._request("POST", "/v1/sandboxes", CREATE_REQUEST.dump(request), timeout=None)
        return self._read(SANDBOX_SUMMARY, "a POST /v1/sandboxes answer", data)

    async def remove_sandbox(self, name: str) -> None:
        """Remove a sandbox made with ``create``: its container goes, its state directory stays."""
        from urllib.parse import quote

        await self._request("DELETE", f"/v1/sandboxes/{quote(name, safe='')}", timeout=None)

    # --- requests --------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """The backend's own identity and uptime."""
        result: dict[str, Any] = await self._request("GET", "/v1/health")
        self._read(HEALTH, "a /v1/health answer", result)
        return result

    async def status(self) -> dict[str, Any]:
        """The sandbox status snapshot (``moltconsole_shared.wire.sandbox.SandboxStatus``, checked,
        and the gateway block)."""
        result: dict[str, Any] = await self._request("GET", self._at("status"))
        self._read(SANDBOX_STATUS, "a status answer", result)
        return result

    async def action(self, name: str, *, wait: bool = True, **body: Any) -> dict[str, Any]:
        """start, stop, restart, destroy or rebuild; returns the resulting status."""
        result: dict[str, Any] = await self._request(
            "POST", self._at(name), {"wait": wait, **body}, timeout=None if wait else 30.0
        )
        return result

    async def rotate_token(self, *, wait: bool = True) -> dict[str, Any]:
        """Give the sandbox a new gateway token (the old one is refused at once); a sandbox that
        was wanted running is re-created and started with it. Returns the resulting status."""
        return await self.action("rotate-token", wait=wait)

    async def keys(self) -> dict[str, Any]:
        """The provider keys the backend sees: ``{"keys_file", "keys_file_error", "keys": [{"name",
        "source" ("file" | "environment" | null), "hint", "used_by", "shadowed"}], "missing":
        [MissingKey...], "pid"}``. Values never leave the backend, only masked hints."""
        result: dict[str, Any] = await self._request("GET", "/v1/keys")
        self._read(KEYS_REPORT, "a /v1/keys answer", result)
        return result

    async def processes(self) -> dict[str, Any]:
        """The container's process table."""
        result: dict[str, Any] = await self._request("GET", self._at("processes"))
        self._read(PROCESS_TABLE, "a processes answer", result)
        return result

    async def devices(self) -> dict[str, Any]:
        """Pending pairing requests and paired devices (``moltconsole_shared.wire.devices``, checked)."""
        result: dict[str, Any] = await self._request("GET", self._at("devices"), timeout=60.0)
        self._read(DEVICE_LIST, "a /v1/devices answer", result)
        return result

    async def decide_device(self, request_id: str, decision: str) -> dict[str, Any]:
        """Approve or reject a pending pairing request."""
        from urllib.parse import quote

        result: dict[str, Any] = await self._request(
            "POST", self._at("devices") + f"/{quote(request_id, safe='')}/{decision}", timeout=60.0
        )
        return result

    # --- costs (the AI gateway's ledger) ------------------------------------------------------
    async def _costs(self, path: str, params: dict[str, Any]) -> Any:
        """GET a /v1/costs resource; ``params`` left at None are not sent."""
        from urllib.parse import urlencode

        query = urlencode({k: v for k, v in params.items() if v is not None})
        return await self._request("GET", f"/v1/costs/{path}" + (f"?{query}" if query else ""))

    async def costs_summary(
        self, *, window: str = "24h", sandbox: str | None = None, now: float | None = None,
    ) -> Summary:
        """Spend today / 7 days / 30 days, burn rate, budgets, and requests, errors and latency
        over ``window`` (a duration: 24h, 7d, 30d). ``now`` pins the clock (epoch seconds)."""
        data = await self._costs("summary", {"window": window, "sandbox": sandbox, "now": now})
        return self._read(SUMMARY, "a /v1/costs/summary answer", data)

    async def costs_models(
        self, *, since: str | float = "7d", until: str | float | None = None,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[ModelUsage]:
        """Spend and tokens per model since a duration ago (7d) or an epoch time."""
        data = await self._costs(
            "models", {"since": since, "until": until, "sandbox": sandbox, "now": now}
        )
        return self._read(MODELS, "a /v1/costs/models answer", data).models

    async def costs_days(
        self, *, since: str | float = "30d", until: str | float | None = None,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[DayUsage]:
        """Spend and tokens per local calendar day."""
        data = await self._costs(
            "days", {"since": since, "until": until, "sandbox": sandbox, "now": now}
        )
        return self._read(DAYS, "a /v1/costs/days answer", data).days

    async def costs_series(
        self, *, since: str | float = "7d", until: str | float | None = None, buckets: int = 48,
        sandbox: str | None = None, now: float | None = None,
    ) -> list[SeriesPoint]:
        """Spend in ``buckets`` equal time slices from ``since`` to ``until`` (default: now)."""
        data = await self._costs("series", {
            "since": since, "until": until, "buckets": buckets, "sandbox": sandbox, "now": now,
        })
        return self._read(SERIES, "a /v1/costs/series answer", data).points

    async def costs_requests(
        self, kind: str = "recent", *, since: str | float | None = None, limit: int = 50,
        before: float | None = None, sandbox: str | None = None, now: float | None = None,
    ) -> list[RequestRecord]:
        """Requests: ``top`` (most expensive since), ``errors`` (failed since, newest first) or
        ``recent`` (newest first, paged with ``before``)."""
        data = await self._costs("requests", {
            "kind": kind, "since": since, "limit": limit, "before": before, "sandbox": sandbox,
            "now": now,
        })
        return self._read(REQUESTS_PAGE, "a /v1/costs/requests answer", data).requests

    async def costs_request(self, request_id: str) -> RequestRecord:
        """One request with all its fields and upstream attempts (BackendError 404 if unknown)."""
        from urllib.parse import quote

        data = await self._request("GET", f"/v1/costs/requests/{quote(request_id, safe='')}")
        return self._read(RECORD, "a /v1/costs/requests/{id} record", data)

    # --- streams ---------------------------------------------------------------------------
    async def _ws(self, path: str) -> ClientConnection:
        try:
            return await unix_connect(
                str(self.socket_path), f"ws://moltconsole{path}", max_size=None,
                ping_interval=None,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            body = exc.response.body or b""
            with contextlib.suppress(ValueError):
                said = json.loads(body)
                if isinstance(said, dict) and "error" in said:  # refused in the error body's words
                    raise self._backend_error(f"the {path} stream", said, code) from None
            raise BackendError(
                f"the backend refused the {path} stream with HTTP {code}; it may be an older "
                "version. Restart it (stop 'moltconsole serve' and run it again).",
                "backend", code,
            ) from None
        except (OSError, WebSocketException) as exc:
            # Includes a connection cut during the handshake (InvalidMessage) and the open timeout.
            raise self._unreachable(exc) from None

    async def _stream(
        self, path: str, what: str, request: dict[str, Any] | None = None,
    ) -> AsyncGenerator[dict[str, Any] | bytes]:
        """One WebSocket stream, the same way for every kind: connect, send ``request`` (if
        any), yield each message (a JSON object, or a binary frame as it came), close.

        How it ends says what happened: the backend closing the stream normally ends the
        iteration; ``{"error": {"kind", "message"}}`` from the backend is a BackendError of that
        kind; no backend to connect to is BackendUnreachable; a connection that breaks (a
        killed backend, or one shutting down) is BackendWentAway, naming ``what`` it cut.
        """
        ws = await self._ws(path)
        try:
            if request is not None:
                await ws.send(json.dumps(request))
            async for raw in ws:
                if isinstance(raw, bytes):
                    yield raw
                    continue
                message = self._decode(path, raw)
                if "error" in message:
                    raise self._backend_error(f"the {path} stream", message)
                yield message
        except ConnectionClosedOK:
            return  # the backend ended the stream: a close handshake with 1000 or 1001
        except WebSocketException as exc:
            raise self._went_away(what, _CloseReason(exc)) from None
        finally:
            await ws.close()

    def _decode(self, path: str, raw: str) -> dict[str, Any]:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise BackendError(
                f"the backend sent a {path} message that is not a JSON object: "
                f"{sanitize(raw[:200])!r}. This is a backend bug; its log says more."
            ) from None
        return message

    async def _objects(
        self, path: str, what: str, request: dict[str, Any] | None = None,
    ) -> AsyncGenerator[dict[str, Any]]:
        """A stream of JSON objects only (every stream but exec), closed when the caller stops."""
        async with contextlib.aclosing(self._stream(path, what, request)) as stream:
            async for message in stream:
                if isinstance(message, bytes):
                    raise BackendError(
                        f"the backend sent binary data on {path}, where only JSON is expected. "
                        "This is a backend bug; its log says more."
                    )
                yield message

    def events(self, *, history: int | None = None) -> AsyncGenerator[dict[str, Any]]:
        """Status changes and build progress; the first message is the current status.

        With ``history``, the first message is ``{"type": "history", "events": [...]}`` (the
        newest ``history`` recorded events) and each later one arrives as ``{"type": "event"}``
        (``moltconsole_shared.wire.events``). The stream ends when the backend closes it
        (``_stream`` says how a broken one ends).
        """
        path = self._at("events") + (f"?history={history}" if history is not None else "")
        return self._checked(EVENT_STREAM, path, self._objects(path, "the event stream"), EVENT_TYPES)

    def stats(self) -> AsyncGenerator[dict[str, Any]]:
        """Resource samples (``StatsSample``, checked), about one a second; the stream ends when
        the sandbox stops."""
        path = self._at("stats")
        return self._checked(STATS_SAMPLE, path, self._objects(path, "the stats stream"))

    async def _checked(
        self, schema: WireSchema[Any], path: str, stream: AsyncGenerator[dict[str, Any]],
        types: tuple[str, ...] | None = None,
    ) -> AsyncGenerator[dict[str, Any]]:
        """``stream``'s messages, each checked against its wire schema at the edge (a message
        that does not fit is a BackendError naming the field), passed on as they came. With
        ``types``, a message of another ``type`` passes unchecked: a newer backend's, which
        the readers skip."""
        async with contextlib.aclosing(stream):
            async for message in stream:
                if types is None or message.get("type") in types:
                    self._read(schema, f"a {path} message", message)
                yield message

    def logs(
        self, *, tail: int | None = None, since_seq: int | None = None,
        since_time: float | None = None, follow: bool = True, grep: str | None = None,
        levels: list[str] | None = None, sources: list[str] | None = None,
    ) -> AsyncGenerator[dict[str, Any]]:
        """Log messages: ``{"type": "batch", "records": [...], "dropped": n}``, then one
        ``{"type": "caught_up"}`` once the history is sent, then live batches if ``follow``.

        Record fields (seq, time, level, subsystem, message, source, raw, cut) come from the
        sandbox as they were: sanitize them before they reach a terminal. The stream ends
        when the history is sent (without ``follow``) or when the backend closes it.
        """
        request = LOG_QUERY.dump(LogQuery(
            tail=tail, since_seq=since_seq, since_time=since_time, follow=follow, grep=grep,
            levels=levels, sources=sources,  # type: ignore[arg-type]  # the backend checks the names
        ))
        if sources is None:  # file, console, stdout, stderr; unsent, a backend without them answers
            del request["sources"]
        return self._objects(self._at("logs"), "the log stream", request)

    async def costs_tail(self, *, sandbox: str | None = None) -> AsyncGenerator[dict[str, Any]]:
        """Requests as the ledger records them: first ``{"type": "ready"}`` (anything recorded
        from then on is sent), then ``{"type": "batch", "records": [RequestRecord, ...],
        "dropped": n}``; ``dropped`` counts records lost because this reader fell behind.

        Model names and error messages come from providers and the agent: sanitize them before
        they reach a terminal. The stream ends when the backend closes it.
        """
        from urllib.parse import urlencode

        path = "/v1/costs/tail" + (f"?{urlencode({'sandbox': sandbox})}" if sandbox else "")
        async with contextlib.aclosing(self._objects(path, "the cost tail")) as stream:
            async for message in stream:
                if message.get("type") == "batch":
                    message["records"] = self._read(TAIL_BATCH, "a /v1/costs/tail batch", message).records
                yield message

    async def exec(self, cmd: list[str]) -> AsyncGenerator[tuple[int, bytes] | int]:
        """Run ``cmd`` in the sandbox: yields (EXEC_STDOUT|EXEC_STDERR, chunk), then the exit code."""
        async with contextlib.aclosing(self._stream(self._at("exec"), "exec", {"cmd": cmd})) as stream:
            async for message in stream:
                if isinstance(message, bytes):
                    yield message[0], message[1:]
                elif "exit_code" in message:
                    yield int(message["exit_code"])
                    return
        raise BackendError("the backend closed the exec stream before the command ended")


class _CloseReason(Exception):
    """How a WebSocket connection ended, in words (the close code means little to a user)."""

    def __init__(self, exc: WebSocketException) -> None:
        frame = exc.rcvd if isinstance(exc, ConnectionClosed) else None
        if frame is None and isinstance(exc, ConnectionClosed):
            text = "the connection broke without a close"
        elif frame is not None and frame.code == CloseCode.SERVICE_RESTART:
            text = "the backend is shutting down"
        elif frame is not None:
            text = f"closed with code {frame.code}" + (f": {sanitize(frame.reason)}" if frame.reason else "")
        else:
            text = _describe(exc)
        super().__init__(text)


def _describe(exc: BaseException) -> str:
    """An exception as a short phrase; some (httpx.ReadError) have an empty message."""
    return str(exc) or type(exc).__name__
