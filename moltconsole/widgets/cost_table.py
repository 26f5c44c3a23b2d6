"""A table of the Costs screen whose columns always fit: whole columns, never a cut one.

Each table declares its columns in display order, each with a rank: when the table is too
narrow for all of them, the lowest ranks stay and the rest are left out whole (the table posts
:class:`CostTable.Fitted` so the screen can say how many), instead of scrolling sideways and
showing half a word at the edge. One column may be elastic (an error message): it takes the
width the others leave and wraps onto a few lines. The table refits on every resize.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

MIN_ELASTIC = 20  # an elastic column narrower than this is left out rather than squeezed


@dataclass(frozen=True, slots=True)
class Column:
    """One column: ``rank`` 0 is the last to go when space runs short."""

    key: str
    label: str
    rank: int
    right: bool = False  # numbers and money line up on the right
    lines: int = 0  # >0: elastic, takes the width left over and wraps onto at most this many lines


@dataclass(frozen=True, slots=True)
class Row:
    """One row: its key (a request id, a model) and a cell for each column key."""

    key: str
    cells: dict[str, Text]


def fit_columns(
    columns: Sequence[Column], natural: dict[str, int], room: int, padding: int,
) -> dict[str, int]:
    """The width of each column that fits in ``room`` cells, by rank (a prefix of the ranks, so
    a narrow table shows the most telling columns, never a scattering); the elastic column
    gets what the others leave, up to its natural width. The first rank always shows."""
    chosen: dict[str, int] = {}
    used = 0
    for column in sorted(columns, key=lambda c: c.rank):
        need = min(natural[column.key], MIN_ELASTIC) if column.lines else natural[column.key]
        if chosen and used + need + 2 * padding > room:
            break
        chosen[column.key] = need
        used += need + 2 * padding
    for column in columns:
        if column.lines and column.key in chosen:
            chosen[column.key] = min(natural[column.key], chosen[column.key] + max(0, room - used))
    return chosen


def wrap_cell(console: Console, text: Text, width: int, lines: int) -> Text:
    """``text`` wrapped at ``width`` onto at most ``lines`` lines; a last line that had to stop
    early ends in an ellipsis (the detail view has the whole text)."""
    wrapped = list(text.wrap(console, width))
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        last = wrapped[-1]
        last.truncate(width - 1)
        last.append("…")
    return Text("\n").join(wrapped)


def _width(cell: Text | None) -> int:
    return max((cell_len(line) for line in cell.plain.split("\n")), default=0) if cell else 0


class CostTable(DataTable[Any]):
    """A DataTable of whole columns that fit its width, whose enter key says "Details".

    DataTable's own enter binding has no description, and as the focused widget's binding it
    hides the screen's "Details" from the footer.
    """

    BINDINGS = [
        Binding("enter", "select_cursor", "Details", id="costs.table.select"),
    ]

    class Fitted(Message):
        """The columns were fitted; ``hidden`` names those left out for lack of width."""

        def __init__(self, table: CostTable, hidden: tuple[str, ...]) -> None:
            super().__init__()
            self.table = table
            self.hidden = hidden

    def __init__(
        self, columns: Sequence[Column], *, id: str | None = None, classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.specs = tuple(columns)
        self.table_rows: tuple[Row, ...] = ()
        self.shown: tuple[str, ...] = ()  # the column keys on screen, in display order
        self._fitted_for: tuple[int, int] | None = None

    def show_rows(self, rows: Sequence[Row]) -> None:
        """Replace the rows; the cursor stays on the same key when it is still there."""
        self.table_rows = tuple(rows)
        self._fill()

    def on_resize(self, event: events.Resize) -> None:
        """Refit when the width changes (and when a hidden panel is first shown)."""
        if self._fitted_for != (self.size.width, self.size.height):
            self._fill()

    def _fill(self) -> None:
        width, height = self.size
        if width <= 0:
            # Not laid out yet (a panel not shown): every column for now; the first resize
            # fits them.
            width, height = sys.maxsize, sys.maxsize
        selected = self.selected_key()
        widths, heights = self._layout(width, height)
        hidden = tuple(c.label for c in self.specs if c.key not in widths)
        self.clear(columns=True)
        self.shown = tuple(c.key for c in self.specs if c.key in widths)
        for column in self.specs:
            if column.key in widths:
                label = Text(column.label, justify="right" if column.right else "left")
                self.add_column(label, key=column.key, width=widths[column.key])
        for row, lines in zip(self.table_rows, heights, strict=True):
            cells = []
            for column in self.specs:
                if column.key not in widths:
                    continue
                cell = row.cells.get(column.key, Text(""))
                if column.lines:
                    cell = wrap_cell(self.app.console, cell, widths[column.key], column.lines)
                cells.append(cell)
            self.add_row(*cells, key=row.key, height=lines)
        self._fitted_for = (self.size.width, self.size.height)
        self._restore_cursor(selected)
        self.post_message(self.Fitted(self, hidden))

    def _layout(self, width: int, height: int) -> tuple[dict[str, int], list[int]]:
        """Column widths and row heights for a table ``width`` x ``height`` cells; a vertical
        scrollbar's width is kept free when the rows will not fit the height."""
        natural = {
            c.key: max([cell_len(c.label), *(_width(r.cells.get(c.key)) for r in self.table_rows)])
            for c in self.specs
        }
        padding = self.cell_padding
        bar = self.styles.scrollbar_size_vertical
        room = width
        widths = fit_columns(self.specs, natural, room, padding)
        heights = self._heights(widths)
        if sum(heights) + 1 > height:  # the header takes a line
            widths = fit_columns(self.specs, natural, room - bar, padding)
            heights = self._heights(widths)
        return widths, heights

    def _heights(self, widths: dict[str, int]) -> list[int]:
        heights = []
        for row in self.table_rows:
            lines = 1
            for column in self.specs:
                if column.lines and column.key in widths and column.key in row.cells:
                    cell = wrap_cell(self.app.console, row.cells[column.key], widths[column.key],
                                     column.lines)
                    lines = max(lines, len(cell.plain.split("\n")))
            heights.append(lines)
        return heights

    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:  # the cursor is outside the rows
            return None
        return key.value

    def _restore_cursor(self, key: str | None) -> None:
        if key is None or not self.row_count:
            return
        try:
            index = self.get_row_index(key)
        except RowDoesNotExist:  # the row is gone: the cursor stays at the top
            return
        self.move_cursor(row=index)
