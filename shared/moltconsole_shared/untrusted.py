"""Make text that came from the agent inert before it reaches a terminal.

Log lines, exit messages and file contents are produced by the sandbox, which we do not trust.
An escape sequence in them could move the cursor, retitle the window or write to the user's
clipboard (OSC 52), so every C0/C1 control except tab is replaced by a visible placeholder.
Bidirectional-text controls are replaced too: they reorder what the user reads (a file name or
a command that displays as something else, "Trojan Source"), so they must not act either.
"""

from __future__ import annotations

import re

# Lone C0/C1 controls (which start every escape sequence: CSI, OSC, DCS, ...) except \t, and the
# bidirectional controls: LRE RLE PDF LRO RLO, LRI RLI FSI PDI, LRM RLM, and the Arabic letter mark.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x1B:
        return "\u241b"  # SYMBOL FOR ESCAPE
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block mirrors C0
    if code == 0x7F:
        return "\u2421"  # SYMBOL FOR DELETE
    return "\ufffd"  # C1 and bidirectional controls have no picture


def sanitize(text: str) -> str:
    """Replace every control character (except tab) by a printable placeholder."""
    return _CONTROL.sub(_visible, text)
