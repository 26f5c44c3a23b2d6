"""The one duration parser: config, command line, cost API and console windows all read it."""

import pytest

from moltconsole_shared.durations import DurationError, is_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("10m", 600.0), ("24h", 86_400.0), ("7d", 604_800.0), ("1.5h", 5400.0),
     ("250ms", 0.25), (" 0m ", 0.0)],
)
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert is_duration(text)


@pytest.mark.parametrize("text", ["", "10", "m", "10 m", "-5m", "1e3s", "10min", "2w", "1h30m"])
def test_anything_else_is_refused_with_what_a_duration_looks_like(text: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert repr(text) in str(caught.value)
    assert "90s, 10m, 24h or 7d" in str(caught.value)
    assert not is_duration(text)


def test_whole_asks_for_a_whole_number_of_units() -> None:
    assert parse_duration("30m", whole=True) == 1800.0
    with pytest.raises(DurationError, match="a whole number and a unit"):
        parse_duration("0.5h", whole=True)


def test_a_duration_is_a_value_error() -> None:
    # Callers that accept a duration or something else (an ISO time) catch ValueError.
    assert issubclass(DurationError, ValueError)
