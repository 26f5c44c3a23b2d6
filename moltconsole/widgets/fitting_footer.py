"""A footer that shows only the keys that fit, so none is cut at the terminal's edge.

Textual's ``Footer`` lays every shown binding in one row; at 80 columns the Logs screen's keys,
the app's screen switches and the palette key do not fit, and the row ends in a cut word and
stray key letters. This footer drops keys before they are drawn: first the ones the screen
names as least needed (the 1/2/3/4 screen switches, which the help and the palette still list),
then from the end, never the ones it must keep (``?`` for help) nor the palette key.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# The app's keys for the screens: the first to go on a narrow terminal.
SCREEN_SWITCHES = ("app.dashboard", "app.logs", "app.costs", "app.memory")


class FittingFooter(Footer):
    """A ``Footer`` that leaves out keys, least needed first, until the rest fit its width.

    ``drop_first`` and ``keep`` are binding ids (``app.dashboard``, ``app.help``).
    """

    def __init__(
        self, *, drop_first: Iterable[str] = (), keep: Iterable[str] = (), compact: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(compact=compact, id=id)
        self.drop_first = frozenset(drop_first)
        self.keep = frozenset(keep)
        self._composed_width = -1

    def compose(self) -> ComposeResult:
        """The footer's keys, as many as fit."""
        widgets = list(super().compose())
        self._composed_width = width = self.size.width or self.app.size.width
        palette = [w for w in widgets if isinstance(w, FooterKey) and w.has_class("-command-palette")]
        keys = [w for w in widgets if isinstance(w, FooterKey) and w not in palette]
        if len(keys) + len(palette) != len(widgets):
            yield from widgets  # grouped keys: not ours to take apart
            return
        ids = self._binding_ids()
        room = width - sum(self._cells(key) for key in palette)
        shown = list(keys)

        def used() -> int:
            return sum(self._cells(key) for key in shown)

        if used() > room:
            # All of them or none: "3 Costs" alone, without 1 and 2, would read as a clue.
            shown = [key for key in shown if ids.get(key.key) not in self.drop_first]
        for key in reversed(list(shown)):
            if used() <= room:
                break
            if ids.get(key.key) not in self.keep:
                shown.remove(key)
        yield from (w for w in widgets if w in shown or w in palette)

    def _binding_ids(self) -> dict[str, str]:
        """Binding id by key, for the keys now shown."""
        return {
            binding.key: binding.id
            for _, binding, _, _ in self.screen.active_bindings.values()
            if binding.id is not None
        }

    def _cells(self, key: FooterKey) -> int:
        """Cells a key takes, margins and borders included (Textual's footer styles)."""
        text = cell_len(key.key_display) + (cell_len(key.description) + 1 if key.description else 0)
        if key.has_class("-command-palette"):
            return text + 1 + (0 if self.compact else 1)  # the border before it, padding after
        return text + 1 if self.compact else text + 3  # a margin, or padding around the key

    def on_resize(self, event: events.Resize) -> None:
        """Another width may fit other keys."""
        if self._composed_width not in (-1, event.size.width):
            self.call_after_refresh(self.recompose)

