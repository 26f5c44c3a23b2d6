"""Background work of the sandbox manager: tasks on the event loop, and blocking pumps that
each get a thread of their own.

A task that fails is never silent: ``BackgroundTasks`` hands its exception to a callback (the
manager logs it and tells the user). ``in_own_thread`` is for streams that block for hours
(Docker events, exec output, stats): on the shared default executor a few abandoned ones would
starve every other engine call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundTasks:
    """The manager's running tasks, kept so that closing can cancel them all."""

    def __init__(self, on_failure: Callable[[BaseException], None]) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_failure = on_failure

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in the background."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._on_failure(exc)

    async def cancel_all(self) -> None:
        """Cancel every task and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def in_own_thread(func: Callable[[], None]) -> asyncio.Future[None]:
    """Run a long-lived blocking pump on a daemon thread of its own; the future ends with it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def finish(exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    def run() -> None:
        try:
            func()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(finish, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(finish, None)

    threading.Thread(target=run, daemon=True, name="moltconsole-pump").start()
    return future
