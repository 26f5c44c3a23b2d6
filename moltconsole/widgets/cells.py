"""Text that takes as many cells on the terminal as Rich counts, and text cut to a width.

Rich counts a grapheme cluster as one glyph: ``⚠`` followed by the emoji selector U+FE0F is
two cells to it, a family joined by U+200D is two. Terminals (tmux, most emulators) add up the
code points instead: ``⚠️`` is one cell there, the family six. The line then ends one cell short
(or long) of where Textual thinks, and the cells it did not rewrite keep stray characters. The
selectors and joiners carry no text, so dropping them makes both sides count the same.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text

# Variation selectors (text or emoji presentation), the zero-width joiner, skin-tone modifiers
# and the keycap mark: each changes a glyph's width in some terminals and not in Rich.
_WIDTH_CHANGERS = re.compile("[\ufe0e\ufe0f\u200d\u20e3\U0001f3fb-\U0001f3ff]")
ELLIPSIS = "…"


def terminal_safe(text: str) -> str:
    """``text`` without the code points on whose width Rich and terminals disagree."""
    return text if text.isascii() else _WIDTH_CHANGERS.sub("", text)


def shorten_path(path: str, width: int) -> str:
    """``path`` if it fits in ``width`` cells, else its last components after ``…/``."""
    if width <= 0 or cell_len(path) <= width:
        return path
    parts = path.split("/")
    for start in range(1, len(parts)):
        tail = ELLIPSIS + "/" + "/".join(parts[start:])
        if cell_len(tail) <= width:
            return tail
    # Not even the last component fits: its end, which names the directory.
    name = parts[-1]
    while name and cell_len(name) > width - 1:
        name = name[1:]
    return ELLIPSIS + name


def fit(text: str, width: int) -> Text:
    """``text`` on one line of at most ``width`` cells, cut at the end with ``…``."""
    line = Text(text, no_wrap=True, overflow="ellipsis")
    if width > 0 and line.cell_len > width:
        line.truncate(width, overflow="ellipsis")
    return line
