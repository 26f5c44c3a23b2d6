"""A table of the Costs screen: rows of requests or models, with enter shown as "Details"."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.widgets import DataTable


class CostTable(DataTable[Any]):
    """A DataTable whose enter key is listed in the footer and help (it opens the detail view).

    DataTable's own enter binding has no description, and as the focused widget's binding it
    hides the screen's "Details" from the footer.
    """

    BINDINGS = [
        Binding("enter", "select_cursor", "Details", id="costs.table.select"),
    ]
