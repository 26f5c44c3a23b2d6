"""Where the Logs screen's lines come from: the live stream in batches, and the history search.

No widgets here. :func:`log_batches` follows ``client.logs(...)``: a reader task puts the
server's messages in a queue (through a :class:`~moltconsole.streams.StreamFollower`, which
reconnects after a break asking for what follows the last seq read; a line the server sends
again is dropped by seq, so none shows twice) and the batcher groups whatever arrived within
:data:`BATCH_INTERVAL` into one :class:`LogBatch`, so the screen repaints at most ~15 times a
second however fast lines come. :func:`search_history` asks the backend's on-disk history for
the last lines that pass a filter and answers with one :class:`HistoryFound`. The screen runs
both in its workers and applies the messages.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from textual.message import Message

from moltconsole.client import BackendError
from moltconsole.logfilter import LogRecord
from moltconsole.streams import StreamFollower, StreamState, Wakeup

BATCH_INTERVAL = 1 / 15  # seconds; the issue asks for 10-20 repaints a second, not one per line
INBOX_SIZE = 256  # server messages buffered ahead of the batcher; beyond it the socket backs up
HISTORY_DELAY = 0.25  # seconds a filter must stand before the backend's history is searched


class LogSource(Protocol):
    """What the screen needs from :class:`moltconsole.client.BackendClient`."""

    def logs(
        self, *, tail: int | None = None, since_seq: int | None = None,
        since_time: float | None = None, follow: bool = True, grep: str | None = None,
        levels: list[str] | None = None, sources: list[str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Server messages: ``{"type": "batch", "records": [...], "dropped": n}`` and
        ``{"type": "caught_up"}``."""
        ...


class LogBatch(Message):
    """Records that arrived within one batch interval (already sanitised), for the screen."""

    def __init__(
        self, records: tuple[LogRecord, ...], received: int, dropped: int, caught_up: bool,
    ) -> None:
        super().__init__()
        self.records = records
        self.received = received  # may exceed len(records): the oldest of a huge batch are cut
        self.dropped = dropped
        self.caught_up = caught_up


class HistoryFound(Message):
    """The backend's history search for one filter ended: its matches, or why it failed."""

    def __init__(
        self, generation: int, records: tuple[LogRecord, ...], problem: str | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__()
        self.generation = generation  # which filter change asked; older answers are ignored
        self.records = records
        self.problem = problem
        self.refused = refused  # the backend refused the query itself (e.g. the regex)


class LogStreamState(Message):
    """The log stream connected, or failed (``problem`` says why, for the user)."""

    def __init__(self, problem: str | None) -> None:
        super().__init__()
        self.problem = problem


async def log_batches(
    client: LogSource, request: dict[str, Any], *, max_lines: int,
    on_state: Callable[[StreamState], object], wakeup: Wakeup | None,
) -> AsyncIterator[LogBatch]:
    """Follow the log stream from ``request``; its messages grouped into batches of at most one
    per BATCH_INTERVAL, each holding at most ``max_lines`` records. It never ends by itself;
    a bug in reading is raised here."""
    inbox: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue(INBOX_SIZE)
    read_up_to: int | None = None  # the last seq the reader has taken from the stream

    def open_stream() -> AsyncIterator[dict[str, Any]]:
        # since_seq is the first seq to send: a reconnection asks for what follows.
        query = request if read_up_to is None else {"since_seq": read_up_to + 1}
        return client.logs(follow=True, **query)

    async def read() -> None:
        nonlocal read_up_to
        follower = StreamFollower(
            "the log stream", open_stream, on_state=on_state,
            wakeup=wakeup,
        )
        try:
            async for message in follower:
                if message.get("type") == "batch" and message.get("records"):
                    seq = message["records"][-1].get("seq")
                    read_up_to = seq if isinstance(seq, int) else read_up_to
                await inbox.put(message)
            await inbox.put(None)
        except Exception as exc:  # a bug: handed to the batcher, which re-raises it in the worker
            await inbox.put(exc)

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    shown_up_to: int | None = None  # the last seq batched, for any connection
    try:
        ended: BaseException | bool = False
        while not ended:
            item = await inbox.get()
            records: list[LogRecord] = []
            received = dropped = 0
            caught_up = False
            deadline = loop.time() + BATCH_INTERVAL
            while True:
                if isinstance(item, BaseException) or item is None:
                    ended = item or True  # post what came before the end, then stop
                    break
                if item.get("type") == "batch":
                    dropped += int(item.get("dropped") or 0)
                    for data in item.get("records") or ():
                        record = LogRecord.from_wire(data)
                        # Never show a line twice after a reconnect, whatever the server resends.
                        if shown_up_to is None or record.seq > shown_up_to:
                            records.append(record)
                            received += 1
                            shown_up_to = record.seq
                    # Older ones would fall off the view before anyone saw them.
                    del records[:-max_lines]
                elif item.get("type") == "caught_up":
                    caught_up = True
                    break  # show the history at once
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(inbox.get(), remaining)
                except TimeoutError:
                    break
            if records or dropped or caught_up:
                yield LogBatch(tuple(records), received, dropped, caught_up)
            if isinstance(ended, BaseException):
                raise ended
    finally:
        reader.cancel()


async def search_history(
    client: LogSource, generation: int, request: dict[str, Any], *, max_lines: int, delay: float,
) -> HistoryFound:
    """Ask the backend's history for the last ``max_lines`` lines that pass the filter in
    ``request`` (after ``delay``: a filter being typed changes again within it, and the new
    search cancels this one before it has asked anything)."""
    await asyncio.sleep(delay)
    found: deque[LogRecord] = deque(maxlen=max_lines)
    try:
        async for message in client.logs(follow=False, tail=max_lines, **request):
            if message.get("type") == "batch":
                found.extend(LogRecord.from_wire(data) for data in message.get("records") or ())
            elif message.get("type") == "caught_up":
                break
    except BackendError as exc:
        return HistoryFound(generation, (), str(exc), refused=exc.kind == "request")
    return HistoryFound(generation, tuple(found))
