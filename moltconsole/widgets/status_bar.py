"""The bar at the top of every screen: which sandbox, its state, OpenClaw version, backend connection."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from moltconsole_shared.wire.sandbox import SandboxState

# Unknown (not looked at yet) stays plain bold.
STATE_STYLES: dict[str, str] = {
    SandboxState.READY: "bold green",
    SandboxState.STARTING: "bold yellow",
    SandboxState.BUILDING: "bold yellow",
    SandboxState.STOPPING: "yellow",
    SandboxState.STOPPED: "dim",
    SandboxState.ABSENT: "dim",
    SandboxState.CRASHED: "bold red",
    SandboxState.CRASH_LOOP: "bold red",
    SandboxState.CONFIG_INVALID: "bold red",
    SandboxState.FAILED: "bold red",
    SandboxState.UNHEALTHY: "bold red",
    SandboxState.ENGINE_DOWN: "bold red",
}


class StatusBar(Static):
    """Always-visible summary line."""

    status: reactive[dict[str, Any] | None] = reactive(None)
    connected: reactive[bool | None] = reactive(None)
    link: reactive[str | None] = reactive(None)  # how a lost connection stands, in words
    sandbox: reactive[str | None] = reactive(None)  # the sandbox's name, once the backend said it

    def on_mount(self) -> None:
        # A screen mounted later (e.g. the first visit to Logs) starts from what the app knows.
        self.connected = getattr(self.app, "connected", None)
        self.status = getattr(self.app, "status", None)
        link_text = getattr(self.app, "link_text", None)
        self.link = link_text() if callable(link_text) else None
        self.sandbox = getattr(self.app, "sandbox_name", None)

    def render(self) -> Text:
        text = Text.assemble(("moltconsole", "bold"), "  ")
        if self.connected is None:
            text.append("backend: connecting…", style="yellow")
            return text
        if not self.connected:
            # Short enough for 80 columns: what happened comes in a notification.
            text.append(f" backend {self.link or 'disconnected, reconnecting…'} ", style="bold white on red")
            return text
        status = self.status or {}
        state = str(status.get("state", "unknown"))
        text.append("sandbox ")
        if self.sandbox:
            text.append(self.sandbox, style="bold")
            text.append(" ")
        text.append(state, style=STATE_STYLES.get(state, "bold"))
        text.append(f"   OpenClaw {status.get('openclaw_version') or '?'}")
        width = self.content_size.width
        # "connected" is the usual case: it goes first when a long sandbox name needs the room.
        if not width or text.cell_len + len("   backend: connected") <= width:
            text.append("   backend: ")
            text.append("connected", style="green")
        return text
