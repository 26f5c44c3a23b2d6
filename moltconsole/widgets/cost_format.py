"""How money, tokens and latency read on the Costs screen and in ``moltconsole costs``.

No Textual here: the command line uses these too. Money arrives as integer nano-dollars.
"""

from __future__ import annotations

from moltconsole_shared.durations import parse_duration
from moltconsole_shared.wire.records import NANOS_PER_USD

NO_PRICE = "no price"

# The time windows the Costs screen cycles through, and their length in seconds.
WINDOWS: dict[str, float] = {label: parse_duration(label) for label in ("24h", "7d", "30d")}


def money(nanos: int | float | None) -> str:
    """``$12.34`` from $1 up, ``$0.0042`` below (so small calls do not read as free).

    None means the model has no price, which is shown as such and never as $0. Zero is
    ``$0.00``; an amount too small to show is ``<$0.0001``, not zero.
    """
    if nanos is None:
        return NO_PRICE
    if nanos == 0:
        return "$0.00"
    dollars = abs(nanos) / NANOS_PER_USD
    sign = "-" if nanos < 0 else ""
    if dollars < 0.00005:
        return f"{sign}<$0.0001"  # not zero, and rounding would say it is
    # Rounding can carry 0.99996 up to 1.0000: decide on the rounded value.
    if round(dollars, 4) >= 1:
        return f"{sign}${dollars:,.2f}"
    return f"{sign}${dollars:.4f}"


def money_exact(nanos: int | None) -> str:
    """Every digit the ledger holds, trailing zeros trimmed to cents: ``$0.006045``, ``$1.50``.

    For one request's detail, where ``money`` would round $0.006045 to $0.0060. Integer
    arithmetic, so no float noise; None is "no price", as in ``money``.
    """
    if nanos is None:
        return NO_PRICE
    whole, fraction = divmod(abs(nanos), NANOS_PER_USD)
    digits = f"{fraction:09d}".rstrip("0").ljust(2, "0")
    return f"{'-' if nanos < 0 else ''}${whole:,}.{digits}"


def rate(nanos_per_hour: float) -> str:
    """A burn rate: ``$0.0312/h``."""
    return f"{money(round(nanos_per_hour))}/h"


def tokens(count: int) -> str:
    """Exact, with thousands separators: ``1,234,567``."""
    return f"{count:,}"


def millis(value: float | None) -> str:
    """``0.4 ms`` below 10 ms, ``850 ms`` below a second, ``1.24 s`` above, ``-`` when unknown."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def percent(part: float, whole: float) -> str:
    """``3.2%``; ``-`` when there is nothing to divide by."""
    if not whole:
        return "-"
    return f"{100 * part / whole:.1f}%"

