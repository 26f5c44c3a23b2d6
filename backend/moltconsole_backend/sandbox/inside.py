"""Things run inside the sandbox container: commands (exec), and its process list.

An exec's output is pumped from a thread of its own into the event loop and yielded as it
comes; closing the generator early (the client went away) closes the exec's connection, which
unblocks the pump. The OpenClaw CLI calls built on ``exec`` are in devices.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from moltconsole_backend.sandbox.background import in_own_thread
from moltconsole_backend.sandbox.engine import ContainerEngine, ContainerInfo, EngineRefused
from moltconsole_backend.sandbox.errors import OperationError

if TYPE_CHECKING:
    from moltconsole_backend.sandbox.manager import SandboxManager

# What the process list shows; an engine whose ps refuses these options gets plain ``ps``.
PS_ARGS = "-o pid,ppid,uid,pcpu,rss,etime,args"


class ContainerCommands:
    """Runs commands in the sandbox's container and lists its processes."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager

    async def running_container(self) -> ContainerInfo:
        """The container, if it runs; otherwise an OperationError that says to start it."""
        container = await self.manager.find()
        if container is None or not container.running:
            raise OperationError("the sandbox is not running. Start it first (moltconsole start).")
        return container

    async def exec_stream(
        self, cmd: list[str], *, user: str | None = None
    ) -> AsyncGenerator[tuple[str, bytes] | int]:
        """Run ``cmd`` inside the container; yield (stream, chunk) pairs, then the exit code."""
        container = await self.running_container()
        connection = self.manager.connection
        engine = await connection.get()
        try:
            exec_id = await connection.call(engine.exec_create, container.id, cmd, user or "")
            output = await connection.call(engine.exec_start, exec_id)
        except EngineRefused as exc:
            raise OperationError(f"exec failed: {exc}") from None
        queue: asyncio.Queue[tuple[str, bytes] | BaseException | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def put(item: tuple[str, bytes] | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for out, err in output:
                    if out:
                        put(("stdout", out))
                    if err:
                        put(("stderr", err))
            except Exception as exc:
                put(exc)
            finally:
                put(None)

        pumping = in_own_thread(pump)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise OperationError(f"exec output stream broke: {item}")
                yield item
        finally:
            if not pumping.done():
                with contextlib.suppress(Exception):
                    output.close()  # unblocks the pump thread
        yield await self._exit_code(engine, exec_id)

    async def _exit_code(self, engine: ContainerEngine, exec_id: str) -> int:
        # The output ends when the process closes it; its exit is recorded a moment later.
        for _ in range(100):
            code = await self.manager.connection.call(engine.exec_exit_code, exec_id)
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        raise OperationError("the command's output ended but Docker reports no exit code")

    async def exec(self, cmd: list[str], *, user: str | None = None) -> tuple[int, str, str]:
        """Run ``cmd`` to completion; return exit code, stdout and stderr."""
        out: list[bytes] = []
        err: list[bytes] = []
        code = -1
        async for item in self.exec_stream(cmd, user=user):
            if isinstance(item, int):
                code = item
            else:
                (out if item[0] == "stdout" else err).append(item[1])
        return code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")

    async def processes(self) -> dict[str, Any]:
        """The container's processes as ``docker top`` reports them."""
        container = await self.running_container()
        connection = self.manager.connection
        engine = await connection.get()
        try:
            top = await connection.call(engine.top, container.id, PS_ARGS)
        except EngineRefused:
            try:
                top = await connection.call(engine.top, container.id, None)
            except EngineRefused as exc:
                raise OperationError(f"cannot list processes: {exc}") from None
        return {"titles": top.get("Titles") or [], "processes": top.get("Processes") or []}
