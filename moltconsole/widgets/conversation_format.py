"""How OpenClaw's sessions and one session's conversation read in the console.

Pure functions of the wire messages (``moltconsole_shared.wire.memory_db``); no widgets here.
A conversation is drawn in two columns (:mod:`moltconsole.widgets.turn_log` lays them out): a
role label on the left in its colour, and the turn's text wrapped on the right: the user's
words, the assistant's words with what the response cost under them (tokens in the Costs
screen's words: "prompt" is every token sent, cache reads and writes included), a tool call
as the tool's name and its input as one line of JSON, a tool's result (red when it failed),
and OpenClaw's system entries dimmed.

Everything in a transcript was written by the agent or by what it read: each line is passed
through ``sanitize`` and returned inside Rich ``Text`` objects, never as markup, so a ``[bold]``
or an escape sequence in it is shown as the characters it is.
"""

from __future__ import annotations

import json
import time

from rich.cells import cell_len
from rich.text import Text

from moltconsole.widgets.cells import fit
from moltconsole.widgets.cost_format import money, tokens
from moltconsole.widgets.database_format import counted, shown
from moltconsole_shared.wire.memory_db import Conversation, SessionInfo, Turn

LABEL_WIDTH = 11  # the role column: "tool result", "assistant", "user"
SESSION_WIDTH = 32  # cells of a session's title in the list
TOOL_INPUT_CHARS = 600  # characters of a tool call's input shown (one line of JSON)
TOOL_RESULT_CHARS = 3000  # characters of a tool's result shown
THINKING_CHARS = 500  # characters of the model's thinking shown
RAW_CHARS = 300  # characters of an entry of OpenClaw's own bookkeeping shown

ROLE_STYLES = {
    "user": "bold cyan",
    "assistant": "bold green",
    "tool call": "bold yellow",
    "tool result": "bold magenta",
    "tool error": "bold red",
    "system": "dim bold",
}


def inert(text: str) -> str:
    """Agent text with every line's controls made visible and its line ends kept."""
    return "\n".join(shown(line.removesuffix("\r")) for line in text.split("\n"))


def cut(text: str, limit: int) -> tuple[str, int]:
    """``text`` cut to ``limit`` characters, and how many were left out (0: it is whole)."""
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def local_time(when: float | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """A moment in local time (``-`` when unknown)."""
    return "-" if when is None else time.strftime(pattern, time.localtime(when))


def session_title(session: SessionInfo) -> str:
    """What names a session for a person: its label, its first line, its key, or its id."""
    return session.title or session.first_line or session.key or session.id


def session_cells(session: SessionInfo) -> list[Text]:
    """One row of the session list: title, updated, turns, cost, agent (the agent last: most
    sandboxes have one, and a narrow view keeps the columns on the left)."""
    title = fit(shown(session_title(session)), SESSION_WIDTH)
    if session.archived:
        title = Text.assemble(title, (f" ({session.archived})", "dim"))
    if session.problem:
        title = Text.assemble(("! ", "bold yellow"), title)
    cost = money(session.cost_nanos) if session.cost_nanos is not None else "-"
    return [
        title,
        Text(local_time(session.updated), style="dim"),
        Text(f"{session.turns:,}", justify="right"),
        Text(cost, justify="right"),
        fit(shown(session.agent), 16),
    ]


USAGE_GAP = "  "  # between the parts of a response's usage line


def usage_parts(turn: Turn, session_model: str = "") -> list[str]:
    """What a response cost, in parts that are never broken across lines: ``$0.0062``,
    ``prompt 2,300``, ``cache read 800``, ``cache write 300``, ``output 85`` (and its model, when
    not the session's). The cost first, so a narrow view moves token counts to the next line,
    not the money.

    OpenClaw's ``input`` is the uncached part of the prompt; the Costs screen's "prompt" is all
    of it, so the cache reads and writes are added in.
    """
    parts = []
    if turn.cost_nanos is not None:
        parts.append(money(turn.cost_nanos))
    usage = turn.usage
    if usage is not None:
        prompt = usage.prompt + usage.cache_read + usage.cache_write
        parts.append(f"prompt {tokens(prompt)}")
        if usage.cache_read:
            parts.append(f"cache read {tokens(usage.cache_read)}")
        if usage.cache_write:
            parts.append(f"cache write {tokens(usage.cache_write)}")
        parts.append(f"output {tokens(usage.output)}")
    if turn.model and turn.model != session_model:
        parts.append(shown(turn.model))
    return parts


def pack(parts: list[str], width: int) -> list[str]:
    """``parts`` on as few lines of ``width`` cells as fit, :data:`USAGE_GAP` apart, each part
    whole (a part wider than ``width`` gets a line of its own)."""
    lines: list[str] = []
    line = ""
    for part in parts:
        joined = f"{line}{USAGE_GAP}{part}" if line else part
        if line and cell_len(joined) > width:
            lines.append(line)
            line = part
        else:
            line = joined
    if line:
        lines.append(line)
    return lines


def compact_json(text: str) -> str:
    """A tool call's input on one line (``{"path": "a.md"}``), or as written when not JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return " ".join(text.split())
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _more(left_out: int) -> Text:
    return Text(f" … ({left_out:,} more characters)", style="dim italic")


def turn_label(turn: Turn) -> Text:
    """The left column of a turn: its role in its colour (and, for the user's, the time)."""
    if turn.role == "assistant" and turn.tool_name is not None:
        role = "tool call"
    elif turn.role == "tool":
        role = "tool error" if turn.is_error else "tool result"
    else:
        role = turn.role
    label = Text(role, style=ROLE_STYLES[role])
    if turn.role == "user" and turn.time is not None:
        label.append(" " + local_time(turn.time, "%H:%M"), style="dim")
    return label


def turn_body(turn: Turn) -> Text:
    """The right column of a turn: its text (what a response cost goes under it: :func:`usage_parts`)."""
    body = Text()
    if turn.thinking:
        thinking, left_out = cut(turn.thinking, THINKING_CHARS)
        body.append(inert(thinking), style="dim italic")
        if left_out:
            body.append_text(_more(left_out))
        body.append("\n")
    if turn.role == "assistant" and turn.tool_name is not None:
        body.append(shown(turn.tool_name), style="bold")
        line, left_out = cut(compact_json(turn.tool_input or ""), TOOL_INPUT_CHARS)
        body.append(" " + shown(line), style="dim")
        if left_out:
            body.append_text(_more(left_out))
    elif turn.role == "tool":
        if turn.tool_name:
            body.append(shown(turn.tool_name) + ": ", style="bold red" if turn.is_error else "bold")
        text, left_out = cut(turn.text, TOOL_RESULT_CHARS)
        body.append(inert(text), style="red" if turn.is_error else "")
        if left_out:
            body.append_text(_more(left_out))
    elif turn.role == "system":  # the backend's words say what it was ("model: ...", "reset (...)")
        text, left_out = cut(turn.text, RAW_CHARS if turn.raw else TOOL_RESULT_CHARS)
        body.append(inert(text), style="dim")
        if left_out:
            body.append_text(_more(left_out))
    else:
        body.append(inert(turn.text))
    return body


def conversation_header(conversation: Conversation, internal: bool) -> Text:
    """The line above a conversation: its title, agent, size and cost, and what is left out."""
    session = conversation.session
    header = Text.assemble(
        (fit(shown(session_title(session)), SESSION_WIDTH).plain, "bold"),
        f" · {shown(session.agent)} · {counted(session.turns, 'turn')}",
    )
    if session.cost_nanos is not None:
        header.append(f" · {money(session.cost_nanos)}")
    if session.archived:
        header.append(f" · {session.archived}", style="dim")
    header.append(" · internal entries shown" if internal else "", style="dim")
    if session.problem:
        header.append(f"\n{shown(session.problem)}", style="yellow")
    if conversation.omitted:
        header.append(f"\nthe oldest {counted(conversation.omitted, 'turn')} are left out", style="yellow")
    return header
