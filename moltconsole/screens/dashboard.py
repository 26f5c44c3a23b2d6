"""The dashboard: sandbox state and the lifecycle actions."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from moltconsole.formatting import duration
from moltconsole.untrusted import sanitize
from moltconsole.widgets.status_bar import StatusBar


class SandboxPanel(Static):
    """The sandbox's facts as a two-column table."""

    def show(self, status: dict[str, Any] | None, now: float) -> None:
        """Render ``status`` (None while unknown)."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        if status is None:
            table.add_row("state", "waiting for the backend…")
            self.update(table)
            return
        table.add_row("state", Text(status["state"]))
        if status.get("reason"):
            table.add_row("reason", Text(sanitize(status["reason"])))
        table.add_row("wanted", status.get("desired", "?"))
        table.add_row("OpenClaw", status.get("openclaw_version") or "?")
        table.add_row("image", status.get("image") or "-")
        table.add_row("container", (status.get("container_id") or "-")[:12])
        started = status.get("started_at")
        running = status["state"] in ("starting", "ready", "unhealthy")
        table.add_row("uptime", duration(now - started) if started and running else "-")
        table.add_row("restarts", str(status.get("restarts", 0)))
        code = status.get("last_exit_code")
        table.add_row("last exit", "-" if code is None else str(code))
        table.add_row("gateway", status.get("gateway_url") or "-")
        table.add_row("state dir", status.get("state_dir") or "-")
        self.update(table)


class DashboardScreen(Screen[None]):
    """Sandbox state and lifecycle actions."""

    BINDINGS = [
        Binding("s", "sandbox('start')", "Start", id="sandbox.start"),
        Binding("x", "sandbox('stop')", "Stop", id="sandbox.stop"),
        Binding("r", "sandbox('restart')", "Restart", id="sandbox.restart"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield SandboxPanel(id="sandbox-panel")
        yield Static("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        self._status: dict[str, Any] | None = None
        self.query_one(SandboxPanel).show(None, time.time())
        self.set_interval(1.0, self._tick)  # keeps the uptime current between events

    def _tick(self) -> None:
        if self._status is not None:
            self.query_one(SandboxPanel).show(self._status, self.app.clock())  # type: ignore[attr-defined]

    def apply_status(self, status: dict[str, Any] | None, connected: bool) -> None:
        """Show a new status snapshot."""
        self._status = status
        bar = self.query_one(StatusBar)
        bar.connected = connected
        bar.status = status
        self.query_one(SandboxPanel).show(status, self.app.clock())  # type: ignore[attr-defined]

    def show_message(self, text: str) -> None:
        """A one-line message under the panel (errors from actions)."""
        self.query_one("#message", Static).update(Text(sanitize(text)))

    async def action_sandbox(self, name: str) -> None:
        """Ask the backend to start, stop or restart the sandbox."""
        await self.app.run_action(f"sandbox_action('{name}')")
