"""A conversation's turns drawn a line at a time, so thousands of them scroll as fast as ten.

:class:`TurnLog` is one widget for the whole conversation (Textual's line API, as its ``Log``
is). For a width it only counts the lines each turn wraps to (where a line breaks, not the
line itself), so it knows the conversation's height and where each turn starts; a turn is
wrapped and rendered when one of its lines is first drawn, and kept until the width changes.
Measured on 2,000 turns at 80 columns: a widget per turn, or a Rich table per run of turns,
took seconds to lay out; wrapping every turn took about 0.2 s on each resize; counting takes
a fraction of that, and drawing a screen wraps only the few turns in view.

Each turn is a role label (:func:`~moltconsole.widgets.conversation_format.turn_label`) in a
column of its own and the turn's text (:func:`~moltconsole.widgets.conversation_format.
turn_body`) wrapped beside it; a blank line goes before each of the user's turns but the
first. A note in place of turns (nothing opened yet, a problem) takes the whole width.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from rich._wrap import divide_line  # where Text.wrap breaks lines; counting with it matches it exactly
from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from moltconsole.widgets.conversation_format import LABEL_WIDTH, pack, turn_body, turn_label, usage_parts
from moltconsole_shared.wire.memory_db import Turn

TAB_SIZE = 8  # Text.wrap's


@dataclass(frozen=True, slots=True)
class _Item:
    label: Text | None  # None: a note across the whole width
    body: Text
    gap_before: bool
    usage: tuple[str, ...] = ()  # what a response cost, in parts kept whole (dimmed, under the text)


def wrapped_lines(text: Text, width: int) -> int:
    """How many lines ``text`` takes wrapped to ``width`` cells (as ``Text.wrap`` with ``fold``
    breaks it), without building them."""
    count = 0
    for part in text.plain.split("\n"):
        if "\t" in part:
            expanded = Text(part)
            expanded.expand_tabs(TAB_SIZE)
            part = expanded.plain
        count += len(divide_line(part, width, fold=True)) + 1
    return count


def segments(text: Text, console: Console) -> list[Segment]:
    """``text`` as segments with its own style under its spans' (``Text.render`` leaves it to
    the console, which is not in the way here)."""
    rendered = text.render(console)
    if text.style:
        rendered = Segment.apply_style(rendered, console.get_style(text.style))
    return list(rendered)


class TurnLog(ScrollView, can_focus=True):
    """The turns of one conversation, or a note in their place."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._items: list[_Item] = []
        self._starts: list[int] = [0]  # the first line of each item, and the end of the last
        self._rendered: dict[int, list[Strip]] = {}  # items drawn at the present width
        self._width = -1  # the width lines are counted for (-1: not yet)

    @property
    def line_count(self) -> int:
        """How many lines the turns take at the present width."""
        return self._starts[-1]

    @property
    def rendered_items(self) -> int:
        """How many turns were wrapped and rendered at the present width (the rest were counted)."""
        return len(self._rendered)

    def show(self, turns: list[Turn], session_model: str = "") -> None:
        """Draw ``turns`` (oldest first), from the top."""
        self._set([
            _Item(turn_label(turn), turn_body(turn), turn.role == "user" and index > 0,
                  tuple(usage_parts(turn, session_model)))
            for index, turn in enumerate(turns)
        ])

    def say(self, text: Text) -> None:
        """Words in place of turns."""
        self._set([_Item(None, text, False)])

    def _set(self, items: list[_Item]) -> None:
        self._items = items
        self._width = -1
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._measure()

    def on_resize(self, event: events.Resize) -> None:
        self._measure()

    def _text_width(self, item: _Item, width: int) -> int:
        return width if item.label is None else max(8, width - LABEL_WIDTH - 1)

    def _measure(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._width:
            return
        # The turn at the top stays at the top when the lines are counted again for a new width.
        top = self._item_at(self.scroll_offset.y) if self._width > 0 else 0
        self._starts = [0, *itertools.accumulate(self._height(item, width) for item in self._items)]
        self._rendered = {}
        self._width = width
        self.virtual_size = Size(width, self._starts[-1])
        if top:
            self.scroll_to(y=self._starts[top], animate=False, immediate=True)
        self.refresh()

    def _item_at(self, line: int) -> int:
        """The item that line ``line`` belongs to (0 when there are none)."""
        return max(0, min(bisect.bisect_right(self._starts, line) - 1, len(self._items) - 1))

    def _texts(self, item: _Item, text_width: int) -> list[Text]:
        """The item's text and, under it, its usage packed to the width (each still to be wrapped)."""
        usage = [Text(line, style="dim") for line in pack(list(item.usage), text_width)]
        return [item.body, *usage]

    def _height(self, item: _Item, width: int) -> int:
        text_width = self._text_width(item, width)
        texts = self._texts(item, text_width)
        return int(item.gap_before) + sum(wrapped_lines(text, text_width) for text in texts)

    def _lines_of(self, index: int) -> list[Strip]:
        lines = self._rendered.get(index)
        if lines is None:
            lines = self._rendered[index] = self._render_item(self._items[index], self._width)
        return lines

    def _render_item(self, item: _Item, width: int) -> list[Strip]:
        console = self.app.console
        lines = [Strip.blank(width)] if item.gap_before else []
        text_width = self._text_width(item, width)
        texts = self._texts(item, text_width)
        wrapped = [line for text in texts for line in text.wrap(console, text_width, overflow="fold")]
        if item.label is None:
            return lines + [Strip(segments(line, console), line.cell_len) for line in wrapped]
        label = item.label.copy()
        label.truncate(LABEL_WIDTH, pad=True)
        indent = Segment(" " * (LABEL_WIDTH + 1))
        for number, line in enumerate(wrapped):
            left = [*segments(label, console), Segment(" ")] if number == 0 else [indent]
            lines.append(Strip([*left, *segments(line, console)], LABEL_WIDTH + 1 + line.cell_len))
        return lines

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the view: the wrapped line under it, on the widget's own colours."""
        scroll_x, scroll_y = self.scroll_offset
        line = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if not 0 <= line < self.line_count:
            return Strip.blank(width, style)
        index = self._item_at(line)
        lines = self._lines_of(index)
        offset = line - self._starts[index]
        if offset >= len(lines):  # counted one line more than drawn: never seen, but never an error
            return Strip.blank(width, style)
        return lines[offset].apply_style(style).crop_extend(scroll_x, scroll_x + width, style)
