"""Text from the sandbox cannot drive the terminal."""

import pytest

from moltconsole_shared.untrusted import sanitize


def test_escape_sequences_become_visible_and_inert() -> None:
    hostile = "ok \x1b[2J\x1b]52;c;ZXZpbA==\x07 done\r\n\x9b31m"
    clean = sanitize(hostile)
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in clean)
    assert clean.startswith("ok \u241b[2J\u241b]52;c;ZXZpbA==\u2407 done")


def test_plain_text_and_tabs_are_unchanged() -> None:
    assert sanitize("level=info\tmsg=héllo ✓") == "level=info\tmsg=héllo ✓"


@pytest.mark.parametrize(
    "control", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                "\u2069", "\u200e", "\u200f", "\u061c"],
)
def test_bidirectional_controls_become_visible(control: str) -> None:
    # "Trojan Source": an override makes "exe.txt" display as "txt.exe".
    clean = sanitize(f"invoice{control}txt.exe")
    assert control not in clean
    assert clean == "invoice\ufffdtxt.exe"


def test_right_to_left_text_itself_is_kept() -> None:
    assert sanitize("שלום مرحبا") == "שלום مرحبا"
