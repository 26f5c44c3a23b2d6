"""The manager's one connection to its container engine: made on first use, dropped when the
engine goes away, and made again by whoever needs it next (normally the engine watch)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from moltconsole_backend.sandbox.engine import ContainerEngine, EngineUnavailable
from moltconsole_backend.sandbox.errors import OperationError

T = TypeVar("T")


class EngineConnection:
    """Engine calls in threads; a lost engine is reported once per call and becomes an
    OperationError that says how to bring it back."""

    def __init__(self, factory: Callable[[], ContainerEngine], on_lost: Callable[[str], None]) -> None:
        self._factory = factory
        self._on_lost = on_lost
        self._engine: ContainerEngine | None = None

    async def get(self) -> ContainerEngine:
        """The engine, connected (and verified) now if need be."""
        if self._engine is None:
            self._engine = await self.call(self._factory)
        return self._engine

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a short blocking engine call in a thread."""
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except EngineUnavailable as exc:
            self.lost(str(exc))
            raise OperationError(str(exc)) from None

    def lost(self, reason: str) -> None:
        """The engine went away: forget the connection and say so."""
        self._engine = None
        self._on_lost(reason)

    def forget(self) -> None:
        """Connect afresh next time (the engine misbehaved, but is not known to be gone)."""
        self._engine = None

    def close(self) -> None:
        """Let go of the connection."""
        if self._engine is not None:
            with contextlib.suppress(Exception):
                self._engine.close()
            self._engine = None
