"""Small text formatters shared by the CLI and the console."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """A compact, human duration: 42s, 5m07s, 3h12m, 2d04h."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
