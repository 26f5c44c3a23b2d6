"""The one way moltconsole reads a duration such as ``90s``, ``10m``, ``24h`` or ``7d``.

The same spelling everywhere: the config (``sandbox.heartbeat``, in OpenClaw's own format), the
command line (``--since``), the cost API (``window``, ``since``), the console's time windows.
"""

from __future__ import annotations

import math
import re

# Seconds in one of each unit.
UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
EXAMPLES = "90s, 10m, 24h or 7d"


class DurationError(ValueError):
    """Text that is not a duration; the message shows the text and what a duration looks like."""


def is_duration(text: str) -> bool:
    """Whether ``text`` reads as a duration (for inputs that may also be something else)."""
    return _DURATION.fullmatch(text.strip()) is not None


def parse_duration(text: str, *, whole: bool = False) -> float:
    """Seconds in ``text``: a number and a unit (ms, s, m, h or d), e.g. ``1.5h``.

    ``whole`` asks for a whole number of units, as OpenClaw reads its own durations (``30m``,
    not ``0.5h``). Raises :class:`DurationError`.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or (whole and "." in match.group(1)):
        kind = "a whole number and a unit" if whole else "a number and a unit"
        raise DurationError(
            f"{text!r} is not a duration: write {kind} (ms, s, m, h or d), such as {EXAMPLES}"
        )
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise DurationError(f"{text!r} is too long a duration; use at most a few hundred days")
    return seconds
