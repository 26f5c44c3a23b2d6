"""A table of the backend's sandboxes, one row each, keyed by name; the one shown is marked.

The Dashboard's table of all sandboxes and the sandbox picker both use it, with different
columns. Every cell is whole: the columns that fit the table's width are shown, the rest left
out (first the optional ones, from the end), and only a name too long for its column is cut
(with "…"), and :class:`SandboxTable.Fitted` tells the screen how many columns a wider
terminal adds (after each fill, also when a new width refits it). Enter on a row posts
DataTable's ``RowSelected`` with the sandbox's name as the row key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from moltconsole.formatting import duration
from moltconsole.widgets.cells import fit, terminal_safe
from moltconsole.widgets.cost_format import money
from moltconsole.widgets.status_bar import STATE_STYLES
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.sandbox import RUNNING_STATES
from moltconsole_shared.wire.sandboxes import SandboxSummary

SHOWN_MARK = "*"  # before the name of the sandbox the console shows
NAME_CELLS = (8, 24)  # the room a name gets, at least and at most
NOTHING = "-"


def _state(s: SandboxSummary, now: float) -> Text:
    state = str(s.status.state)
    return Text(state, style=STATE_STYLES.get(state, "bold"), no_wrap=True)


def _uptime(s: SandboxSummary, now: float) -> str:
    started = s.status.started_at
    return duration(now - started) if started and s.status.state in RUNNING_STATES else NOTHING


def _cpu(s: SandboxSummary, now: float) -> str:
    return NOTHING if s.cpu_percent is None else f"{s.cpu_percent:.1f}%"


def _memory(s: SandboxSummary, now: float) -> str:
    return NOTHING if s.memory_bytes is None else f"{s.memory_bytes / 2**20:,.0f} MiB"


def _spend(s: SandboxSummary, now: float) -> str:
    return NOTHING if s.spend_today_nanos is None else money(s.spend_today_nanos)


def _version(s: SandboxSummary, now: float) -> str:
    return sanitize(s.openclaw_version)


def _origin(s: SandboxSummary, now: float) -> str:
    return f"{s.origin}, default" if s.default else s.origin


@dataclass(frozen=True)
class SandboxColumn:
    """One column: its title, its cell for a sandbox at a time, and how it aligns."""

    title: str
    cell: Callable[[SandboxSummary, float], str | Text]
    right: bool = False  # numbers line up on the right
    optional: bool = False  # left out first when the table is narrow

    def text(self, sandbox: SandboxSummary, now: float) -> Text:
        """The cell as Rich text, on one line."""
        value = self.cell(sandbox, now)
        text = value if isinstance(value, Text) else Text(value, no_wrap=True)
        if self.right:
            text.justify = "right"
        return text


STATE = SandboxColumn("state", _state)
VERSION = SandboxColumn("version", _version)
# The table of all sandboxes at a glance; the optional ones only where there is room.
FLEET_COLUMNS = (
    STATE,
    SandboxColumn("uptime", _uptime, right=True),
    SandboxColumn("CPU", _cpu, right=True),
    SandboxColumn("memory", _memory, right=True),
    SandboxColumn("spend today", _spend, right=True),
    SandboxColumn("limit", lambda s, now: sanitize(s.memory_limit), right=True, optional=True),
    SandboxColumn("port", lambda s, now: str(s.gateway_port), right=True, optional=True),
    SandboxColumn("version", _version, optional=True),
    SandboxColumn("origin", _origin, optional=True),
)
PICKER_COLUMNS = (STATE, VERSION)


def fitted_columns(
    columns: Sequence[SandboxColumn], sandboxes: Sequence[SandboxSummary], now: float, room: int,
) -> tuple[int, list[tuple[SandboxColumn, int]]]:
    """(the name's width, [(column, width)]) for ``room`` cells: the optional columns go from
    the end while the name would get less than its whole length (within ``NAME_CELLS``), then
    the others while it would get less than its least."""
    least, most = NAME_CELLS
    longest = max([len("name"), *(len(terminal_safe(s.name)) for s in sandboxes)])
    wanted = min(max(longest, least), most)

    def width(column: SandboxColumn) -> int:
        return max([len(column.title), *(column.text(s, now).cell_len for s in sandboxes)])

    shown = [(column, width(column)) for column in columns]

    def left() -> int:  # each column has a cell of padding each side; the mark takes one cell
        return room - sum(w + 2 for _, w in shown) - (len(SHOWN_MARK) + 2) - 2  # the name's padding

    for needed, drop_optional in ((wanted, True), (least, False)):
        while shown and left() < needed:
            droppable = [i for i, (c, _) in enumerate(shown) if c.optional == drop_optional]
            if not droppable:
                break
            shown.pop(droppable[-1])
    return max(min(left(), wanted), 1), shown


class SandboxTable(DataTable[Text]):
    """The sandboxes as rows; :meth:`show` fills it for its width."""

    class Fitted(Message):
        """The table was filled for its width; ``hidden`` columns did not fit."""

        def __init__(self, table: SandboxTable, hidden: int) -> None:
            super().__init__()
            self.table = table
            self.hidden = hidden

        @property
        def control(self) -> SandboxTable:
            """The table that was filled (for ``@on(..., selector)``)."""
            return self.table

    def __init__(self, columns: Sequence[SandboxColumn], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.sandbox_columns = tuple(columns)
        self.hidden = 0  # columns left out for want of room
        self._shown: tuple[tuple[SandboxSummary, ...], str | None, float] = ((), None, 0.0)

    def on_resize(self) -> None:
        self.call_after_refresh(lambda: self.show(*self._shown))

    def selected(self) -> str | None:
        """The name of the sandbox under the cursor, if any."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show(self, sandboxes: Sequence[SandboxSummary], current: str | None, now: float) -> None:
        """One row per sandbox, ``current`` marked; the cursor stays on the sandbox it was on
        (on ``current`` the first time)."""
        self._shown = (tuple(sandboxes), current, now)
        keep = self.selected() or current
        room = self.content_size.width
        if room <= 0:
            return  # not laid out yet (or hidden): filled when it gets its size
        if len(sandboxes) > self.content_size.height - 1 > 0:
            room -= 2  # a scrollbar beside rows that do not fit under the header
        name_width, columns = fitted_columns(self.sandbox_columns, sandboxes, now, room)
        self.hidden = len(self.sandbox_columns) - len(columns)
        with self.app.batch_update():
            self.clear(columns=True)
            self.add_column("", width=len(SHOWN_MARK), key="mark")
            self.add_column("name", width=name_width, key="name")
            for column, width in columns:
                self.add_column(Text(column.title, justify="right" if column.right else "left"),
                                width=width, key=column.title)
            for sandbox in sandboxes:
                mine = sandbox.name == current
                name = fit(terminal_safe(sanitize(sandbox.name)), name_width)
                if mine:
                    name.stylize("bold")
                self.add_row(
                    Text(SHOWN_MARK if mine else " "), name,
                    *(column.text(sandbox, now) for column, _ in columns), key=sandbox.name,
                )
            names = [s.name for s in sandboxes]
            if keep in names:
                self.move_cursor(row=names.index(keep))
        self.post_message(self.Fitted(self, self.hidden))
