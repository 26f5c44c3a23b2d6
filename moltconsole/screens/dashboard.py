"""The dashboard: sandbox state and health, resources, processes, pairing requests, events.

The events panel is the sandbox's history as the backend keeps it (``/v1/events?history=N``,
followed by a worker of this screen, so it keeps up while another screen is shown): what
happened, when it happened, also while no console was open. The console's own doings (a
pairing decided, a shell that ended, a replaced backend) are added between them by time, and
build progress lines while a build runs; neither is kept by the backend.

Memory is the working set (what the limit kills for), with the reclaimable page cache on a line
of its own; while the working set is near the limit, the backend's warning is an alert on top.

Above them, only while there is something to act on, the AI gateway's alerts: a provider in use
without a key (with the command that sets it) and a budget that is spent (red) or past its
warning threshold (yellow). They come from the ``gateway`` block of ``/v1/health``, fetched
every few seconds and at each reconnection; a change of the backend's pid there means the
backend was replaced, which the events log says (and a notification, if the new one lacks keys).

The agent's memory (its files kept with history, issue 11) has one line among the facts: the
last snapshot, and the bucket when it is unreachable. Its status is asked for each time the
history stream (re)connects, just before it, and every :data:`MEMORY_POLL_S`; the Memory
screen (4) has the rest. A backend without memory routes (older) leaves the line out.

All sandboxes at a glance: ``A`` puts a table of the backend's sandboxes (state, uptime, CPU,
memory, spend today; the one shown marked) in place of the panels, fetched every
:data:`FLEET_POLL_S` while it shows; enter on a row shows that sandbox's dashboard. When the app
switches to another sandbox the screen starts over (:meth:`DashboardScreen.show_other_sandbox`);
each worker's message carries the app's ``sandbox_generation`` from when it started, so what
the sandbox shown before still sends is dropped.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, RichLog, Static

from moltconsole.client import BackendError, BackendUnreachable
from moltconsole.formatting import duration
from moltconsole.sandbox_list import SandboxListing, list_sandboxes
from moltconsole.screens.confirm import ConfirmScreen
from moltconsole.streams import StreamFollower, StreamState, shared_wakeup
from moltconsole.widgets.cells import fit, shorten_path, terminal_safe
from moltconsole.widgets.fitting_footer import SCREEN_SWITCHES, FittingFooter
from moltconsole.widgets.memory_format import dashboard_words
from moltconsole.widgets.sandbox_table import FLEET_COLUMNS, SandboxTable
from moltconsole.widgets.scaled_sparkline import ScaledSparkline
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.events import EventFormatError, SandboxEvent
from moltconsole_shared.wire.memory import MemoryStatus
from moltconsole_shared.wire.sandbox import RUNNING_STATES
from moltconsole_shared.wire.status import GatewayStatus, budget_line

RUNNING = RUNNING_STATES  # the states in which the container runs
SHORT_TERMINAL = 36  # rows under which the facts are compact
HISTORY = 120  # samples kept for the sparklines (two minutes at one a second)
GATEWAY_POLL_S = 5.0  # how often the gateway's keys and budget are looked at
NO_SAMPLES = "· no samples yet"
NOT_RUNNING = "· stopped"
DEVICE_NAME_CELLS = (10, 32)  # the room a device's name gets in the pairing list, at least and most
EVENTS_SHOWN = 200  # recorded events asked for and kept in the panel
LEVEL_STYLES = {"error": "red", "warning": "yellow"}
KEYS_NOTICE_S = 12.0  # a missing key's toast; the banner keeps saying it after
FLEET_POLL_S = 2.0  # how often the table of all sandboxes is fetched while it shows
MEMORY_POLL_S = 5.0  # how often the memory's sync status is looked at


def counted(count: Any, noun: str) -> str:
    """``1 restart``, ``2 restarts``: the noun takes an s unless there is one."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


LABEL_CELLS = len("AI gateway") + 2  # the facts' label column and the gap after it
REASON_LINES_SHORT, REASON_LINES = 2, 4  # the most lines a state's reason takes in the panel


def clip_lines(text: str, width: int, most: int) -> Text:
    """``text`` in at most ``most`` lines of ``width`` cells, the last ending in "…" if cut."""
    if width <= 1:
        return Text(text)
    lines = wrap_at_slashes(text, width).split("\n")
    if len(lines) <= most:
        return Text("\n".join(lines))
    last = Text(lines[most - 1])
    last.truncate(width - 1)
    return Text("\n".join([*lines[: most - 1], last.plain.rstrip() + "…"]))


class SandboxPanel(Static):
    """The sandbox's facts as a two-column table.

    ``compact`` (a short terminal) puts related facts on one line and leaves the OpenClaw version
    to the status bar, so every fact stays in view (a reason of two lines too, under an alert);
    a long state directory is shortened from the left to the panel's width.
    """

    compact = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[dict[str, Any] | None, float] = (None, 0.0)
        # The memory's sync status, and whether the backend has one to give (an older has not).
        self.memory: MemoryStatus | None = None
        self.memory_known = False

    def on_resize(self) -> None:
        self.show(*self._shown)

    def show(self, status: dict[str, Any] | None, now: float) -> None:
        """Render ``status`` (None while unknown)."""
        self._shown = (status, now)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        if status is None:
            table.add_row("state", "waiting for the backend…")
            self.update(table)
            return
        started = status.get("started_at")
        running = status["state"] in RUNNING
        uptime = duration(now - started) if started and running else "-"
        code = status.get("last_exit_code")
        container = (status.get("container_id") or "-")[:12]
        if self.compact:
            table.add_row("state", Text(f"{status['state']} (wanted {status.get('desired', '?')})"))
        else:
            table.add_row("state", Text(status["state"]))
        room = self.content_size.width - LABEL_CELLS
        if status.get("reason"):
            # Capped, so the rows below and the border stay in view; the events have it whole.
            most = REASON_LINES_SHORT if self.compact else REASON_LINES
            table.add_row("reason", clip_lines(terminal_safe(sanitize(status["reason"])), room, most))
        if self.compact:  # the OpenClaw version is in the status bar above
            table.add_row("container", container)
            restarts = f"{uptime} · {counted(status.get('restarts', 0), 'restart')}"
            table.add_row("uptime", restarts + ("" if code is None else f" · exit {code}"))
        else:
            table.add_row("wanted", status.get("desired", "?"))
            table.add_row("OpenClaw", status.get("openclaw_version") or "?")
            table.add_row("image", status.get("image") or "-")
            table.add_row("container", container)
            table.add_row("uptime", uptime)
            table.add_row("restarts", str(status.get("restarts", 0)))
            table.add_row("last exit", "-" if code is None else str(code))
        table.add_row("gateway", status.get("gateway_url") or "-")
        table.add_row("AI gateway", status.get("model_gateway") or "off")
        if self.memory_known:
            words, style = dashboard_words(self.memory, now)
            line = clip_lines(terminal_safe(words), room, 2)
            line.stylize(style)
            table.add_row("snapshots", line)
        table.add_row("state dir", shorten_path(status.get("state_dir") or "-", room))
        self.update(table)


class SandboxMessage(Message):
    """A message about the sandbox shown; ``generation`` is the app's ``sandbox_generation``
    when the worker that sent it started (None: the current one)."""

    def __init__(self, generation: int | None = None) -> None:
        super().__init__()
        self.generation = generation


class StatsArrived(SandboxMessage):
    """One resource sample from the backend's stats stream."""

    def __init__(self, sample: dict[str, Any], generation: int | None = None) -> None:
        super().__init__(generation)
        self.sample = sample


class StatsStreamState(SandboxMessage):
    """The stats stream connected, or was lost (the labels say so while the sandbox runs)."""

    def __init__(self, state: StreamState, generation: int | None = None) -> None:
        super().__init__(generation)
        self.state = state


class ProcessesArrived(SandboxMessage):
    """The container's process table."""

    def __init__(self, table: dict[str, Any], generation: int | None = None) -> None:
        super().__init__(generation)
        self.table = table


class FleetListed(Message):
    """The backend's sandboxes for the table of all of them, or why not."""

    def __init__(self, listing: SandboxListing) -> None:
        super().__init__()
        self.listing = listing


class MemoryArrived(SandboxMessage):
    """The memory's sync status (None: this backend has none to give)."""

    def __init__(self, memory: MemoryStatus | None, generation: int | None = None) -> None:
        super().__init__(generation)
        self.memory = memory


class GatewayArrived(Message):
    """The backend's health: its pid and its gateway block (keys, budget)."""

    def __init__(self, health: dict[str, Any]) -> None:
        super().__init__()
        self.health = health


def key_alerts(gateway: GatewayStatus) -> str:
    """One short line per missing credential (the command names the variable), or ""."""
    lines = []
    if gateway.keys_file_error:
        lines.append(f"keys file not read: {gateway.keys_file_error}")
    for gap in gateway.missing_keys:
        lines.append(f"{gap.provider} has no key: {gap.command}" if gap.command else gap.message)
    return "\n".join(lines)


class HistoryArrived(SandboxMessage):
    """The backend's recorded events, oldest first: sent first on each (re)connection."""

    def __init__(self, events: list[SandboxEvent], generation: int | None = None) -> None:
        super().__init__(generation)
        self.events = events


class EventArrived(SandboxMessage):
    """One event the backend recorded after the history was sent."""

    def __init__(self, event: SandboxEvent, generation: int | None = None) -> None:
        super().__init__(generation)
        self.event = event


def event_stamp(when: float, now: float) -> str:
    """``HH:MM:SS`` for today (local time), with the date for older events."""
    local = time.localtime(when)
    if time.localtime(now)[:3] == local[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%b %d %H:%M", local)


class DevicesArrived(SandboxMessage):
    """Pending pairing requests and paired devices."""

    def __init__(self, devices: dict[str, Any], generation: int | None = None) -> None:
        super().__init__(generation)
        self.devices = devices


@dataclass(frozen=True)
class ProcessColumn:
    """One column of the process table as shown: which title of ``ps`` it takes, how wide."""

    label: str
    index: int  # in the rows as the backend sends them
    width: int
    kind: str  # "number", "rss" (KiB from ps, shown in MiB) or "text" (cut with …)

    def cell(self, row: list[str]) -> Text:
        """This column's cell of ``row``."""
        value = row[self.index] if self.index < len(row) else ""
        if self.kind == "rss":
            value = rss_mib(value)
        if self.kind == "text":
            return fit(value, self.width)
        return Text(value, justify="right", no_wrap=True)


# The columns kept at any width, by the titles `ps` gives them; the others need a wide panel.
ESSENTIAL = {"PID", "%CPU", "C", "RSS"}
COMMANDS = {"COMMAND", "CMD", "ARGS"}
COMMAND_MIN_CELLS = 30  # the command's room below which the optional columns are dropped


def rss_mib(kib: str) -> str:
    """``ps``'s resident size (KiB) in MiB; anything else as it came."""
    try:
        mib = int(kib) / 1024
    except ValueError:
        return kib
    return f"{mib:.1f}" if mib < 10 else f"{mib:,.0f}"


def process_columns(titles: list[str], rows: list[list[str]], room: int) -> list[ProcessColumn]:
    """The columns to show in ``room`` cells: the essential ones, the others when the command
    keeps ``COMMAND_MIN_CELLS`` beside them, and the command in all that is left."""

    def column(index: int, title: str) -> ProcessColumn:
        kind = "rss" if title == "RSS" else "number"
        label = "RSS MiB" if kind == "rss" else title
        cells = [ProcessColumn(label, index, 0, kind).cell(row).cell_len for row in rows]
        return ProcessColumn(label, index, max([len(label), *cells]), kind)

    command = next((i for i, t in enumerate(titles) if t.upper() in COMMANDS), None)
    every = [column(i, t) for i, t in enumerate(titles) if i != command]
    essential = [c for c in every if titles[c.index].upper() in ESSENTIAL]

    def left(columns: list[ProcessColumn]) -> int:  # each column has a cell of padding each side
        return room - sum(c.width + 2 for c in columns) - 2

    shown = every if left(every) >= COMMAND_MIN_CELLS else essential
    if command is not None:
        shown = [*shown, ProcessColumn("COMMAND", command, max(len("COMMAND"), left(shown)), "text")]
    return shown


PAIRING_TITLES = ("request", "device", "role", "from")
PAIRING_DROPPED = ("role", "request")  # the columns a narrow panel goes without, first to last


def pairing_row(entry: dict[str, Any]) -> list[str]:
    """A pending pairing request's cells, in the order of ``PAIRING_TITLES``."""
    name = entry.get("displayName") or entry.get("clientId") or entry.get("deviceId") or "?"
    return [
        sanitize(str(entry.get("requestId", "?")))[:8], terminal_safe(sanitize(str(name))),
        sanitize(str(entry.get("role", "?"))), sanitize(str(entry.get("remoteIp") or "?")),
    ]


def pairing_columns(rows: list[list[str]], room: int) -> list[tuple[str, int, int]]:
    """(title, index, width) of the columns to show in ``room`` cells: the device's name takes
    what the others leave (within ``DEVICE_NAME_CELLS``), the role and then the request id go
    when it would have less than its least."""
    least, most = DEVICE_NAME_CELLS
    widths = [max([len(t), *(cell_len(r[i]) for r in rows)]) for i, t in enumerate(PAIRING_TITLES)]
    titles = list(PAIRING_TITLES)
    for dropped in (None, *PAIRING_DROPPED):
        if dropped is not None:
            titles.remove(dropped)
        # Each column has a cell of padding each side.
        left = room - sum(widths[PAIRING_TITLES.index(t)] + 2 for t in titles if t != "device") - 2
        if left >= least:
            break
    name = min(max(left, least), most, widths[1])
    return [(t, i, name if t == "device" else widths[i]) for i, t in enumerate(PAIRING_TITLES) if t in titles]


def wrap_at_slashes(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` cells, between words or after a ``/`` of
    a path (Rich would cut a long path anywhere); a piece longer than a line is cut where it must."""
    lines: list[str] = []
    line = ""
    for piece in re.findall(r"[^ /]*/+|[^ /]+ *| +", text):
        if cell_len((line + piece).rstrip()) <= width:
            line += piece
            continue
        if line.strip():
            lines.append(_ending_within(line, width))
        line = piece.lstrip()
        while cell_len(line.rstrip()) > width:
            head = Text(line)
            head.truncate(width)
            lines.append(head.plain)
            line = line[len(head.plain):]
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return "\n".join(lines)


def _ending_within(line: str, width: int) -> str:
    """``line`` with the spaces it ends with, as many as fit: the lines joined again read as
    the text did, as they do when Rich wraps them."""
    words = line.rstrip()
    return words + " " * min(len(line) - len(words), max(width - cell_len(words), 0))


class EventsLog(RichLog):
    """The events panel: its newest lines stay in view when its height changes (an alert shown
    above, the resources panel growing a line), and it says when its width changes (shown again
    after the table of all sandboxes hid it), so its lines are wrapped again for the new one."""

    class Resized(Message):
        """The panel has another width than its lines were wrapped for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._width = 0

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        self.call_after_refresh(self.scroll_end, animate=False)
        self._width_changed()

    def on_hide(self) -> None:
        self._width = 0  # what is written meanwhile is wrapped for no width (RichLog's least)

    def on_show(self) -> None:
        # Shown again: a hidden widget gets no Resize when it gets its size back.
        self.call_after_refresh(self._width_changed)

    def _width_changed(self) -> None:
        if self.size.width != self._width:
            self._width = self.size.width
            self.post_message(self.Resized())


class DashboardScreen(Screen[None]):
    """Sandbox state and lifecycle actions."""

    BINDINGS = [
        Binding("s", "sandbox('start')", "Start", id="sandbox.start"),
        Binding("x", "sandbox('stop')", "Stop", id="sandbox.stop"),
        Binding("r", "sandbox('restart')", "Restart", id="sandbox.restart"),
        Binding("b", "rebuild", "Rebuild", id="sandbox.rebuild", show=False),
        Binding("D", "destroy", "Destroy", id="sandbox.destroy", show=False),
        Binding("T", "rotate_token", "Rotate token", id="sandbox.rotate_token", show=False),
        Binding("e", "shell", "Shell", id="sandbox.shell"),
        Binding("a", "decide('approve')", "Approve", id="devices.approve", show=False),
        Binding("j", "decide('reject')", "Reject", id="devices.reject", show=False),
        Binding("p", "refresh_devices", "Pairings", id="devices.refresh", show=False),
        Binding("A", "toggle_fleet", "All sandboxes", id="sandboxes.all"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._status: dict[str, Any] | None = None
        # Empty until the first sample; the bars are measured against a core and the limit.
        self._cpu: deque[float] = deque(maxlen=HISTORY)
        self._mem: deque[float] = deque(maxlen=HISTORY)
        self.samples = 0  # resource samples shown since the screen was mounted
        self._cpu_text = "CPU"  # the CPU label of the last sample
        self._pending: list[dict[str, Any]] = []
        self._process_table: dict[str, Any] | None = None  # the last one fetched
        self._recorded: dict[int, SandboxEvent] = {}  # the backend's events by seq
        self._local: deque[tuple[float, str]] = deque(maxlen=50)  # the console's own events
        self.history_seen = asyncio.Event()  # set once the backend's history is on screen
        self.event_seen = asyncio.Event()  # set at each recorded event added after the history
        self._backend_pid: int | None = None
        self._connected: bool | None = None
        self.gateway: GatewayStatus | None = None  # the last gateway block seen
        self.gateway_seen = asyncio.Event()  # set once a gateway block is on screen
        self.fleet: SandboxListing | None = None  # the last list for the table of all sandboxes
        self.fleet_seen = asyncio.Event()  # set each time a list is in the table, fitted to its width
        self.memory_seen = asyncio.Event()  # set each time the memory's status is in the facts

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static(id="dash-keys", classes="alert -error")
        yield Static(id="dash-budget", classes="alert")
        yield Static(id="dash-memory-alert", classes="alert -warning")
        with Horizontal(id="dash-top"):
            yield SandboxPanel(id="sandbox-panel")
            with Vertical(id="dash-resources"):
                yield Static(f"CPU {NO_SAMPLES}", id="dash-cpu-label")
                yield ScaledSparkline(list(self._cpu), id="dash-cpu")
                yield Static(f"memory {NO_SAMPLES}", id="dash-mem-label")
                yield Static("", id="dash-cache-label")
                yield ScaledSparkline(list(self._mem), id="dash-mem")
        with Horizontal(id="dash-bottom"):
            yield DataTable(id="dash-processes", cursor_type="none", zebra_stripes=True)
            with Vertical(id="dash-right"):
                yield DataTable(id="dash-devices", cursor_type="row")
                # min_width: wrap at the panel's width (the default 78 scrolls sideways at 80x24).
                yield EventsLog(id="dash-events", max_lines=EVENTS_SHOWN, markup=False, wrap=True,
                                min_width=20)
        with Vertical(id="dash-fleet"):
            yield Static(id="dash-fleet-problem")
            yield SandboxTable(FLEET_COLUMNS, id="dash-fleet-table")
        # The screen switches go first on a narrow terminal; the palette and help list them.
        yield FittingFooter(drop_first=SCREEN_SWITCHES, keep=("app.help", "app.sandboxes"))

    def on_mount(self) -> None:
        self.query_one("#dash-processes").border_title = "processes"
        # The keys below the list: the title stays whole in the narrow right column.
        self.query_one("#dash-devices").border_title = "pairing requests"
        self.query_one("#dash-devices").border_subtitle = "a approve · j reject"
        self.query_one("#dash-events").border_title = "events"
        self.query_one("#dash-resources").border_title = "resources"
        self.query_one("#sandbox-panel").border_title = "sandbox"
        self.query_one("#dash-fleet").border_title = "all sandboxes"
        self.query_one("#dash-fleet-problem").display = False
        self._show_devices()
        self.query_one(SandboxPanel).show(None, time.time())
        self.set_interval(1.0, self._tick)  # keeps the uptime current between events
        self.set_interval(5.0, self._poll_processes)
        self.set_interval(30.0, self.action_refresh_devices)
        self.query_one("#dash-keys").display = False
        self.query_one("#dash-budget").display = False
        self.query_one("#dash-memory-alert").display = False
        self.query_one("#dash-cache-label").display = False
        self.follow_history()
        self.fetch_gateway()
        self.set_interval(GATEWAY_POLL_S, self.fetch_gateway)
        self.set_interval(FLEET_POLL_S, self._poll_fleet)
        self.set_interval(MEMORY_POLL_S, self.fetch_memory)

    def on_resize(self, event: events.Resize) -> None:
        # A short terminal gets the compact facts (and sparklines without a gap below them).
        short = event.size.height < SHORT_TERMINAL
        self.set_class(short, "-short")
        panel = self.query_one(SandboxPanel)
        if panel.compact != short:
            panel.compact = short
            panel.show(self._status, self._now())
        # The log keeps lines as they were wrapped when written: wrap them again at the new
        # width, once the panels have their new sizes; the process table fits its columns.
        self.call_after_refresh(self._redraw_events)
        self.call_after_refresh(self._show_processes)
        self.call_after_refresh(self._show_devices)

    def _now(self) -> float:
        clock = getattr(self.app, "clock", time.time)
        return float(clock())

    def _generation(self) -> int | None:
        """The app's count of sandbox switches (None for an app without several sandboxes)."""
        generation = getattr(self.app, "sandbox_generation", None)
        return generation if isinstance(generation, int) else None

    def _stale(self, message: SandboxMessage) -> bool:
        """Whether ``message`` is about the sandbox shown before a switch."""
        return message.generation is not None and message.generation != self._generation()

    def _tick(self) -> None:
        if self._status is not None:
            self.query_one(SandboxPanel).show(self._status, self._now())

    # --- status and notices ------------------------------------------------------------------
    def apply_status(self, status: dict[str, Any] | None, connected: bool | None) -> None:
        """Show a new status snapshot (called by the app for every event)."""
        was_running = self._sandbox_running()
        if connected and self._connected is False:
            self.fetch_gateway()  # back after a loss: maybe another backend, with other keys
        self._connected = connected
        self._status = status
        self.query_one(SandboxPanel).show(status, self._now())
        warning = (status or {}).get("memory_warning") or ""
        alert = self.query_one("#dash-memory-alert", Static)
        alert.update(Text(sanitize(warning)))
        alert.display = bool(warning)
        self._show_alerts_class()
        if was_running and not self._sandbox_running():
            self.workers.cancel_group(self, "stats")  # no samples until it runs again
            self._cpu_text = "CPU"
            self.query_one("#dash-cpu-label", Static).update(f"CPU {NOT_RUNNING}")
            self.query_one("#dash-mem-label", Static).update(f"memory {NOT_RUNNING}")
            self.query_one("#dash-cache-label", Static).display = False
            self._process_table = None  # those processes are gone
            self._show_processes()
        if self._sandbox_running() and not was_running:
            self.follow_stats()
            self._poll_processes()
            self.action_refresh_devices()

    def add_notice(self, message: dict[str, Any]) -> None:
        """A build progress line, shown while the build runs (the backend does not keep them).

        Backend notices are recorded events: they arrive with the history, not here.
        """
        if message.get("type") == "progress":
            self._event(f"[{message.get('step')}] {message.get('message', '')}", keep=False)

    def _event(self, text: str, *, keep: bool = True) -> None:
        """A line of the console's own; ``keep`` it across redraws of the history."""
        now = self._now()
        if keep:
            self._local.append((now, text))
        self.query_one("#dash-events", RichLog).write(self._line(now, text, None))

    def _line(self, when: float, text: str, level: str | None) -> Text:
        stamp = event_stamp(when, self._now())
        line = f"{stamp} {terminal_safe(sanitize(text))}"
        width = self.query_one("#dash-events", RichLog).scrollable_content_region.width
        if width > 0:  # not laid out yet: the log wraps it, as it can
            line = wrap_at_slashes(line, width)
        return Text(line, style=LEVEL_STYLES.get(level or "", ""))

    # --- the sandbox's history ---------------------------------------------------------------
    @work(exclusive=True, group="history")
    async def follow_history(self) -> None:
        """Follow the backend's recorded events: the history first (again at each reconnection,
        which replaces what is shown), then each new one."""
        app: Any = self.app
        generation = self._generation()

        async def history_stream() -> AsyncIterator[dict[str, Any]]:
            # The memory's status first, so the panel has its line when the history shows.
            try:
                self.post_message(await self._memory_status(generation))
            except BackendUnreachable:
                raise  # the stream would find no backend either: reconnect
            except BackendError:
                pass  # the history matters more; the next poll tries again
            async for message in app.client.events(history=EVENTS_SHOWN):
                yield message

        follower = StreamFollower("the sandbox's history", history_stream, wakeup=shared_wakeup(app))
        async for message in follower:
            kind = message.get("type")
            if kind == "history":
                self.post_message(HistoryArrived(_events(message.get("events")), generation))
            elif kind == "event":
                for recorded in _events([message.get("event")]):
                    self.post_message(EventArrived(recorded, generation))

    async def _memory_status(self, generation: int | None) -> MemoryArrived:
        app: Any = self.app
        try:
            return MemoryArrived(await app.client.memory.status(), generation)
        except BackendError as exc:
            if exc.status == 404:  # a backend from before memory: no line
                return MemoryArrived(None, generation)
            raise

    @work(exclusive=True, group="memory")
    async def fetch_memory(self) -> None:
        """One look at the memory's sync status."""
        try:
            self.post_message(await self._memory_status(self._generation()))
        except BackendError:
            return  # the status bar says the backend is gone; the next look will tell

    @on(MemoryArrived)
    def _memory(self, event: MemoryArrived) -> None:
        if self._stale(event):
            return
        panel = self.query_one(SandboxPanel)
        panel.memory = event.memory
        panel.memory_known = event.memory is not None
        panel.show(self._status, self._now())
        self.memory_seen.set()

    @on(HistoryArrived)
    def _history(self, event: HistoryArrived) -> None:
        if self._stale(event):
            return
        self._recorded = {e.seq: e for e in event.events}
        self._redraw_events()
        self.history_seen.set()

    @on(EventArrived)
    def _recorded_event(self, event: EventArrived) -> None:
        if self._stale(event) or event.event.seq in self._recorded:
            return
        self._recorded[event.event.seq] = event.event
        while len(self._recorded) > EVENTS_SHOWN:  # the oldest goes, as it does from the panel
            del self._recorded[next(iter(self._recorded))]
        self.query_one("#dash-events", RichLog).write(
            self._line(event.event.time, event.event.describe(), event.event.level)
        )
        self.event_seen.set()

    def _redraw_events(self) -> None:
        lines = [(e.time, e.seq, self._line(e.time, e.describe(), e.level)) for e in self._recorded.values()]
        lines += [(when, 0, self._line(when, text, None)) for when, text in self._local]
        log = self.query_one("#dash-events", RichLog)
        with self.app.batch_update():
            log.clear()
            for _, _, line in sorted(lines, key=lambda item: item[:2])[-EVENTS_SHOWN:]:
                log.write(line)

    def _sandbox_running(self) -> bool:
        return bool(self._status and self._status.get("state") in RUNNING)

    # --- live data -----------------------------------------------------------------------------
    @work(exclusive=True, group="stats")
    async def follow_stats(self) -> None:
        """Follow the stats stream while the sandbox runs, across restarts of the backend."""
        app: Any = self.app
        generation = self._generation()
        follower = StreamFollower(
            "the stats stream", app.client.stats, wakeup=shared_wakeup(app),
            on_state=lambda state: self.post_message(StatsStreamState(state, generation)),
        )
        async for sample in follower:
            self.post_message(StatsArrived(sample, generation))

    @on(StatsStreamState)
    def _stats_stream(self, event: StatsStreamState) -> None:
        if self._stale(event):
            return
        # A refusal ("not running") is the sandbox stopping: the status that follows says so.
        lost = event.state.phase == "reconnecting" and event.state.cause != "refused"
        if lost and self._sandbox_running():
            # The last numbers are not current any more; the sparklines wait for new ones.
            self.query_one("#dash-cpu-label", Static).update(f"{self._cpu_text} · reconnecting…")

    @on(StatsArrived)
    def _stats(self, event: StatsArrived) -> None:
        if self._stale(event) or not self._sandbox_running():
            return  # a sample still in flight when the sandbox stopped: the labels say "stopped"
        sample = event.sample
        self.samples += 1
        self._cpu.append(float(sample.get("cpu_percent", 0.0)))
        self._mem.append(float(sample.get("memory_bytes", 0)))
        self.query_one("#dash-cpu", ScaledSparkline).data = list(self._cpu)
        memory = self.query_one("#dash-mem", ScaledSparkline)
        # Against the limit; without one, against the most seen (the bars then show change only).
        memory.ceiling = float(sample.get("memory_limit") or 0)
        memory.data = list(self._mem)
        self._cpu_text = f"CPU {sample.get('cpu_percent', 0):.1f}%"
        self.query_one("#dash-cpu-label", Static).update(self._cpu_text)
        limit = sample.get("memory_limit") or 0
        self.query_one("#dash-mem-label", Static).update(
            f"memory {_mib(sample.get('memory_bytes', 0))}" + (f" / {_mib(limit)}" if limit else "")
        )
        cache = sample.get("cache_bytes")
        cache_label = self.query_one("#dash-cache-label", Static)
        cache_label.update(f"cache {_mib(cache)} (reclaimable)" if isinstance(cache, int) else "")
        cache_label.display = isinstance(cache, int)

    @work(exclusive=True, group="gateway")
    async def fetch_gateway(self) -> None:
        """One look at the backend's health: its pid, missing keys and budget state."""
        try:
            health = await self.app.client.health()  # type: ignore[attr-defined]
        except BackendError:
            return
        self.post_message(GatewayArrived(health))

    @on(GatewayArrived)
    def _gateway(self, event: GatewayArrived) -> None:
        gateway = GatewayStatus.from_json(event.health.get("gateway"))
        pid = event.health.get("pid")
        if isinstance(pid, int):
            if self._backend_pid is not None and pid != self._backend_pid:
                self._event(f"the backend was replaced (pid {self._backend_pid} -> {pid})")
                app: Any = self.app
                # Told once a session: the banner above says it for as long as it holds.
                if gateway.missing_keys and not getattr(app, "keys_notified", False):
                    app.keys_notified = True
                    lacking = ", ".join(f"{m.provider} ({m.variable})" for m in gateway.missing_keys)
                    self.app.notify(
                        f"the backend was replaced (now pid {pid}) and has no key for {lacking}: "
                        "the agent's model calls fail. "
                        + "; ".join(m.command for m in gateway.missing_keys if m.command),
                        title="backend", severity="error", markup=False, timeout=KEYS_NOTICE_S,
                    )
            self._backend_pid = pid
        names = event.health.get("sandboxes")
        app = self.app
        shown = getattr(getattr(app, "client", None), "sandbox", None)
        if isinstance(names, list) and shown is not None and shown not in names:
            app.check_sandbox()  # removed: the app says so and shows the default
        self.gateway = gateway
        keys = self.query_one("#dash-keys", Static)
        keys_text = key_alerts(gateway)
        keys.update(Text(sanitize(keys_text)))
        keys.display = bool(keys_text)
        budget = self.query_one("#dash-budget", Static)
        budget_text = budget_line(gateway.budget)
        budget.update(Text(sanitize(budget_text)))
        budget.set_class(gateway.budget.level == "spent", "-error")
        budget.set_class(gateway.budget.level == "warning", "-warning")
        budget.display = bool(budget_text)
        self._show_alerts_class()
        self.gateway_seen.set()

    def _show_alerts_class(self) -> None:
        # Alerts take lines from the facts above, not from the lists below (see dashboard.tcss).
        alerts = ("#dash-keys", "#dash-budget", "#dash-memory-alert")
        self.set_class(any(self.query_one(name).display for name in alerts), "-alerts")

    def _poll_processes(self) -> None:
        if self._sandbox_running():
            self.fetch_processes()

    @work(exclusive=True, group="processes")
    async def fetch_processes(self) -> None:
        """One look at the process table."""
        generation = self._generation()
        try:
            table = await self.app.client.processes()  # type: ignore[attr-defined]
        except BackendError:
            return
        self.post_message(ProcessesArrived(table, generation))

    @on(ProcessesArrived)
    def _processes(self, event: ProcessesArrived) -> None:
        if self._stale(event) or not self._sandbox_running():
            return  # a table fetched just before the sandbox stopped
        self._process_table = event.table
        self._show_processes()

    def _show_processes(self) -> None:
        """The last process table, with the columns that fit the panel's width."""
        table = self.query_one("#dash-processes", DataTable)
        if self._process_table is None or not self._sandbox_running():
            table.clear(columns=True)
            return
        rows = [[terminal_safe(sanitize(str(cell))) for cell in row]
                for row in self._process_table.get("processes") or []]
        titles = [str(t) for t in self._process_table.get("titles") or []]
        # Two cells of scrollbar when the rows do not fit under the header.
        room = table.size.width - (2 if len(rows) > table.size.height - 1 else 0)
        columns = process_columns(titles, rows, room)
        with self.app.batch_update():
            table.clear(columns=True)
            for column in columns:
                table.add_column(column.label, width=column.width)
            for row in rows:
                table.add_row(*(column.cell(row) for column in columns))

    def action_refresh_devices(self) -> None:
        """Look for pairing requests now (the list is also refreshed every 30 s)."""
        if self._sandbox_running():
            self.fetch_devices()

    @work(exclusive=True, group="devices")
    async def fetch_devices(self) -> None:
        """One look at pending pairing requests."""
        generation = self._generation()
        try:
            devices = await self.app.client.devices()  # type: ignore[attr-defined]
        except BackendError:
            return
        self.post_message(DevicesArrived(devices, generation))

    @on(DevicesArrived)
    def _devices(self, event: DevicesArrived) -> None:
        if self._stale(event):
            return
        pending = list(event.devices.get("pending") or [])
        if len(pending) > len(self._pending):
            self.app.notify(f"{counted(len(pending), 'pairing request')} waiting; a approves, j rejects",
                            title="pairing", markup=False)
        self._pending = pending
        self._show_devices()

    def _show_devices(self) -> None:
        """The pending requests, with the columns that fit the panel's width."""
        table = self.query_one("#dash-devices", DataTable)
        rows = [pairing_row(entry) for entry in self._pending]
        columns = pairing_columns(rows, table.size.width)
        cursor = table.cursor_row
        with self.app.batch_update():
            table.clear(columns=True)
            for label, _, width in columns:
                table.add_column(label, width=width)
            for row in rows:
                table.add_row(*(fit(row[index], width) for _, index, width in columns))
            if rows:
                table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))

    async def action_decide(self, decision: str) -> None:
        """Approve or reject the selected pairing request."""
        table = self.query_one("#dash-devices", DataTable)
        if not self._pending:
            self.app.notify("no pairing request is waiting", markup=False)
            return
        row = min(max(table.cursor_row, 0), len(self._pending) - 1)
        entry = self._pending[row]
        self.decide_device(str(entry.get("requestId", "")), decision)

    @work(group="devices-decide")
    async def decide_device(self, request_id: str, decision: str) -> None:
        """Send the decision, then refresh the list."""
        try:
            await self.app.client.decide_device(request_id, decision)  # type: ignore[attr-defined]
        except BackendError as exc:
            self.app.notify(str(exc), title=f"{decision} failed", severity="error", markup=False)
            return
        self.app.notify(f"{decision}d request {request_id[:8]}", markup=False)
        self._event(f"pairing request {request_id[:8]} {decision}d")
        self.fetch_devices()

    # --- several sandboxes ---------------------------------------------------------------------
    def show_other_sandbox(self) -> None:
        """Start over for the sandbox the app shows now: forget what this one showed (its status,
        samples, processes, pairings, events) and follow the other's; its dashboard shows."""
        for group in ("history", "stats", "processes", "devices"):
            self.workers.cancel_group(self, group)
        self._status = None
        panel = self.query_one(SandboxPanel)
        panel.memory, panel.memory_known = None, False
        self._cpu.clear()
        self._mem.clear()
        self.samples = 0
        self._cpu_text = "CPU"
        self._pending = []
        self._process_table = None
        self._recorded = {}
        self._local.clear()
        self.history_seen.clear()
        self.event_seen.clear()
        with self.app.batch_update():
            self._show_fleet(False)  # first: the panels below are laid out again at their size
            self.query_one("#dash-cpu", ScaledSparkline).data = []
            self.query_one("#dash-mem", ScaledSparkline).data = []
            self.query_one("#dash-cpu-label", Static).update(f"CPU {NO_SAMPLES}")
            self.query_one("#dash-mem-label", Static).update(f"memory {NO_SAMPLES}")
            self.query_one("#dash-cache-label", Static).display = False
            self.query_one("#dash-memory-alert", Static).display = False
            self._show_alerts_class()
            self.query_one(SandboxPanel).show(None, self._now())
            # The other's processes, pairings and events go now (fitted again, if the table hid
            # the panels, when they get their size back).
            self._show_processes()
            self._show_devices()
            self._redraw_events()
        self.follow_history()

    def action_toggle_fleet(self) -> None:
        """Show all sandboxes in a table instead of this one's panels, or this one's again."""
        self._show_fleet(not self.has_class("-fleet"))

    @on(EventsLog.Resized)
    def _panels_resized(self) -> None:
        # The panels below are laid out together: all are fitted again at their new size.
        self._redraw_events()
        self.call_after_refresh(self._show_processes)
        self.call_after_refresh(self._show_devices)

    def _show_fleet(self, shown: bool) -> None:
        self.set_class(shown, "-fleet")
        if shown:
            table = self.query_one(SandboxTable)
            table.focus()
            if self.fleet is not None:
                self._fill_fleet(self.fleet)
            self.fetch_fleet()
            return
        if self.focused is self.query_one(SandboxTable):
            self.set_focus(None)
        # The panels had no size while the table showed: fitted again when they get one
        # (EventsLog.Resized).

    def _poll_fleet(self) -> None:
        if self.has_class("-fleet"):
            self.fetch_fleet()

    @work(exclusive=True, group="fleet")
    async def fetch_fleet(self) -> None:
        """One look at every sandbox, for the table."""
        self.post_message(FleetListed(await list_sandboxes(self.app.client)))  # type: ignore[attr-defined]

    @on(FleetListed)
    def _fleet_listed(self, event: FleetListed) -> None:
        listing = event.listing
        learn = getattr(self.app, "sandboxes_listed", None)
        if callable(learn):
            learn(listing)  # the app learns the default's name, or that the one shown is gone
        if listing.problem is None or self.fleet is None or self.fleet.problem is not None:
            self.fleet = listing  # a failed refresh keeps the rows it had, under the problem
        else:
            self.fleet = SandboxListing(self.fleet.sandboxes, self.fleet.default, listing.problem,
                                        listing.old_backend)
        self._fill_fleet(self.fleet)

    def _fill_fleet(self, listing: SandboxListing) -> None:
        problem = self.query_one("#dash-fleet-problem", Static)
        problem.update(Text(listing.problem or "", style="bold"))
        problem.display = listing.problem is not None
        table = self.query_one(SandboxTable)
        table.display = bool(listing.sandboxes) or listing.problem is None
        table.show(listing.sandboxes, getattr(self.app, "sandbox_name", None), self._now())
        if not table.display:
            self.fleet_seen.set()  # nothing to fit: the problem is what shows
        count = len(listing.sandboxes)
        self.query_one("#dash-fleet").border_title = f"all sandboxes · {count}" if count else "all sandboxes"

    @on(SandboxTable.Fitted, "#dash-fleet-table")
    def _fleet_fitted(self, event: SandboxTable.Fitted) -> None:
        """Say under the table what a wider terminal would add."""
        hidden = event.hidden
        more = f"{hidden} more column{'s' if hidden > 1 else ''} when wider · " if hidden else ""
        self.query_one("#dash-fleet").border_subtitle = f"{more}* shown · enter opens · A back"
        self.fleet_seen.set()

    @on(DataTable.RowSelected, "#dash-fleet-table")
    def _fleet_row_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        name = event.row_key.value
        app: Any = self.app
        if name is None or name == getattr(app, "sandbox_name", None):
            self._show_fleet(False)  # this one: its dashboard
            return
        app.select_sandbox(name)

    # --- actions ---------------------------------------------------------------------------------
    async def action_sandbox(self, name: str) -> None:
        """Ask the backend to start, stop or restart the sandbox."""
        await self.app.run_action(f"sandbox_action('{name}')")

    def action_destroy(self) -> None:
        """Remove the container, after a confirmation that says what is kept."""
        state_dir = (self._status or {}).get("state_dir") or "the state directory"
        question = (
            "Remove the sandbox container?\n\n"
            f"Kept: the agent's state ({state_dir}), its logs and the image. "
            "Start creates a new container from them."
        )
        self._ask(question, "destroy", "destroy")

    def action_rebuild(self) -> None:
        """Rebuild the image and re-create the container, after a confirmation."""
        question = (
            "Rebuild the sandbox image and re-create the container?\n\n"
            "The agent's state and logs are kept; a running sandbox restarts."
        )
        self._ask(question, "rebuild", "rebuild")

    def action_rotate_token(self) -> None:
        """Give the agent a new gateway token, after a confirmation that says what restarts."""
        question = (
            "Give the agent a new gateway token?\n\n"
            "The current token is refused at once. A running sandbox is re-created with the new "
            "one and started again (its state and logs are kept); a stopped one gets it at its "
            "next start."
        )
        self._ask(question, "rotate", "rotate-token")

    def _ask(self, question: str, label: str, name: str) -> None:
        """The confirmation of ``name``, without toasts: a screen under a dialog keeps what it
        showed when the dialog opened, so they go before, not while, it opens."""
        self.app.clear_notifications()
        self.app.push_screen(ConfirmScreen(question, label), self._confirmed(name))

    def _confirmed(self, name: str) -> Any:
        async def after(confirmed: bool | None) -> None:
            if confirmed:
                await self.app.run_action(f"sandbox_action('{name}')")

        return after

    def action_shell(self) -> None:
        """A shell inside the sandbox: the console steps aside until it exits."""
        container = (self._status or {}).get("container_id")
        if not self._sandbox_running() or not container:
            self.app.notify("the sandbox is not running; start it with s", markup=False)
            return
        docker = shutil.which("docker")
        if docker is None:
            self.app.notify("the docker command is not installed; install docker.io",
                            severity="error", markup=False)
            return
        with self.app.suspend():
            print(f"shell in sandbox {container[:12]}; exit to return to moltconsole", flush=True)
            subprocess.call([docker, "exec", "-it", container, "sh"])
        self._event("shell session ended")


def _events(data: Any) -> list[SandboxEvent]:
    """The readable events of a message (a newer backend may send kinds this console lacks)."""
    events = []
    for item in data if isinstance(data, list) else []:
        try:
            events.append(SandboxEvent.from_json(item))
        except EventFormatError:
            continue
    return events
