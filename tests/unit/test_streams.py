"""The console's stream follower: it reconnects by itself, says why, backs off, wakes early."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from moltconsole.client import BackendError, BackendUnreachable, BackendWentAway
from moltconsole.streams import StreamFollower, StreamState, Wakeup

T0 = 1_800_000_000.0


class Connections:
    """Stands in for one client stream method: each call plays the next scripted connection.

    A script is the messages it sends, then how it ends: an exception, or None (closed).
    """

    def __init__(self, *scripts: tuple[list[Any], BaseException | None]) -> None:
        self.scripts = list(scripts)
        self.opened = 0
        self.closed = 0

    def open(self) -> AsyncIterator[Any]:
        self.opened += 1
        return self._play(*self.scripts.pop(0)) if self.scripts else self._hang()

    async def _play(self, messages: list[Any], end: BaseException | None) -> AsyncIterator[Any]:
        try:
            for message in messages:
                yield message
            if end is not None:
                raise end
        finally:
            self.closed += 1

    async def _hang(self) -> AsyncIterator[Any]:
        try:
            await asyncio.Event().wait()  # a connection that stays open and quiet
            yield None
        finally:
            self.closed += 1


class RecordedWaits(Wakeup):
    """Returns at once from every wait, and keeps how long each would have been."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    async def wait(self, timeout: float) -> None:
        self.waits.append(timeout)


def follower(connections: Connections, states: list[StreamState], **options: Any) -> StreamFollower[Any]:
    clock = iter(T0 + i for i in range(1000))
    options.setdefault("wakeup", RecordedWaits())
    return StreamFollower("the log stream", connections.open, on_state=states.append,
                          clock=lambda: next(clock), **options)


async def take(stream: StreamFollower[Any], count: int) -> list[Any]:
    got: list[Any] = []
    async with contextlib.aclosing(aiter(stream)) as messages:
        async for message in messages:
            got.append(message)
            if len(got) == count:
                break
    return got


UNREACHABLE = BackendUnreachable("no moltconsole backend answers on /run/x.sock")


async def test_every_kind_of_end_is_followed_by_a_new_connection_and_said_why() -> None:
    connections = Connections(
        ([1, 2], None),  # the backend closed the stream
        ([3], BackendWentAway("the backend went away during the log stream")),
        ([], UNREACHABLE),
        ([], BackendError("logs are not collected", "operation")),
        ([4], None),
    )
    states: list[StreamState] = []
    assert await take(follower(connections, states), 4) == [1, 2, 3, 4]
    assert connections.opened == 5 and connections.closed == 5
    seen = [(s.phase, s.cause, s.attempts) for s in states]
    assert seen == [
        ("connecting", None, 0),
        ("connected", None, 0),
        ("reconnecting", "closed", 0),
        ("connected", None, 0),
        ("reconnecting", "broke", 0),
        ("reconnecting", "unreachable", 1),
        ("reconnecting", "refused", 2),
        ("connected", None, 0),
    ]
    # Lost once, at the break: the failed attempts after it keep that time.
    assert [s.since for s in states[4:7]] == [T0 + 1] * 3
    assert [s.unreachable for s in states[4:7]] == [False, True, False]


def test_the_state_reads_as_one_line_for_the_screen() -> None:
    lost = StreamState("the log stream", "reconnecting", T0, 3, "unreachable", "no backend")
    at = time.strftime("%H:%M:%S", time.localtime(T0))
    assert lost.describe() == f"the log stream lost at {at}; reconnecting, 3 attempts…"
    refused = StreamState("the stats stream", "reconnecting", T0, 1, "refused", "the sandbox is not running")
    assert refused.describe() == "the stats stream: the sandbox is not running (retrying)"
    assert StreamState("the log stream", "connected").describe() is None
    assert StreamState("the log stream", "connecting").describe() is None


async def test_the_pause_doubles_up_to_its_limit_and_starts_over_once_connected() -> None:
    failures: list[tuple[list[Any], BaseException | None]] = [([], UNREACHABLE)] * 7
    connections = Connections(*failures, ([1], None), ([], UNREACHABLE), ([2], None))
    waits = RecordedWaits()
    await take(follower(connections, [], wakeup=waits, first=0.5, most=4.0), 2)
    assert waits.waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 0.5, 1.0]


async def test_a_wakeup_ends_the_pause_at_once() -> None:
    connections = Connections(([], UNREACHABLE), ([1], None))
    wakeup = Wakeup()
    pausing = asyncio.Event()

    def on_state(state: StreamState) -> None:
        if state.phase == "reconnecting":
            pausing.set()  # the follower pauses right after saying so, before any other await

    # An hour's pause: only the wakeup can end it within the test's time.
    stream = StreamFollower("the log stream", connections.open, on_state=on_state, wakeup=wakeup,
                            first=3600.0)
    task = asyncio.create_task(take(stream, 1))
    await asyncio.wait_for(pausing.wait(), 5)
    wakeup.fire()
    assert await asyncio.wait_for(task, 5) == [1]
    assert connections.opened == 2


async def test_a_bug_in_the_stream_is_not_retried() -> None:
    connections = Connections(([1], KeyError("records")), ([2], None))
    with pytest.raises(KeyError):
        await take(follower(connections, []), 2)
    assert connections.opened == 1 and connections.closed == 1


async def test_stopping_the_follower_closes_the_open_connection() -> None:
    connections = Connections(([1], None), ([2], None))
    states: list[StreamState] = []
    stream = follower(connections, states)
    assert await take(stream, 2) == [1, 2]
    assert connections.opened == connections.closed == 2


async def test_each_connection_asks_afresh_so_the_caller_can_resume() -> None:
    asked: list[int | None] = []
    cursor: list[int] = []

    def open_after_cursor() -> AsyncIterator[int]:
        since = cursor[-1] + 1 if cursor else None
        asked.append(since)

        async def play() -> AsyncIterator[int]:
            start = since or 1
            for seq in range(start, start + 2):
                yield seq
            raise BackendWentAway("the backend went away during the log stream")

        return play()

    stream: StreamFollower[int] = StreamFollower("the log stream", open_after_cursor, wakeup=RecordedWaits())
    async with contextlib.aclosing(aiter(stream)) as messages:
        async for seq in messages:
            cursor.append(seq)
            if len(cursor) == 6:
                break
    assert cursor == [1, 2, 3, 4, 5, 6] and asked == [None, 3, 5]



async def test_the_cost_tail_says_it_lost_the_stream_and_listens_again() -> None:
    from moltconsole.screens.cost_feeds import TailArrived, TailState, follow_tail

    connections = Connections(
        ([{"type": "ready"}, {"type": "batch", "records": [], "dropped": 2}],
         BackendWentAway("the backend went away during the cost tail")),
        ([{"type": "ready"}], None),
    )

    class Ledger:
        def costs_tail(self, *, sandbox: str | None = None) -> AsyncIterator[dict[str, Any]]:
            return connections.open()

    posted: list[Any] = []
    done = asyncio.Event()

    def post(message: Any) -> None:
        posted.append(message)
        if len(posted) == 4:
            done.set()

    task = asyncio.create_task(follow_tail(Ledger(), post, wakeup=RecordedWaits()))  # type: ignore[arg-type]
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [type(m) for m in posted[:4]] == [TailState, TailArrived, TailState, TailState]
    assert posted[0].problem is None and posted[1].dropped == 2
    assert posted[2].problem is not None and posted[2].problem.startswith("the cost tail lost at ")
    assert posted[3].problem is None  # listening again: the screen reloads what it missed
