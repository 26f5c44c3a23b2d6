"""What the sandbox is doing, as it happens (``moltconsole_shared.wire.sandbox``).

Streams:    WS /v1/events: the status first, then each change, build progress, notices and
               recorded events; ``?history=N`` first sends the newest N recorded events
            WS /v1/stats: a resource sample about once a second while the container runs
"""

from __future__ import annotations

import asyncio

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole_backend.api.answers import refuse
from moltconsole_backend.api.streams import forward, until_closed
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_shared.wire.sandbox import EVENT_STREAM, HistoryMessage, StatsSample, StatusMessage


def event_routes(manager: SandboxManager) -> list[BaseRoute]:
    """The event and stats streams of ``manager``'s sandbox."""

    async def events(ws: WebSocket) -> None:
        """With ``?history=N`` (at most the history's size) the first message is the newest N
        recorded events: taken in the same step as the subscription, so the live events that
        follow neither repeat nor miss one."""
        wanted = ws.query_params.get("history")
        count = int(wanted) if wanted is not None and wanted.isdigit() else None
        await ws.accept()
        if wanted is not None and count is None:
            await refuse(ws, "request", f"history must be a whole number of events, not {wanted!r}")
            return
        queue = manager.subscribe()
        history = manager.history.last(count) if count is not None else None  # no await between
        try:
            if history is not None:
                await ws.send_json(EVENT_STREAM.dump(HistoryMessage(history)))
            await ws.send_json(EVENT_STREAM.dump(StatusMessage(manager.status)))
            receiver = asyncio.ensure_future(until_closed(ws))
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

        async def send(sample: StatsSample) -> None:
            await ws.send_json(sample.to_json())

        await forward(ws, manager.stats(), send)

    return [WebSocketRoute("/v1/events", events), WebSocketRoute("/v1/stats", stats)]
