"""The backend's HTTP and WebSocket API (Starlette). Version 1, JSON in and out.

Requests:   GET  /v1/health, /v1/status, /v1/sandbox/processes, /v1/devices, /v1/keys
            POST /v1/sandbox/{start,stop,restart,destroy,rebuild,rotate-token}
            POST /v1/devices/{request_id}/{approve,reject}
Streams:    WS   /v1/events (status changes, build progress, recorded events; ``?history=N``
                 first sends the last N recorded ones), /v1/stats, /v1/exec
            WS   /v1/logs (history then live records; see ``logs_`` below)
Errors are ``{"error": {"kind": ..., "message": ...}}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole_backend.api.answers import answer, error, refuse
from moltconsole_backend.api.cost_routes import cost_routes
from moltconsole_backend.gateway.keys import key_rows
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.logs.collector import LogCollector, LogQuery, QueryError
from moltconsole_backend.sandbox import devices
from moltconsole_backend.sandbox.manager import OperationError, SandboxManager
from moltconsole_shared import __version__
from moltconsole_shared.wire.devices import DEVICE_DECISION, DEVICE_LIST
from moltconsole_shared.wire.sandbox import EVENT_STREAM, HistoryMessage, StatusMessage
from moltconsole_shared.wire.schema import WireSchema

log = logging.getLogger(__name__)
T = TypeVar("T")
EXEC_STDOUT = b"\x01"
EXEC_STDERR = b"\x02"


def create_app(
    manager: SandboxManager, logs: LogCollector | None = None, gateway: GatewayService | None = None
) -> Starlette:
    """The API application bound to one sandbox manager (its log collector and gateway, if any)."""
    started = time.time()

    async def guarded(call: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await call()
        except OperationError as exc:
            return error("operation", str(exc), 409)
        except Exception as exc:  # a bug: still answer in JSON, and say where to look
            log.exception("request failed")
            return error("internal", f"internal error in the backend ({exc!r}); see the backend's log", 500)

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "backend": "moltconsole",
                "version": __version__,
                "pid": os.getpid(),
                "uptime": time.time() - started,
                "gateway": gateway.status() if gateway is not None else None,
            }
        )

    async def status(_: Request) -> Response:
        body = manager.status.to_json()
        body["gateway"] = gateway.status() if gateway is not None else None
        body["log_lines_not_kept"] = logs.lines_not_kept if logs is not None else None  # disk full
        return JSONResponse(body)

    async def keys(_: Request) -> Response:
        """Names of the provider keys, where each comes from and a masked hint: never a value."""
        if gateway is None:
            return error("operation", "this backend runs no AI gateway", 409)
        return JSONResponse(await asyncio.to_thread(keys_report, gateway))

    def action(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            body = await _json_body(request)
            if isinstance(body, Response):
                return body

            async def run() -> Response:
                if name == "rebuild":
                    version = body.get("version")
                    if version is not None and not isinstance(version, str):
                        return error("request", "'version' must be a string such as 2026.9.6", 400)
                    if version:
                        from moltconsole_backend.settings import SandboxSettings

                        try:
                            SandboxSettings(openclaw_version=version)
                        except ValueError:
                            return error("request", f"{version!r} is not an OpenClaw version", 400)
                    result = await manager.rebuild(version or None)
                elif name == "rotate-token":
                    result = await manager.rotate_token()
                else:
                    result = await getattr(manager, name)()
                return JSONResponse(result.to_json())

            if body.get("wait", True):
                return await guarded(run)
            # Fire and forget: the caller follows /v1/events.
            task = asyncio.get_running_loop().create_task(guarded(run))
            _background.add(task)
            task.add_done_callback(_background.discard)
            return JSONResponse(manager.status.to_json(), status_code=202)

        return handler

    async def processes(_: Request) -> Response:
        return await guarded(lambda: _json(manager.processes()))

    async def device_list(_: Request) -> Response:
        return await guarded(lambda: _answer(DEVICE_LIST, devices.list_devices(manager)))

    async def device_decide(request: Request) -> Response:
        request_id = request.path_params["request_id"]
        decision = request.path_params["decision"]
        if decision not in ("approve", "reject"):
            return error("request", "use approve or reject", 404)
        return await guarded(lambda: _answer(DEVICE_DECISION, devices.decide(manager, request_id, decision)))

    async def events(ws: WebSocket) -> None:
        """Status changes, build progress, notices and recorded events (``{"type": "event"}``).

        With ``?history=N`` (at most the history's size) the first message is ``{"type":
        "history", "events": [...]}``, the newest N recorded events: taken in the same step as
        the subscription, so the live events that follow neither repeat nor miss one.
        """
        wanted = ws.query_params.get("history")
        count = int(wanted) if wanted is not None and wanted.isdigit() else None
        await ws.accept()
        if wanted is not None and count is None:
            hint = f"history must be a whole number of events, not {wanted!r}"
            await refuse(ws, "request", hint)
            return
        queue = manager.subscribe()
        history = manager.history.last(count) if count is not None else None  # no await between
        try:
            if history is not None:
                await ws.send_json(EVENT_STREAM.dump(HistoryMessage(history)))
            await ws.send_json(EVENT_STREAM.dump(StatusMessage(manager.status)))
            receiver = asyncio.ensure_future(_drain(ws))
            while not receiver.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await ws.send_json(getter.result())
                else:
                    getter.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            manager.unsubscribe(queue)

    async def stats(ws: WebSocket) -> None:
        await ws.accept()

        async def send(sample: Any) -> None:
            await ws.send_json(sample.to_json())

        await _stream(ws, manager.stats(), send)

    async def exec_(ws: WebSocket) -> None:
        await ws.accept()
        try:
            request = await ws.receive_json()
            cmd = request.get("cmd") if isinstance(request, dict) else None
            if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
                hint = 'send {"cmd": ["prog", "arg", ...]}'
                await refuse(ws, "request", hint)
                return
        except (WebSocketDisconnect, RuntimeError, ValueError):
            return

        async def send(item: tuple[str, bytes] | int) -> None:
            if isinstance(item, int):
                await ws.send_json({"exit_code": item})
            else:
                await ws.send_bytes((EXEC_STDOUT if item[0] == "stdout" else EXEC_STDERR) + item[1])

        await _stream(ws, manager.exec_stream(cmd), send)

    async def logs_(ws: WebSocket) -> None:
        """Log records. The client sends one query object first::

            {"tail": int|null, "since_seq": int|null, "since_time": float|null,
             "follow": bool, "grep": str|null, "levels": [str]|null}

        and receives ``{"type": "batch", "records": [...], "dropped": int}`` messages, one
        ``{"type": "caught_up"}`` once the history is sent, then (with follow) live batches.
        A bad query gets ``{"error": {"kind": "request", "message": ...}}`` and a close.
        """
        await ws.accept()
        try:
            request = await ws.receive_json()
        except (WebSocketDisconnect, RuntimeError, ValueError):
            return
        if logs is None:
            await refuse(ws, "operation", "logs are not collected")
            return
        try:
            query = LogQuery.from_json(request)
        except QueryError as exc:
            await refuse(ws, "request", str(exc))
            return
        await _stream(ws, logs.stream(query), ws.send_text)

    routes = [
        Route("/v1/health", health),
        Route("/v1/status", status),
        Route("/v1/sandbox/processes", processes),
        Route("/v1/devices", device_list),
        Route("/v1/keys", keys),
        Route("/v1/devices/{request_id}/{decision}", device_decide, methods=["POST"]),
        WebSocketRoute("/v1/events", events),
        WebSocketRoute("/v1/stats", stats),
        WebSocketRoute("/v1/exec", exec_),
        WebSocketRoute("/v1/logs", logs_),
    ]
    for name in ("start", "stop", "restart", "destroy", "rebuild", "rotate-token"):
        routes.append(Route(f"/v1/sandbox/{name}", action(name), methods=["POST"]))
    if gateway is not None:
        routes += cost_routes(
            gateway.ledger, gateway.budgets, warn_percent=gateway.settings.gateway.budget_warn_percent
        )
    return Starlette(routes=routes)


_background: set[asyncio.Task[Any]] = set()


def keys_report(gateway: GatewayService) -> dict[str, Any]:
    """``GET /v1/keys``: the keys the gateway sees (``key_rows``: names, sources, masked hints),
    what the providers in use lack, and the keys file's path and state. Values never leave."""
    return {
        "keys_file": str(gateway.settings.keys_path),
        "keys_file_error": gateway.keys_file_error(),
        "keys": key_rows(gateway.settings.gateway, gateway.env),
        "missing": [m.to_json() for m in gateway.missing_keys()],
        "pid": os.getpid(),
    }


async def _json(result: Awaitable[Any]) -> Response:
    return JSONResponse(await result)


async def _answer(schema: WireSchema[T], result: Awaitable[T]) -> Response:
    return answer(schema, await result)


async def _json_body(request: Request) -> dict[str, Any] | Response:
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


async def _stream(ws: WebSocket, items: AsyncGenerator[Any], send: Callable[[Any], Awaitable[None]]) -> None:
    """Forward ``items`` to the client; stop the producer as soon as the client goes away."""
    receiver = asyncio.ensure_future(_drain(ws))
    try:
        while True:
            following = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({following, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                break
            await send(item)
    except OperationError as exc:
        await refuse(ws, "operation", str(exc))
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await items.aclose()
    with contextlib.suppress(Exception):
        await ws.close()


async def _drain(ws: WebSocket) -> None:
    """Read until the client goes away, so a disconnect is noticed while idle."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive()
            if ws.client_state.name == "DISCONNECTED":
                return
