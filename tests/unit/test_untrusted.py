"""Text from the sandbox cannot drive the terminal."""

from moltconsole.untrusted import sanitize


def test_escape_sequences_become_visible_and_inert() -> None:
    hostile = "ok \x1b[2J\x1b]52;c;ZXZpbA==\x07 done\r\n\x9b31m"
    clean = sanitize(hostile)
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in clean)
    assert clean.startswith("ok \u241b[2J\u241b]52;c;ZXZpbA==\u2407 done")


def test_plain_text_and_tabs_are_unchanged() -> None:
    assert sanitize("level=info\tmsg=héllo ✓") == "level=info\tmsg=héllo ✓"
