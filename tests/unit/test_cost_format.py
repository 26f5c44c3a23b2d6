"""How money reads: rounded in tables, exact to the nano-dollar in a request's detail."""

from __future__ import annotations

import pytest

from moltconsole.widgets.cost_format import money, money_exact


@pytest.mark.parametrize(("nanos", "shown"), [
    (6_045_000, "$0.006045"),  # the example: tables say $0.0060
    (7_800_000, "$0.0078"),
    (1, "$0.000000001"),
    (0, "$0.00"),
    (1_500_000_000, "$1.50"),  # cents are always there
    (12_000_000_000, "$12.00"),
    (1_234_567_890_123, "$1,234.567890123"),
    (-22_500_000, "-$0.0225"),  # caching that cost more than it saved
    (None, "no price"),  # never $0
])
def test_money_exact_keeps_every_digit_and_trims_trailing_zeros(nanos: int | None, shown: str) -> None:
    assert money_exact(nanos) == shown


def test_tables_round_what_the_detail_shows_exactly() -> None:
    assert money(6_045_000) == "$0.0060"
    assert money_exact(6_045_000) == "$0.006045"
