"""How a SQLite database of the agent's state reads in the console: its tables and its rows.

Pure functions of the wire messages (``moltconsole_shared.wire.memory_db``); no widgets here,
so tests pin what they say. The backend already sends every value shown-safe (control
characters visible, long text cut, blobs as hex, secrets hidden); each one is still passed
through ``sanitize`` here and returned as a Rich ``Text``, never as markup, because it is the
agent's text and the backend may be an older or a different one.
"""

from __future__ import annotations

import math

from rich.text import Text

from moltconsole.widgets.cells import fit, terminal_safe
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory_db import Cell, ElidedValue, RowsPage, TableInfo

CELL_WIDTH = 32  # cells of one value in a page of rows; the rest is cut with "…"
NAME_WIDTH = 40  # cells of a table or column name
NOTE_WIDTH = 80  # cells of the note beside a table that was not counted
HEX_WIDTH = 16  # hex digits of a blob's preview (8 bytes)
AGENT_DATABASE = "openclaw-agent.sqlite"  # OpenClaw's per-agent database: its sessions and transcripts


def shown(text: str) -> str:
    """Agent text as it may reach the terminal: controls visible, width-changers dropped."""
    return terminal_safe(sanitize(text))


def counted(number: int, one: str, many: str | None = None) -> str:
    """``1 row``, ``1,234 rows``."""
    return f"{number:,} {one if number == 1 else many or one + 's'}"


def is_agent_database(path: str) -> bool:
    """Whether ``path`` is an OpenClaw agent's database (its sessions can be read as conversations)."""
    return path.rsplit("/", 1)[-1] == AGENT_DATABASE


def name_text(name: str, width: int = NAME_WIDTH) -> Text:
    """A table's or a column's name, cut to ``width`` cells."""
    return fit(shown(name), width)


def row_count(table: TableInfo) -> Text:
    """A table's row count, or ``?`` (yellow) when it was not counted (its note says why)."""
    if table.rows is None:
        return Text("?", style="yellow", justify="right")
    return Text(f"{table.rows:,}", justify="right")


def table_note(table: TableInfo) -> Text:
    """Why a table was not counted or cannot be read; empty when there is nothing to say."""
    if not table.note:
        return Text("")
    note = fit(shown(table.note), NOTE_WIDTH)
    note.stylize("yellow")
    return note


def elided_text(value: ElidedValue, width: int = CELL_WIDTH) -> Text:
    """The short form of a value not shown whole: its beginning and its length, a blob's first
    bytes and size, or that a secret is hidden."""
    if value.kind == "secret":
        return Text(f"hidden (length {value.size:,})", style="yellow italic")
    if value.kind == "blob":
        preview = shown(value.preview)[:HEX_WIDTH]
        more = "…" if value.size * 2 > len(preview) else ""
        return Text.assemble((f"blob {value.size:,} B ", "magenta"), (f"{preview}{more}", "dim"))
    suffix = f" ({value.size:,} chars)"
    head = fit(shown(value.preview), max(8, width - len(suffix)))
    if not head.plain.endswith("…"):
        head.append("…")
    head.append(suffix, style="dim")
    return head


def cell_text(cell: Cell, width: int = CELL_WIDTH) -> Text:
    """One value of a row: NULL dim, numbers on the right, text cut to ``width`` cells."""
    if cell is None:
        return Text("NULL", style="dim")
    if isinstance(cell, bool):  # JSON true/false never comes, but an int subclass would print oddly
        return Text(str(int(cell)), justify="right")
    if isinstance(cell, int):
        return Text(str(cell), justify="right")
    if isinstance(cell, float):
        return Text(repr(cell), justify="right")
    if isinstance(cell, ElidedValue):
        return elided_text(cell, width)
    return fit(shown(cell), width)


def page_count(page: RowsPage, page_rows: int) -> int | None:
    """How many pages the table has (at least one), or None when its rows were not counted."""
    if page.total is None:
        return None
    return max(1, math.ceil(page.total / page_rows))


def has_next(page: RowsPage, page_rows: int) -> bool:
    """Whether rows follow this page: by the count, or (not counted) when the page was full."""
    if page.total is None:
        return len(page.rows) >= page_rows
    return page.offset + len(page.rows) < page.total


def page_header(page: RowsPage, page_rows: int) -> Text:
    """``TABLE · N rows · page x/y``; ``rows not counted`` and ``page x`` when the count is missing."""
    number = page.offset // page_rows + 1
    pages = page_count(page, page_rows)
    header = Text.assemble((shown(page.table), "bold"), " · ")
    if page.total is None:
        header.append("rows not counted", style="yellow")
        header.append(f" · page {number}")
    else:
        header.append(counted(page.total, "row"))
        header.append(f" · page {number}/{pages}")
    if page.rows:
        header.append(f" · rows {page.offset + 1:,} to {page.offset + len(page.rows):,}", style="dim")
    return header


def tables_header(path: str, tables: list[TableInfo], snapshot: str | None) -> Text:
    """The line above a database's tables: its name, how many tables, and which view."""
    name = path.rsplit("/", 1)[-1]
    kinds = {"table": 0, "view": 0, "virtual": 0}
    for table in tables:
        kinds[table.kind] += 1
    parts = [counted(kinds["table"], "table")]
    if kinds["view"]:
        parts.append(counted(kinds["view"], "view"))
    if kinds["virtual"]:
        parts.append(counted(kinds["virtual"], "virtual table"))
    header = Text.assemble((shown(name), "bold"), f" · {', '.join(parts)}")
    if snapshot is not None:
        header.append(f" · snapshot {shown(snapshot)}")
    hints = "enter: a table's rows"
    if is_agent_database(path):
        hints += " · c: OpenClaw's sessions as conversations"
    header.append("\n" + hints, style="dim")
    return header
