"""Durations as the CLI and the console show them."""

import pytest

from moltconsole.formatting import duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (307, "5m07s"), (3600, "1h00m"),
     (11520, "3h12m"), (187200, "2d04h")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
