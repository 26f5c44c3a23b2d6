"""A virtualised view of log records: a cursor, search highlights, wrap, timestamps and sources.

Only the rows on screen are rendered (``render_line``), rendered records are cached, and the
number of records held is bounded by ``max_lines``: at thousands of lines a second the cost of
a frame depends on the height of the terminal, not on how many lines went by.

What stays alive is what costs at 10,000 lines a second: each object that outlives a few
frames reaches Python's oldest GC generation, and every full collection walks all of them
while the UI waits. So the cache is small (a few screens of rows) and holds plain segment
lists, not ``Strip`` objects: a ``Strip`` carries seven caches of its own that would keep
every crop and restyle of it alive as long as the cache entry.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from moltconsole.logfilter import MATCH_LIMIT, LogRecord, TextPattern, format_time

LEVEL_STYLES = {
    "trace": Style(color="bright_black"),
    "debug": Style(color="blue"),
    "info": Style(color="green"),
    "warn": Style(color="yellow", bold=True),
    "error": Style(color="red", bold=True),
    "fatal": Style(color="white", bgcolor="red", bold=True),
}
LEVEL_WIDTH = 5
TIME_WIDTH = len("00:00:00.000")
SOURCE_WIDTH = len("stdout")  # file, stdout or stderr
SUBSYSTEM_WIDTH = 8
CUT_MARK = " …"
CONTINUATION_INDENT = 2  # wrapped rows after the first start this far in, so none reads as a new line
RENDER_CACHE = 256  # rendered records kept: a few screens, for scrolling and cursor moves


class LogView(ScrollView, can_focus=True, inherit_bindings=False):
    """Log records in a scrollable, bounded, virtualised list with a cursor.

    The widget only displays; the Logs screen decides what to show (filtering, pausing) and
    calls :meth:`append` and :meth:`set_records`. Text is drawn from Rich ``Text`` objects
    built from already-sanitised records, so no log line is ever read as markup.
    """

    # Up/down/home/end/page keys belong to the Logs screen (they move the cursor and pause or
    # follow); the scroll container's own bindings would swallow them. Only sideways scrolling
    # stays here.
    BINDINGS = [
        Binding("left", "scroll_left", "Left", id="logs.scroll_left", show=False),
        Binding("right", "scroll_right", "Right", id="logs.scroll_right", show=False),
    ]

    COMPONENT_CLASSES = {
        "logs-view--cursor",
        "logs-view--match",
        "logs-view--time",
        "logs-view--source",
        "logs-view--subsystem",
    }

    def __init__(
        self, *, max_lines: int = 10_000, name: str | None = None, id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self.follow = True
        self._records: list[LogRecord] = []
        self._cursor = -1
        self._wrap = False
        self._timestamps = True
        self._sources = False
        self._search: TextPattern | None = None
        self._widest = 0
        # Wrap mode: absolute first visual row of each record, and the row after the last one.
        # Absolute, so dropping records off the front needs no renumbering (rows count from
        # _starts[0]).
        self._starts: list[int] = []
        self._end = 0
        self._wrap_width = 0
        self._rendered: LRUCache[LogRecord, tuple[list[Segment], int]] = LRUCache(RENDER_CACHE)

    # --- state ------------------------------------------------------------------------------
    @property
    def records(self) -> Sequence[LogRecord]:
        """The records in the view, oldest first (read only)."""
        return self._records

    @property
    def cursor(self) -> int:
        """Index of the selected record, -1 when the view is empty."""
        return self._cursor

    @property
    def selected(self) -> LogRecord | None:
        """The record under the cursor."""
        return self._records[self._cursor] if 0 <= self._cursor < len(self._records) else None

    @property
    def wrap(self) -> bool:
        """Whether long lines wrap (folded at the edge) instead of scrolling sideways."""
        return self._wrap

    @wrap.setter
    def wrap(self, value: bool) -> None:
        self._wrap = value
        self._layout_changed()

    @property
    def timestamps(self) -> bool:
        """Whether each line starts with its UTC time."""
        return self._timestamps

    @timestamps.setter
    def timestamps(self, value: bool) -> None:
        self._timestamps = value
        self._layout_changed()

    @property
    def sources(self) -> bool:
        """Whether each line shows where it came from (file, stdout, stderr) after its time."""
        return self._sources

    @sources.setter
    def sources(self, value: bool) -> None:
        self._sources = value
        self._layout_changed()

    @property
    def search(self) -> TextPattern | None:
        """The highlighted pattern, if any."""
        return self._search

    @search.setter
    def search(self, pattern: TextPattern | None) -> None:
        self._search = pattern
        self._rendered.clear()
        self.refresh()

    def set_records(self, records: Iterable[LogRecord], *, keep: LogRecord | None = None) -> None:
        """Replace the content; the cursor goes to ``keep`` if present, else to the end."""
        self._records = list(records)[-self.max_lines:]
        self._rendered.clear()
        self._widest = max((self._cells(r) for r in self._records), default=0)
        self._rebuild_rows()
        index = -1
        if keep is not None and not self.follow:
            index = next((i for i, r in enumerate(self._records) if r is keep), -1)
        self._cursor = index if index >= 0 else len(self._records) - 1
        self._update_size()
        self._scroll_to_cursor(end=self.follow)
        self.refresh()

    def append(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        """Add records at the end; returns the ones that fell off the front (over ``max_lines``)."""
        if not records:
            return []
        self._records.extend(records)
        for record in records:
            cells = self._cells(record)
            self._widest = max(self._widest, cells)
            if self._wrap and self._wrap_width:
                self._starts.append(self._end)
                self._end += self._height(cells)
        dropped: list[LogRecord] = []
        excess = len(self._records) - self.max_lines
        if excess > 0:
            dropped = self._records[:excess]
            del self._records[:excess]
            if self._wrap and self._wrap_width:
                del self._starts[:excess]
            self._cursor = max(self._cursor - excess, 0)
        if self.follow or self._cursor < 0:
            self._cursor = len(self._records) - 1
        self._update_size()
        if self.follow:
            self._scroll_to_end()
        self.refresh()
        return dropped

    def _scroll_to_end(self) -> None:
        # Now, and again once the new virtual size is laid out: before the first layout (a
        # history batch arriving as the screen mounts) max_scroll_y is still the old one.
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    def clear(self) -> None:
        """Forget every record."""
        self.set_records([])

    # --- cursor -----------------------------------------------------------------------------
    def move_cursor(self, delta: int) -> None:
        """Move the selection by ``delta`` records (clamped)."""
        if self._records:
            self.select(self._cursor + delta)

    def select(self, index: int) -> None:
        """Select record ``index`` (clamped) and scroll it into view."""
        if not self._records:
            return
        self._cursor = min(max(index, 0), len(self._records) - 1)
        self._scroll_to_cursor()
        self.refresh()

    def page_size(self) -> int:
        """Roughly how many records fit on one screen."""
        return max(self.size.height - 1, 1)

    def _scroll_to_cursor(self, *, end: bool = False) -> None:
        if end:
            self._scroll_to_end()
            return
        if self._cursor < 0:
            return
        top = self._row_of(self._cursor)
        bottom = top + self._record_rows(self._cursor)
        height = self.size.height
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False, immediate=True)
        elif bottom > self.scroll_y + height:
            self.scroll_to(y=max(bottom - height, 0), animate=False, immediate=True)

    # --- geometry ---------------------------------------------------------------------------
    def _prefix_cells(self) -> int:
        time = TIME_WIDTH + 1 if self._timestamps else 0
        return time + (SOURCE_WIDTH + 1 if self._sources else 0) + LEVEL_WIDTH + 1

    def _source_cells(self, record: LogRecord) -> int:
        """Cells a source wider than the column takes beyond it (the backend's are not)."""
        return max(_text_cells(record.source) - SOURCE_WIDTH, 0) if self._sources else 0

    def _cells(self, record: LogRecord) -> int:
        """The record's width in cells, without rendering it."""
        cells = self._prefix_cells() + self._source_cells(record) + _text_cells(record.body)
        if record.subsystem:
            cells += max(_text_cells(record.subsystem), SUBSYSTEM_WIDTH) + 1
        return cells + len(CUT_MARK) if _is_cut(record) else cells

    def _height(self, cells: int) -> int:
        first, rest = self._wrap_width, self._continuation_width()
        if cells <= first:
            return 1
        return 1 + -(-(cells - first) // rest)

    def _continuation_width(self) -> int:
        """Cells of text on a wrapped row after the first (they are indented)."""
        return max(self._wrap_width - CONTINUATION_INDENT, 1)

    def _wrap_width_for(self, width: int) -> int:
        """Cells a wrapped row holds: the width less the vertical scrollbar's column.

        Reserved whether or not the scrollbar shows yet: wrapping grows the content, the bar
        then appears over the last column, and a row folded at the full width would lose
        its last character under it.
        """
        if self.styles.overflow_y != "hidden":
            width -= self.styles.scrollbar_size_vertical
        return max(width, CONTINUATION_INDENT + 1)

    def _rebuild_rows(self) -> None:
        self._starts = []
        self._end = 0
        if not (self._wrap and self._wrap_width):
            return
        starts = self._starts
        row = 0
        for record in self._records:
            starts.append(row)
            row += self._height(self._cells(record))
        self._end = row

    def _row_of(self, index: int) -> int:
        if self._wrap and self._starts:
            return self._starts[index] - self._starts[0]
        return index

    def _record_rows(self, index: int) -> int:
        if self._wrap and self._starts:
            following = self._starts[index + 1] if index + 1 < len(self._starts) else self._end
            return following - self._starts[index]
        return 1

    def _locate(self, row: int) -> tuple[int, int]:
        """(record index, row within the record) for visual ``row``; index -1 past the end."""
        if self._wrap and self._starts:
            absolute = row + self._starts[0]
            if absolute >= self._end:
                return -1, 0
            index = bisect.bisect_right(self._starts, absolute) - 1
            return index, absolute - self._starts[index]
        return (row, 0) if row < len(self._records) else (-1, 0)

    def _update_size(self) -> None:
        if self._wrap:
            rows = self._end - self._starts[0] if self._starts else len(self._records)
            self.virtual_size = Size(self._wrap_width, rows)
        else:
            self.virtual_size = Size(self._widest, len(self._records))

    def _layout_changed(self) -> None:
        self._rendered.clear()
        self._widest = max((self._cells(r) for r in self._records), default=0)
        self._rebuild_rows()
        self._update_size()
        self.scroll_to(x=0, animate=False, immediate=True)
        self._scroll_to_cursor(end=self.follow)
        self.refresh()

    def on_resize(self) -> None:
        """Wrapped rows depend on the width."""
        width = self._wrap_width_for(self.size.width)
        if self.follow:
            self._scroll_to_end()
        if width != self._wrap_width:
            self._wrap_width = width
            if self._wrap:
                self._layout_changed()

    def notify_style_update(self) -> None:
        """Cached strips hold resolved styles; a theme change must redraw them."""
        super().notify_style_update()
        self._rendered.clear()

    # --- rendering --------------------------------------------------------------------------
    def _render_record(self, record: LogRecord) -> Strip:
        cached = self._rendered.get(record)
        if cached is not None:
            return Strip(*cached)
        text = Text(no_wrap=True, end="")
        if self._timestamps:
            text.append(format_time(record.time), self.get_component_rich_style("logs-view--time"))
            text.append(" ")
        if self._sources:
            source = record.source or "-"
            text.append(f"{source:<{SOURCE_WIDTH}}", self.get_component_rich_style("logs-view--source"))
            text.append(" ")
        label = record.level.upper() if record.level else "-"
        text.append(f"{label:<{LEVEL_WIDTH}}", LEVEL_STYLES.get(record.level, Style()))
        text.append(" ")
        if record.subsystem:
            text.append(record.subsystem, self.get_component_rich_style("logs-view--subsystem"))
            # Short names are padded so messages mostly line up; long ones are never cut.
            text.append(" " * max(SUBSYSTEM_WIDTH - cell_len(record.subsystem), 0) + " ")
        body_at = len(text)
        text.append(record.body)
        if _is_cut(record):
            text.append(CUT_MARK, Style(dim=True))
        if self._search is not None:
            match_style = self.get_component_rich_style("logs-view--match")
            for start, end in self._search.spans(record.body):
                text.stylize(match_style, body_at + start, body_at + end)
        segments = list(text.render(self.app.console))
        self._rendered[record] = (segments, text.cell_len)
        return Strip(segments, text.cell_len)

    def render_line(self, y: int) -> Strip:
        """One visual row: a record, or a slice of a wrapped one."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        index, part = self._locate(scroll_y + y)
        if index < 0:
            return Strip.blank(width, base)
        strip = self._render_record(self._records[index])
        if self._wrap and self._wrap_width:
            if part == 0:
                strip = strip.crop(0, self._wrap_width)
            else:
                rest = self._continuation_width()
                start = self._wrap_width + (part - 1) * rest
                piece = strip.crop(start, start + rest)
                indent = Segment(" " * CONTINUATION_INDENT)
                strip = Strip([indent, *piece], CONTINUATION_INDENT + piece.cell_length)
            strip = strip.extend_cell_length(width)
        else:
            strip = strip.crop_extend(scroll_x, scroll_x + width, None)
        if index == self._cursor:
            # Underneath the text's own styles: level and match colours stay visible on the
            # selected row, and the padding takes the cursor colour across the whole width.
            base = base + self.get_component_rich_style("logs-view--cursor")
        strip = strip.apply_style(base)
        return strip.apply_offsets(scroll_x, scroll_y + y)

    def rendered_rows(self) -> list[str]:
        """The text of the rows now on screen (for tests and the 'copy screen' idea)."""
        return [self.render_line(y).text for y in range(self.size.height)]


def _text_cells(text: str) -> int:
    """Width in cells; sanitised ASCII (no controls left) is one cell a character."""
    return len(text) if text.isascii() else cell_len(text)


def _is_cut(record: LogRecord) -> bool:
    """Cut by the backend (too long to keep) or by us (too long to match and show)."""
    return record.cut or len(record.message) > MATCH_LIMIT
