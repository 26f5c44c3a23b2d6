"""The Textual console. It reaches the backend only through ``BackendClient``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message

from moltconsole.client import BackendClient, BackendError
from moltconsole.resources import styles_dir
from moltconsole.screens.dashboard import DashboardScreen
from moltconsole.settings import Settings


class StatusChanged(Message):
    """A status snapshot (or a lost connection) arrived from the backend."""

    def __init__(self, status: dict[str, Any] | None, connected: bool) -> None:
        super().__init__()
        self.status = status
        self.connected = connected


class MoltConsole(App[None]):
    """moltconsole's terminal UI."""

    TITLE = "moltconsole"
    CSS_PATH = [str(styles_dir() / "app.tcss")]
    BINDINGS = [Binding("q", "quit", "Quit", id="app.quit")]

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock
        self.client = BackendClient(settings.socket_path)
        self.status: dict[str, Any] | None = None
        self.status_seen = asyncio.Event()  # set once the first snapshot is on screen

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen())
        self.follow_events()

    async def on_unmount(self) -> None:
        await self.client.aclose()

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        """Follow the backend's event stream; reconnect when it goes away."""
        delay = 0.2
        while True:
            try:
                async for message in self.client.events():
                    if message.get("type") == "status":
                        self.post_message(StatusChanged(message["status"], True))
                        delay = 0.2
            except BackendError:
                pass
            self.post_message(StatusChanged(self.status, False))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @on(StatusChanged)
    def _status_changed(self, event: StatusChanged) -> None:
        self.status = event.status
        screen = self.screen
        if isinstance(screen, DashboardScreen):
            screen.apply_status(event.status, event.connected)
        if event.status is not None:
            self.status_seen.set()

    @work(exclusive=True, group="action")
    async def action_sandbox_action(self, name: str) -> None:
        """Run a lifecycle action in the background; its effect arrives as events."""
        try:
            await self.client.action(name, wait=False)
        except BackendError as exc:
            screen = self.screen
            if isinstance(screen, DashboardScreen):
                screen.show_message(str(exc))
