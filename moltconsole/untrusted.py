"""Make text that came from the agent inert before it reaches a terminal.

Log lines, exit messages and file contents are produced by the sandbox, which we do not trust.
An escape sequence in them could move the cursor, retitle the window or write to the user's
clipboard (OSC 52), so every C0/C1 control except tab is replaced by a visible placeholder.
"""

from __future__ import annotations

import re

# ESC-introduced sequences (CSI, OSC, DCS, ...) and lone C0/C1 controls, except \t.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x1B:
        return "\u241b"  # SYMBOL FOR ESCAPE
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block mirrors C0
    if code == 0x7F:
        return "\u2421"  # SYMBOL FOR DELETE
    return "\ufffd"  # C1 controls have no picture


def sanitize(text: str) -> str:
    """Replace every control character (except tab) by a printable placeholder."""
    return _CONTROL.sub(_visible, text)
