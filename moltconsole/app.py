"""The Textual console. It reaches the backend only through ``BackendClient``.

The app owns the connection: one worker follows the event stream through a
:class:`~moltconsole.streams.StreamFollower`, which reconnects by itself and says how the
connection stands (:class:`LinkChanged`); the status bar of every screen shows it (connected,
or lost at a time and reconnecting). When nothing answers on the socket any more the backend is
gone: given a ``backend_starter`` (the launcher's, as ``moltconsole`` passes it), the app starts
a new one once per loss, says what it did, and wakes every stream of the screens so they
reconnect at once; if the start fails it says why and offers a key to try again. Screens
receive status snapshots as messages and never block on I/O.

One backend supervises several sandboxes; the console shows one at a time, the one
``client.sandbox`` names (None: the backend's default, whose name the app asks the backend
for, so the header can say it). The picker (``o``) or the Dashboard's table of all sandboxes
switches: :meth:`MoltConsole.select_sandbox` points the client at the other sandbox, restarts
the event follower, has the Dashboard start over, and drops the Logs, Costs and Memory screens
so they are built again for it. Messages from the streams of the sandbox shown before carry its
``generation`` and are dropped. A sandbox that is gone (removed while shown) is noticed when
its stream is refused or a list lacks it: the console says so and goes back to the default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from textual import on, work
from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from moltconsole.client import BackendClient, BackendError
from moltconsole.launcher import BackendLaunch, started_backend_notice
from moltconsole.resources import styles_dir
from moltconsole.sandbox_list import SandboxListing, list_sandboxes
from moltconsole.screens.dashboard import DashboardScreen
from moltconsole.screens.help import HelpScreen
from moltconsole.screens.sandbox_picker import SandboxPickerScreen
from moltconsole.settings import Settings
from moltconsole.streams import StreamFollower, StreamState, Wakeup
from moltconsole.widgets.status_bar import StatusBar

BackendStarter = Callable[[], Awaitable[BackendLaunch]]
# How long toasts stay: an 80x24 terminal loses half its screen to a few of them.
INFO_NOTICE_S = 6.0
KEYS_NOTICE_S = 12.0  # a missing key, told once; the Dashboard's banner keeps saying it
KEYS_TOAST = (
    "the backend started from this shell's environment lacks a provider key, so the agent's "
    "calls fail; the red line on the Dashboard says how to set it."
)


class StatusChanged(Message):
    """A status snapshot (or a lost connection) arrived from the backend.

    ``generation`` is the app's ``sandbox_generation`` when the stream was opened (None: the
    current one); a snapshot of the sandbox shown before a switch is dropped.
    """

    def __init__(self, status: dict[str, Any] | None, connected: bool, generation: int | None = None) -> None:
        super().__init__()
        self.status = status
        self.connected = connected
        self.generation = generation


class LinkChanged(Message):
    """The connection to the backend (the app's event stream) connected, or was lost."""

    def __init__(self, state: StreamState, generation: int | None = None) -> None:
        super().__init__()
        self.state = state
        self.generation = generation


class SandboxesListed(Message):
    """An answer to "which sandboxes are there" (the list, or why not), from any asker."""

    def __init__(self, listing: SandboxListing) -> None:
        super().__init__()
        self.listing = listing


class BackendStarted(Message):
    """A new backend answers (``launch``), or starting one failed (``problem`` says why)."""

    def __init__(self, launch: BackendLaunch | None, problem: str | None = None) -> None:
        super().__init__()
        self.launch = launch
        self.problem = problem


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
        Binding("4", "switch_mode('memory')", "Memory", id="app.memory"),
        Binding("o", "pick_sandbox", "Sandboxes", id="app.sandboxes"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
        # Shown only after starting a new backend failed (check_action).
        Binding("ctrl+r", "start_backend", "Start backend", id="app.start_backend"),
    ]

    def __init__(
        self, settings: Settings, *, clock: Callable[[], float] = time.time,
        client: BackendClient | None = None, notices: Iterable[str] = (),
        backend_starter: BackendStarter | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        # What the launcher had to say (a backend started without keys), shown once mounted.
        self._notices = list(notices)
        # Set once the console told of a backend without keys: the banner keeps saying it after.
        self.keys_notified = bool(self._notices)
        self.clock = clock
        self.client = client or BackendClient(settings.socket_path)
        self.status: dict[str, Any] | None = None
        self.connected: bool | None = None  # None until the first attempt has an answer
        self.status_seen = asyncio.Event()  # set once the first snapshot is on screen
        self.connection_lost = asyncio.Event()  # set whenever the backend is unreachable
        self.link = StreamState("the event stream", "connecting")
        # Every stream of the app and its screens waits on this between attempts: the app
        # fires it when the backend is back, so they all reconnect at once.
        self.wakeup = Wakeup()
        # Starts a backend when none answers; None (tests, embedding) only reconnects.
        self.backend_starter = backend_starter
        self.restart: Literal["starting", "failed"] | None = None
        self.restart_problem: str | None = None
        self.restart_settled = asyncio.Event()  # set when a start of a new backend ended
        self._restart_armed = True  # one automatic start per loss; the key tries again
        # The sandbox shown: its name once known (the client's, or the backend's default's), and
        # a count of switches that tells a stale stream's messages from current ones.
        self.sandbox_name: str | None = self.client.sandbox
        self.default_sandbox: str | None = None
        self.sandbox_generation = 0
        self.sandboxes_seen = asyncio.Event()  # set once the first list (or why not) arrived
        self.add_mode("dashboard", DashboardScreen)
        self.add_mode("logs", self._logs_screen)
        self.add_mode("costs", self._costs_screen)
        self.add_mode("memory", self._memory_screen)

    def _logs_screen(self) -> Screen[Any]:
        from moltconsole.screens.logs import LogsScreen

        screen: Screen[Any] = LogsScreen(self.client)
        return screen

    def _costs_screen(self) -> Screen[Any]:
        from moltconsole.screens.costs import CostsScreen

        # Budgets and their warning threshold are the backend's: the screen reads them from the API.
        # "This sandbox" by its name in the ledger; unknown (an older backend): all of them.
        screen: Screen[Any] = CostsScreen(self.client, clock=self.clock, sandbox=self.sandbox_name)
        return screen

    def _memory_screen(self) -> Screen[Any]:
        from moltconsole.screens.memory import MemoryScreen

        # The memory client addresses the sandbox selected now; a switch builds the screen again.
        screen: Screen[Any] = MemoryScreen(self.client.memory, clock=self.clock, sandbox=self.sandbox_name)
        return screen

    def on_mount(self) -> None:
        self._apply_console_settings()
        # A screen shown again missed the changes made while another was shown (a screen's
        # ScreenResume does not reach the app); one not mounted yet reads them when it mounts.
        self.screen_change_signal.subscribe(
            self, lambda screen: self._show_status(screen) if screen.is_mounted else None
        )
        self.switch_mode("dashboard")
        self.follow_events()
        if self._notices:  # the launcher's whole text is long for a toast: the banner has the fix
            self.notify(KEYS_TOAST, title="backend", severity="error", markup=False, timeout=KEYS_NOTICE_S)

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
        """Follow the shown sandbox's event stream until the app ends or another is shown.

        The sandboxes are listed first (until the default's name is known), so the header has
        the name with the first status.
        """
        generation = self.sandbox_generation
        if self.default_sandbox is None:
            self.post_message(SandboxesListed(await list_sandboxes(self.client)))
        follower = StreamFollower(
            "the event stream", self.client.events, wakeup=self.wakeup, clock=self.clock,
            on_state=lambda state: self.post_message(LinkChanged(state, generation)),
        )
        async for message in follower:
            kind = message.get("type")
            if kind == "status":
                self.post_message(StatusChanged(message["status"], True, generation))
            elif kind in ("progress", "notice"):
                self.post_message(BackendNotice(message))

    def _stale(self, generation: int | None) -> bool:
        """Whether a message came from a stream of the sandbox shown before a switch."""
        return generation is not None and generation != self.sandbox_generation

    @on(LinkChanged)
    def _link_changed(self, event: LinkChanged) -> None:
        if self._stale(event.generation):
            return
        state = event.state
        if state.cause == "refused" and self.client.sandbox is not None:
            self.check_sandbox()  # refused for this sandbox: it may have been removed
        self.link = state
        if state.connected:
            if self.connected is False:
                self.wakeup.fire()  # the backend is back: the screens' streams retry now
            self._restart_armed = True
            if self.restart == "failed":
                self.restart = None  # started by other means meanwhile
            return  # the status that follows says connected
        if state.phase == "connecting":
            return
        self.connected = False
        self.connection_lost.set()
        if state.unreachable and self._restart_armed and self.restart is None:
            self._restart_armed = False
            self._start_backend()
        self._show_status(self._current_screen())

    def _start_backend(self) -> None:
        if self.backend_starter is None:
            return
        self.restart = "starting"
        self.restart_problem = None
        self.restart_settled.clear()
        self.refresh_bindings()
        self.start_backend(self.backend_starter)

    @work(exclusive=True, group="backend-start")
    async def start_backend(self, starter: BackendStarter) -> None:
        """Start a backend as ``moltconsole`` does at launch, or attach to one that answers."""
        try:
            launch = await starter()
        except BackendError as exc:
            self.post_message(BackendStarted(None, str(exc)))
        except OSError as exc:  # e.g. the data directory for its log cannot be written
            self.post_message(BackendStarted(None, f"cannot start the backend: {exc}"))
        else:
            self.post_message(BackendStarted(launch))

    @on(BackendStarted)
    def _backend_started(self, event: BackendStarted) -> None:
        if event.launch is None:
            self.restart = "failed"
            self.restart_problem = event.problem
            self.notify(
                f"the backend is gone and a new one did not start: {event.problem} "
                f"Press {self._start_key()} to try again.",
                title="backend", severity="error", markup=False, timeout=30,
            )
        else:
            self.restart = None
            self.notify(f"the backend had stopped; {event.launch.describe()}.", title="backend",
                        markup=False, timeout=INFO_NOTICE_S)
            keys = started_backend_notice(event.launch.health) if event.launch.how == "started" else ""
            if keys and not self.keys_notified:
                self.keys_notified = True
                self.notify(KEYS_TOAST, title="backend", severity="error", markup=False,
                            timeout=KEYS_NOTICE_S)
            self.wakeup.fire()  # reconnect now, not at the end of the current pause
        self.refresh_bindings()
        self._show_status(self._current_screen())
        self.restart_settled.set()

    def action_start_backend(self) -> None:
        """Try again to start a backend, after an automatic start failed."""
        if self.restart == "failed":
            self._start_backend()
            self._show_status(self._current_screen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The start-backend key exists only while there is a failed start to retry."""
        if action == "start_backend":
            return self.restart == "failed"
        return True

    def _start_key(self) -> str:
        """The key that starts a backend, as remapped in the keymap."""
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                if binding.id == "app.start_backend":
                    return binding.key_display or binding.key  # words, not "^r"
        return "ctrl+r"

    def link_text(self) -> str | None:
        """How the connection stands, for the status bar: None while connected."""
        if self.connected or self.link.phase != "reconnecting":
            return None
        if self.restart == "starting":
            return "gone; starting a new one…"
        if self.restart == "failed":
            return f"gone, and a new one did not start; {self._start_key()} tries again"
        since = time.strftime("%H:%M:%S", time.localtime(self.link.since or 0))
        return f"disconnected, reconnecting since {since}…"

    @on(StatusChanged)
    def _status_changed(self, event: StatusChanged) -> None:
        if self._stale(event.generation):
            return
        self.status = event.status
        self.connected = event.connected
        if event.connected:
            self.connection_lost.clear()
        else:
            self.connection_lost.set()
        self._show_status(self._current_screen())
        if event.status is not None:
            self.status_seen.set()

    @on(BackendNotice)
    def _backend_notice(self, event: BackendNotice) -> None:
        screen = self._current_screen()
        if isinstance(screen, DashboardScreen):
            screen.add_notice(event.message)
        if event.message.get("type") == "notice":
            self.notify(str(event.message.get("message", "")), severity="warning", markup=False)

    def _current_screen(self) -> Screen[Any] | None:
        """The screen shown, or None before the first one and while the app shuts down."""
        try:
            return self.screen
        except ScreenStackError:  # a status or a notice can still arrive as the stack empties
            return None

    def _show_status(self, screen: Screen[Any] | None) -> None:
        if screen is None:
            return  # the next screen shown reads the app's status when it mounts
        for bar in screen.query(StatusBar):
            bar.connected = self.connected
            bar.status = self.status
            bar.link = self.link_text()
            bar.sandbox = self.sandbox_name
        if isinstance(screen, DashboardScreen):
            screen.apply_status(self.status, self.connected)

    # --- several sandboxes ------------------------------------------------------------------
    @work(exclusive=True, group="sandbox-check")
    async def check_sandbox(self) -> None:
        """Look whether the shown sandbox still exists (its stream was refused)."""
        self.post_message(SandboxesListed(await list_sandboxes(self.client)))

    @on(SandboxesListed)
    def _sandboxes_listed(self, event: SandboxesListed) -> None:
        self.sandboxes_listed(event.listing)

    def sandboxes_listed(self, listing: SandboxListing) -> None:
        """Learn from a list of the sandboxes (whoever asked): the default's name, for the header,
        and whether the one shown is still there; if it is not, say so and show the default."""
        self.sandboxes_seen.set()
        if listing.problem is not None:
            return  # the picker and the table say why; the header just goes without a name
        self.default_sandbox = listing.default
        shown = self.client.sandbox
        if shown is not None and listing.named(shown) is None:
            self.notify(
                f"sandbox {shown!r} is not on the backend any more (it was removed); showing the "
                f"default sandbox {listing.default!r}. The picker (o) lists the others.",
                title="sandbox gone", severity="warning", markup=False, timeout=15,
            )
            self.select_sandbox(None)
            return
        if self.sandbox_name is None:
            self.sandbox_name = listing.default
            self._show_status(self._current_screen())

    def select_sandbox(self, name: str | None) -> None:
        """Show sandbox ``name`` (None, or the default's name: the default) on every screen.

        Back to the Dashboard, which starts over for it; the Logs, Costs and Memory screens are
        dropped and built again for it when next shown; the event stream follows it from now on.
        """
        target = None if name is None or name == self.default_sandbox else name
        self.client.sandbox = target
        self.sandbox_name = target or self.default_sandbox
        self.sandbox_generation += 1
        self.status = None
        self.status_seen.clear()
        self.switch_mode("dashboard")
        for mode, factory in (("logs", self._logs_screen), ("costs", self._costs_screen),
                              ("memory", self._memory_screen)):
            self.remove_mode(mode)  # its screens (and their streams) go after this message
            self.add_mode(mode, factory)
        screen = self._current_screen()
        if isinstance(screen, DashboardScreen):
            screen.show_other_sandbox()
        self.follow_events()
        self._show_status(screen)

    def action_pick_sandbox(self) -> None:
        """Choose the sandbox to show from the backend's list."""
        if isinstance(self.screen, SandboxPickerScreen):
            self.pop_screen()
            return

        def chosen(name: str | None) -> None:
            if name is None:
                return
            if name == self.sandbox_name:
                self.notify(f"already showing sandbox {name!r}", markup=False, timeout=INFO_NOTICE_S)
                return
            self.select_sandbox(name)

        # A toast would stay drawn on the screen behind the list: they go before it opens.
        self.clear_notifications()
        self.push_screen(SandboxPickerScreen(self.client, self.sandbox_name), chosen)

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
