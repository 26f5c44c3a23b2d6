"""Following the backend's live streams from the console: one follower, reconnecting by itself.

Every live part of the console (the app's status, the Dashboard's history and stats, the Logs
tail, the Costs tail) is a WebSocket stream that ends when the backend goes away. A
:class:`StreamFollower` turns one into a stream that does not end: it opens it, hands its
messages on, and when it breaks it says so (:class:`StreamState`) and opens it again after a
pause that doubles from :data:`RETRY_FIRST` to :data:`RETRY_MAX`, cut short when the app sees
the backend come back (:class:`Wakeup`). The caller decides what each (re)connection asks for
(``open_stream`` is called every time), which is how each stream resumes where it was: the logs
after the last seq seen, the events with their history again, the cost tail with a reload.

No widgets here: the screens turn states into their own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from moltconsole.client import BackendError, BackendUnreachable, BackendWentAway

T = TypeVar("T")
RETRY_FIRST = 0.2  # seconds before the first reconnection; doubles after each failed attempt
RETRY_MAX = 5.0

Phase = Literal["connecting", "connected", "reconnecting"]
# Why the last connection ended or the last attempt failed: the backend closed the stream,
# the connection broke (a crash, a kill, a shutdown), no backend answered at all, or the
# backend answered with an error of its own.
Cause = Literal["closed", "broke", "unreachable", "refused"]


@dataclass(frozen=True, slots=True)
class StreamState:
    """Where one followed stream stands.

    ``since`` is when the connection was lost (the clock's time), ``attempts`` how many tries
    failed since, ``cause`` and ``problem`` why the last one ended (``problem`` in the client's
    words, for the user).
    """

    what: str
    phase: Phase
    since: float | None = None
    attempts: int = 0
    cause: Cause | None = None
    problem: str | None = None

    @property
    def connected(self) -> bool:
        """Whether messages are flowing."""
        return self.phase == "connected"

    @property
    def unreachable(self) -> bool:
        """Whether the last attempt found no backend at all: it is gone, not just restarting."""
        return self.phase == "reconnecting" and self.cause == "unreachable"

    def describe(self) -> str | None:
        """One line for the screen that shows this stream, or None while nothing is wrong."""
        if self.phase != "reconnecting":
            return None
        if self.cause == "refused":
            return f"{self.what}: {self.problem} (retrying)"
        since = time.strftime("%H:%M:%S", time.localtime(self.since or 0))
        tries = f", {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{self.what} lost at {since}; reconnecting{tries}…"


class Wakeup:
    """Wakes every follower waiting to reconnect, e.g. when the app sees the backend back."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        """End every wait in progress now."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, or at the next :meth:`fire`, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def shared_wakeup(app: object) -> Wakeup | None:
    """The app's :class:`Wakeup` (``MoltConsole.wakeup``), for the followers of its screens;
    None for an app without one (a screen hosted alone in tests)."""
    wakeup = getattr(app, "wakeup", None)
    return wakeup if isinstance(wakeup, Wakeup) else None


class StreamFollower(Generic[T]):
    """One backend stream followed for as long as it is iterated, across reconnections.

    ``open_stream`` opens the stream afresh (it is called again after each break); iterating
    the follower yields every message of every connection in turn and never ends by itself.
    ``on_state`` hears each change: connected (at the first message of a connection), or
    reconnecting with why. Errors other than the backend's (``BackendError``) are bugs and
    end the iteration.
    """

    def __init__(
        self, what: str, open_stream: Callable[[], AsyncIterator[T]], *,
        on_state: Callable[[StreamState], object] = lambda state: None,
        wakeup: Wakeup | None = None, clock: Callable[[], float] = time.time,
        first: float = RETRY_FIRST, most: float = RETRY_MAX,
    ) -> None:
        self.what = what
        self.open_stream = open_stream
        self.on_state = on_state
        self.wakeup = wakeup
        self.clock = clock
        self.first = first
        self.most = most
        self.state = StreamState(what, "connecting")

    def __aiter__(self) -> AsyncGenerator[T]:
        return self._follow()

    def _set(self, state: StreamState) -> None:
        self.state = state
        self.on_state(state)

    async def _follow(self) -> AsyncGenerator[T]:
        delay = self.first
        self._set(self.state)
        while True:
            stream = self.open_stream()
            connected = False
            try:
                async for message in stream:
                    if not connected:
                        connected = True
                        delay = self.first
                        self._set(StreamState(self.what, "connected"))
                    yield message
                cause: Cause = "closed"
                problem = f"the backend closed {self.what}"
            except BackendWentAway as exc:
                cause, problem = "broke", str(exc)
            except BackendUnreachable as exc:
                cause, problem = "unreachable", str(exc)
            except BackendError as exc:
                cause, problem = "refused", str(exc)
            finally:
                closing = getattr(stream, "aclose", None)
                if closing is not None:
                    await closing()  # the connection goes now, not when the GC finds it
            previous = self.state
            lost_at = previous.since if previous.phase == "reconnecting" else self.clock()
            self._set(StreamState(
                self.what, "reconnecting", lost_at, 0 if connected else previous.attempts + 1,
                cause, problem,
            ))
            if self.wakeup is not None:
                await self.wakeup.wait(delay)
            else:
                await asyncio.sleep(delay)  # a pause between attempts; nothing to wait on instead
            delay = min(delay * 2, self.most)
