"""The sandbox's log (``moltconsole_shared.wire.logs``).

Stream:     WS /v1/logs: the client sends one LogQuery first and receives LogBatch messages,
               one ``{"type": "caught_up"}`` once the history is sent, then (with ``follow``)
               live batches. A bad query gets the error body and a close.

The collector hands over each message already encoded (records are encoded once, when they are
spooled): it is sent as it is.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole_backend.api.answers import refuse
from moltconsole_backend.api.streams import forward
from moltconsole_backend.logs.collector import LogCollector, LogQuery, QueryError


def log_routes(logs: LogCollector | None) -> list[BaseRoute]:
    """The log stream over ``logs`` (None: a backend that collects none says so)."""

    async def stream(ws: WebSocket) -> None:
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
        await forward(ws, logs.stream(query), ws.send_text)

    return [WebSocketRoute("/v1/logs", stream)]
