"""How a WebSocket route forwards a stream: until the producer ends or the client goes away,
whichever comes first, and then closes both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole_backend.api.answers import refuse
from moltconsole_backend.sandbox.manager import OperationError


async def forward(ws: WebSocket, items: AsyncGenerator[Any], send: Callable[[Any], Awaitable[None]]) -> None:
    """Send each of ``items`` with ``send``; stop the producer as soon as the client goes away.
    An operation the sandbox refuses mid-way ends the stream with the error body."""
    receiver = asyncio.ensure_future(until_closed(ws))
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


async def until_closed(ws: WebSocket) -> None:
    """Read until the client goes away, so a disconnect is noticed while nothing is sent."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive()
            if ws.client_state.name == "DISCONNECTED":
                return
