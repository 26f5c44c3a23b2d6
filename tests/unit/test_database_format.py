"""What the database and conversation views say, as pure functions of the wire messages: values
of a row, the page line, a session's row, a turn's label and text, and how many lines a turn
wraps to (the conversation's height is counted from it, so it must match Rich's wrap)."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.text import Text

from moltconsole.widgets.conversation_format import (
    TOOL_RESULT_CHARS,
    compact_json,
    pack,
    session_cells,
    turn_body,
    turn_label,
    usage_parts,
)
from moltconsole.widgets.database_format import cell_text, is_agent_database, page_header
from moltconsole.widgets.turn_log import wrapped_lines
from moltconsole_shared.wire.memory_db import ElidedValue, RowsPage, SessionInfo, Turn, TurnUsage

MARKUP = "[bold red]boom[/] [link=file:///etc/passwd]x[/link]"


def turn(role: str, text: str = "", **fields: object) -> Turn:
    return Turn(role=role, kind="message", time=1_796_305_028.0, text=text, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    "", "one line", "a\nb\n", "\n\n", "words " * 40, "x" * 300, "tab\there\tand\tthere " * 5,
    "wide 漢字漢字漢字 " * 12, "ends with a newline\n", "long-" * 50 + " tail",
])
@pytest.mark.parametrize("width", [8, 20, 67])
def test_counted_lines_match_rich_wrap(text: str, width: int) -> None:
    console = Console(width=200)
    assert wrapped_lines(Text(text), width) == len(Text(text).wrap(console, width, overflow="fold"))


def test_cells_show_agent_text_as_written() -> None:
    title = cell_text(MARKUP)
    assert title.plain == MARKUP[:31] + "…" and not title.spans and not title.style
    assert cell_text("\x1b]52;c;aGk=\x07").plain == "␛]52;c;aGk=␇"  # a clipboard write, inert
    assert cell_text(None).plain == "NULL" and cell_text(None).style == "dim"
    assert cell_text(3).plain == "3" and cell_text(2.5).plain == "2.5"
    assert cell_text(ElidedValue("text", "abc " * 40, 9000)).plain == "abc abc abc abc a… (9,000 chars)"
    assert cell_text(ElidedValue("blob", "00ff" * 16, 64)).plain == "blob 64 B 00ff00ff00ff00ff…"
    assert cell_text(ElidedValue("blob", "0aff", 2)).plain == "blob 2 B 0aff"
    assert cell_text(ElidedValue("secret", "", 41)).plain == "hidden (length 41)"


def test_the_page_line_says_which_page_and_when_rows_were_not_counted() -> None:
    page = RowsPage("t", ["a"], [[1]] * 100, 100, 250)
    assert page_header(page, 100).plain == "t · 250 rows · page 2/3 · rows 101 to 200"
    uncounted = RowsPage("t", ["a"], [[1]] * 100, 200, None)
    assert page_header(uncounted, 100).plain == "t · rows not counted · page 3 · rows 201 to 300"
    assert page_header(RowsPage("t", ["a"], [], 0, 0), 100).plain == "t · 0 rows · page 1/1"
    assert is_agent_database("agents/main/agent/openclaw-agent.sqlite")
    assert not is_agent_database("state/openclaw.sqlite")


def test_a_session_row() -> None:
    session = SessionInfo(ref="r", id="i", agent="main", first_line=MARKUP, updated=1_796_305_042.0, turns=3,
                          archived="reset", problem="its archive is damaged")
    title, updated, turns, cost, agent = (cell.plain for cell in session_cells(session))
    assert title.startswith("! [bold red]boom[/]") and title.endswith("(reset)")
    assert (agent, turns, cost) == ("main", "3", "-")
    assert len(updated) == len("2026-12-03 13:37")


def test_usage_reads_in_the_costs_screens_words_and_breaks_only_between_parts() -> None:
    # prompt: every token sent, the cached ones included.
    usage = TurnUsage(prompt=1200, cache_read=800, cache_write=300, output=85)
    parts = usage_parts(turn("assistant", usage=usage, cost_nanos=6_240_000))
    assert parts == ["$0.0062", "prompt 2,300", "cache read 800", "cache write 300", "output 85"]
    assert pack(parts, 66) == ["$0.0062  prompt 2,300  cache read 800  cache write 300  output 85"]
    assert pack(parts, 32) == ["$0.0062  prompt 2,300", "cache read 800  cache write 300", "output 85"]
    assert pack(["a-very-long-model-name", "x"], 8) == ["a-very-long-model-name", "x"]
    assert usage_parts(turn("assistant", usage=TurnUsage(prompt=5, output=1))) == ["prompt 5", "output 1"]
    assert usage_parts(turn("assistant")) == []
    other = turn("assistant", cost_nanos=10_000, model="molt/[b]other[/b]")
    assert usage_parts(other, "molt/main") == ["<$0.0001", "molt/[b]other[/b]"]
    assert usage_parts(other, "molt/[b]other[/b]") == ["<$0.0001"]


def test_turns_are_labelled_by_role_and_never_markup() -> None:
    user = turn_label(turn("user"))
    assert user.style == "bold cyan" and user.plain.startswith("user ")
    assert turn_label(turn("assistant", tool_name="write")).plain == "tool call"
    assert turn_label(turn("tool", is_error=True)).plain == "tool error"
    assert turn_label(turn("tool", is_error=True)).style == "bold red"

    said = turn_body(turn("assistant", MARKUP + "\nline two\x1b[2J"))
    assert said.plain == MARKUP + "\nline two␛[2J"
    assert all(span.style in ("dim", "") for span in said.spans)

    call = turn_body(turn("assistant", tool_name="[b]x[/b]", tool_input='{\n  "path": "a.md",\n  "n": 1\n}'))
    assert call.plain == '[b]x[/b] {"path": "a.md", "n": 1}'
    assert compact_json("not { json\n at all") == "not { json at all"

    failed = turn_body(turn("tool", "x" * (TOOL_RESULT_CHARS + 10), tool_name="read", is_error=True))
    assert failed.plain.endswith("… (10 more characters)") and failed.plain.startswith("read: xxx")
    assert "red" in {str(span.style) for span in failed.spans}
    priced = turn("assistant", "ok", usage=TurnUsage(prompt=1, output=2), cost_nanos=10)
    assert turn_body(priced).plain == "ok"  # its usage goes under it, in parts
