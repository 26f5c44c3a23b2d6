"""``--since`` of ``logs`` and ``costs``: a duration ago or an ISO 8601 time."""

from __future__ import annotations

import time

from moltconsole_shared.durations import DurationError, parse_duration


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration ago (``90s``, ``10m``, ``1h``, ``2d``) or an ISO 8601 time."""
    from datetime import datetime

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except DurationError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (10m, 1h, 2d) nor an ISO time "
            "(2026-11-25T12:00:00)"
        ) from None
    return when.timestamp()  # a naive time is local time, as a user typing it means

