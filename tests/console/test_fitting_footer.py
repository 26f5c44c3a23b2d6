"""The footer that drops keys until the rest fit, in a small app with the real screens' key ids."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets._footer import FooterKey

from moltconsole.widgets.fitting_footer import SCREEN_SWITCHES, FittingFooter


class BusyScreen(Screen[None]):
    """As many keys as the Logs screen shows."""

    BINDINGS = [
        Binding(key, f"noop('{name}')", name, id=f"busy.{name.lower()}")
        for key, name in (("p", "Pause"), ("f", "Filter"), ("slash", "Search"), ("l", "Level"),
                          ("r", "Range"), ("s", "Source"), ("enter", "Detail"), ("y", "Copy"))
    ]

    def compose(self) -> ComposeResult:
        yield FittingFooter(compact=True, drop_first=SCREEN_SWITCHES, keep=("app.help",))

    def action_noop(self, name: str) -> None:
        """Nothing: only the footer matters here."""


class FooterApp(App[None]):
    """The app's own keys, with their ids."""

    BINDINGS = [
        Binding("1", "noop('dashboard')", "Dashboard", id="app.dashboard"),
        Binding("2", "noop('logs')", "Logs", id="app.logs"),
        Binding("3", "noop('costs')", "Costs", id="app.costs"),
        Binding("question_mark", "noop('help')", "Help", id="app.help"),
        Binding("q", "noop('quit')", "Quit", id="app.quit"),
    ]

    def on_mount(self) -> None:
        self.push_screen(BusyScreen())

    def action_noop(self, name: str) -> None:
        """Nothing."""


def footer_keys(app: App[None]) -> tuple[list[FooterKey], FooterKey]:
    keys = list(app.screen.query(FooterKey))
    palette = next(k for k in keys if k.has_class("-command-palette"))
    return [k for k in keys if k is not palette], palette


@pytest.mark.parametrize("width", [80, 100])
async def test_narrow_footer_drops_screen_switches_first_and_cuts_no_key(width: int) -> None:
    app = FooterApp()
    async with app.run_test(size=(width, 24)) as pilot:
        await pilot.pause()
        keys, palette = footer_keys(app)
        shown = [k.description for k in keys]
        assert "Help" in shown and not {"Dashboard", "Logs", "Costs"} & set(shown)
        assert all(k.region.right <= palette.region.x for k in keys)
        assert palette.region.right <= width


async def test_wide_footer_keeps_every_key_and_a_resize_refits() -> None:
    app = FooterApp()
    async with app.run_test(size=(160, 24)) as pilot:
        await pilot.pause()
        keys, _ = footer_keys(app)
        assert [k.description for k in keys][-5:] == ["Dashboard", "Logs", "Costs", "Help", "Quit"]
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        keys, palette = footer_keys(app)
        assert "Dashboard" not in [k.description for k in keys]
        assert all(k.region.right <= palette.region.x for k in keys)
