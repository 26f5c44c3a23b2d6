"""The Textual console. It reaches the backend only through ``BackendClient``.

The app owns the connection (one event-stream worker, reconnecting by itself) and the
screens; screens receive status snapshots as messages and never block on I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from moltconsole.client import BackendClient, BackendError
from moltconsole.resources import styles_dir
from moltconsole.screens.dashboard import DashboardScreen
from moltconsole.screens.help import HelpScreen
from moltconsole.settings import Settings
from moltconsole.widgets.status_bar import StatusBar


class StatusChanged(Message):
    """A status snapshot (or a lost connection) arrived from the backend."""

    def __init__(self, status: dict[str, Any] | None, connected: bool) -> None:
        super().__init__()
        self.status = status
        self.connected = connected


class BackendNotice(Message):
    """A notice from the backend (build progress, OOM, internal errors)."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__()
        self.message = message


def _stylesheets() -> list[str]:
    """app.tcss first (the base), then one file per screen."""
    files = sorted(styles_dir().glob("*.tcss"), key=lambda p: (p.name != "app.tcss", p.name))
    return [str(p) for p in files]


class MoltConsole(App[None]):
    """moltconsole's terminal UI."""

    TITLE = "moltconsole"
    CSS_PATH = _stylesheets()  # type: ignore[assignment]
    BINDINGS = [
        Binding("1", "switch_mode('dashboard')", "Dashboard", id="app.dashboard"),
        Binding("2", "switch_mode('logs')", "Logs", id="app.logs"),
        Binding("3", "switch_mode('costs')", "Costs", id="app.costs"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self, settings: Settings, *, clock: Callable[[], float] = time.time,
        client: BackendClient | None = None, notices: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.settings = settings
        # What the launcher had to say (a backend started without keys), shown once mounted.
        self._notices = list(notices)
        self.clock = clock
        self.client = client or BackendClient(settings.socket_path)
        self.status: dict[str, Any] | None = None
        self.connected: bool | None = None  # None until the first attempt has an answer
        self.status_seen = asyncio.Event()  # set once the first snapshot is on screen
        self.connection_lost = asyncio.Event()  # set whenever the backend is unreachable
        self.add_mode("dashboard", DashboardScreen)
        self.add_mode("logs", self._logs_screen)
        self.add_mode("costs", self._costs_screen)

    def _logs_screen(self) -> Screen[Any]:
        from moltconsole.screens.logs import LogsScreen

        screen: Screen[Any] = LogsScreen(self.client)
        return screen

    def _costs_screen(self) -> Screen[Any]:
        from moltconsole.screens.costs import CostsScreen

        # Budgets and their warning threshold are the backend's: the screen reads them from the API.
        screen: Screen[Any] = CostsScreen(self.client, clock=self.clock)
        return screen

    def on_mount(self) -> None:
        self._apply_console_settings()
        self.switch_mode("dashboard")
        self.follow_events()
        for text in self._notices:
            self.notify(text, title="backend", severity="error", markup=False, timeout=30)

    def _apply_console_settings(self) -> None:
        console = self.settings.console
        if console.theme in self.available_themes:
            self.theme = console.theme
        else:
            known = ", ".join(sorted(self.available_themes))
            self.notify(f"unknown theme {console.theme!r} in console.theme; known: {known}",
                        severity="warning", timeout=10)
        if console.keymap:
            from moltconsole.keymap import binding_ids, unknown_keymap_ids

            for line in unknown_keymap_ids(console.keymap, binding_ids((type(self),))):
                self.notify(line, severity="warning", timeout=10, markup=False)
            self.set_keymap(console.keymap)

    async def on_unmount(self) -> None:
        await self.client.aclose()

    # --- backend connection ------------------------------------------------------------------
    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        """Follow the backend's event stream; reconnect when it goes away."""
        delay = 0.2
        while True:
            try:
                async for message in self.client.events():
                    kind = message.get("type")
                    if kind == "status":
                        self.post_message(StatusChanged(message["status"], True))
                        delay = 0.2
                    elif kind in ("progress", "notice"):
                        self.post_message(BackendNotice(message))
            except BackendError:
                pass
            self.post_message(StatusChanged(self.status, False))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @on(StatusChanged)
    def _status_changed(self, event: StatusChanged) -> None:
        self.status = event.status
        self.connected = event.connected
        if event.connected:
            self.connection_lost.clear()
        else:
            self.connection_lost.set()
        self._show_status(self.screen)
        if event.status is not None:
            self.status_seen.set()

    @on(BackendNotice)
    def _backend_notice(self, event: BackendNotice) -> None:
        screen = self.screen
        if isinstance(screen, DashboardScreen):
            screen.add_notice(event.message)
        if event.message.get("type") == "notice":
            self.notify(str(event.message.get("message", "")), severity="warning", markup=False)

    def _show_status(self, screen: Screen[Any]) -> None:
        for bar in screen.query(StatusBar):
            bar.connected = self.connected
            bar.status = self.status
        if isinstance(screen, DashboardScreen):
            screen.apply_status(self.status, self.connected)

    @on(events.ScreenResume)
    def _screen_resumed(self, event: events.ScreenResume) -> None:
        self._show_status(self.screen)

    # --- actions ----------------------------------------------------------------------------
    @work(exclusive=True, group="action")
    async def action_sandbox_action(self, name: str) -> None:
        """Run a lifecycle action in the background; its effect arrives as events."""
        try:
            await self.client.action(name, wait=False)
        except BackendError as exc:
            self.notify(str(exc), title=f"{name} failed", severity="error", markup=False, timeout=10)

    def action_help(self) -> None:
        """Show every key of this screen and of the app, generated from the bindings."""
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette: every action of the current screen, the screens, then Textual's own."""
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or not active.enabled:
                continue
            node = active.node
            action = binding.action

            def run(action: str = action, node: Any = node) -> None:
                self.run_worker(self.run_action(action, node), exclusive=False)

            yield SystemCommand(binding.description, f"key: {binding.key_display or binding.key}", run)
        yield from super().get_system_commands(screen)
