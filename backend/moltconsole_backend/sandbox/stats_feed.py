"""The stats feed: one stream of resource samples while the container runs, shared by the
memory warning and every /v1/stats reader.

It starts with the container (the warning needs samples whether anyone watches or not) and
ends when the container stops, which also ends every reader's stream. A reader that falls
behind loses its oldest samples; a new reader gets the latest sample at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from moltconsole_backend.sandbox.background import in_own_thread
from moltconsole_backend.sandbox.errors import OperationError
from moltconsole_backend.sandbox.stats import StatsSample

if TYPE_CHECKING:
    from moltconsole_backend.sandbox.manager import SandboxManager

log = logging.getLogger(__name__)

READER_BACKLOG = 10  # samples: a few seconds


class StatsFeed:
    """Follows the running container's stats and hands each sample to the manager and readers."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        self._readers: set[asyncio.Queue[StatsSample | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._for = ""
        self.last: StatsSample | None = None  # of the container followed now

    def follow(self, container_id: str) -> None:
        """Follow ``container_id`` (unless already following it), in place of any earlier one."""
        if self._task is not None and not self._task.done():
            if self._for == container_id:
                return
            self._task.cancel()  # still following a container that is gone
        self.last = None
        self._for = container_id
        self._task = self.manager.tasks.spawn(self._follow(container_id))

    async def read(self, container_id: str) -> AsyncGenerator[StatsSample]:
        """Samples of ``container_id``, about one per second, until it stops."""
        queue: asyncio.Queue[StatsSample | None] = asyncio.Queue(maxsize=READER_BACKLOG)
        self._readers.add(queue)
        self.follow(container_id)  # normally running since the container started
        if self.last is not None:
            queue.put_nowait(self.last)  # something to show now, not in a second
        try:
            while (sample := await queue.get()) is not None:
                yield sample
        finally:
            self._readers.discard(queue)

    async def _follow(self, container_id: str) -> None:
        try:
            while self.manager.is_running(container_id):
                await self._stream(container_id)
                if self.manager.is_running(container_id):
                    await asyncio.sleep(1.0)  # the engine ended the stream early: follow again
        finally:
            self.last = None
            for queue in list(self._readers):
                _offer(queue, None)

    async def _stream(self, container_id: str) -> None:
        try:
            engine = await self.manager.connection.get()
        except OperationError:
            return
        # Unbounded, but only ever a few items: one sample a second, consumed as they come.
        queue: asyncio.Queue[StatsSample | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def put(item: StatsSample | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for sample in engine.stats(container_id):
                    if stop.is_set():
                        break
                    put(sample)
            except Exception as exc:
                log.debug("stats stream ended: %s", exc)
            finally:
                put(None)

        in_own_thread(pump)
        try:
            while (sample := await queue.get()) is not None and self.manager.is_running(container_id):
                self._on_sample(sample)
        finally:
            stop.set()

    def _on_sample(self, sample: StatsSample) -> None:
        self.last = sample
        self.manager.on_memory(sample)
        for queue in list(self._readers):
            _offer(queue, sample)


def _offer(queue: asyncio.Queue[StatsSample | None], item: StatsSample | None) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)
