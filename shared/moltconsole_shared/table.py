"""Plain text tables for the command lines of both sides, with every cell made inert."""

from __future__ import annotations

from moltconsole_shared.untrusted import sanitize


def format_table(titles: list[str], rows: list[list[str]]) -> str:
    """A plain text table; the last column is not padded."""
    cells = [[sanitize(str(c)) for c in row] for row in [titles, *rows]]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(titles))]
    out = []
    for row in cells:
        parts = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        out.append("  ".join(parts))
    return "\n".join(out)
