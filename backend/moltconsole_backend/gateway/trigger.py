"""Why the agent made a request: a person's message, a tool result, or OpenClaw's own jobs.

The Costs screen flags money spent while no person wrote anything; OpenClaw's heartbeat and its
memory jobs are known to burn tokens while the user is away. The gateway tells them apart by
markers OpenClaw puts in the prompts it writes itself (read from OpenClaw 2026.9.x, and the
heartbeat prompt of earlier releases):

* heartbeat: the default heartbeat prompt ("Follow the heartbeat monitor scratch context when
  provided. ..."; before 2026.9 "Read HEARTBEAT.md if it exists ..."), the periodic-task variant
  ("Run the following periodic tasks ..."), the ``heartbeat_respond`` instructions, the
  ``HEARTBEAT_OK`` reply token and the "[OpenClaw heartbeat poll]" transcript line.
* background: the pre-compaction memory flush ("Pre-compaction memory flush"), the memory
  dream-diary run ("Write a dream diary entry ..." / "You are keeping a dream diary."), the
  compaction summariser ("You are a context summarization assistant."), cron and async-command
  wake-ups ("[OpenClaw cron wake]", "A scheduled reminder has been triggered.", "An async command
  ...").

Rule: background markers in the system prompt decide first. Otherwise the last message decides:
a person's message is "user" (unless it carries a heartbeat or background marker); a tool result
continues the turn that asked for the tool, so the walk goes back to the message that opened the
turn: a heartbeat or background turn keeps that trigger, a person's turn gives "tool". A body
without messages is "unknown". Only the last messages and the head and tail of their text are
read, so a 1 MB body costs microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from moltconsole_shared.wire.records import Api, Trigger

HEAD_CHARS = 8192  # markers sit at the start of OpenClaw's prompts ...
TAIL_CHARS = 2048  # ... or, for summaries, at the end
MAX_WALK = 256  # messages walked back to find the one that opened the turn
SYSTEM_CHARS = 262_144

HEARTBEAT_MARKERS = (
    "Follow the heartbeat monitor scratch context when provided.",
    "Read HEARTBEAT.md if it exists",
    "Run the following periodic tasks (only those due based on their intervals):",
    "Use heartbeat_respond to report the wake outcome.",
    "[OpenClaw heartbeat poll]",
    "HEARTBEAT_OK",
)
BACKGROUND_MARKERS = (
    "Pre-compaction memory flush",
    "Write a dream diary entry from these memory fragments",
    "The messages above are a conversation to summarize.",
    "The messages above are NEW conversation messages to incorporate into the existing summary",
    "This is the PREFIX of a turn that was too large to keep.",
    "[OpenClaw cron wake]",
    "[OpenClaw exec completion]",
    "[OpenClaw session event]",
    "A scheduled reminder has been triggered.",
    "A scheduled cron event was triggered",
    "An async command you ran earlier",
    "An async command completion event was triggered",
)
BACKGROUND_SYSTEM_MARKERS = (
    "Pre-compaction memory flush turn.",
    "You are keeping a dream diary.",
    "You are a context summarization assistant.",
)

_TOOL_RESULT_TYPES = frozenset(
    {
        "tool_result",
        "function_call_output",
        "custom_tool_call_output",
        "computer_call_output",
        "mcp_call_output",
    }
)
_TEXT_TYPES = frozenset({"text", "input_text"})


def classify_trigger(api: Api, body: Mapping[str, Any]) -> Trigger:
    """Why this request was made: "user", "tool", "heartbeat", "background" or "unknown"."""
    try:
        if _has_marker(_system_text(api, body), BACKGROUND_SYSTEM_MARKERS):
            return "background"
        messages = _messages(api, body)
        if not messages:
            return "unknown"
        saw_tool = False
        for message in reversed(messages[-MAX_WALK:]):
            kind, text = _read(api, message)
            if kind == "tool":
                saw_tool = True
            elif kind == "user":
                origin = _classify_text(text)
                if origin != "user":
                    return origin
                return "tool" if saw_tool else "user"
            # assistant turns and anything else: keep walking back to the turn's opener
        return "tool" if saw_tool else "unknown"
    except (AttributeError, TypeError, ValueError):
        return "unknown"


def _classify_text(text: str) -> Trigger:
    """The trigger a turn-opening user text names (the text is already cut to head and tail)."""
    if _has_marker(text, HEARTBEAT_MARKERS):
        return "heartbeat"
    if _has_marker(text, BACKGROUND_MARKERS):
        return "background"
    return "user"


def _has_marker(text: str, markers: Sequence[str]) -> bool:
    return bool(text) and any(marker in text for marker in markers)


def _system_text(api: Api, body: Mapping[str, Any]) -> str:
    if api == "anthropic-messages":
        return _text_of(body.get("system"), SYSTEM_CHARS)
    if api == "openai-responses":
        return _text_of(body.get("instructions"), SYSTEM_CHARS)
    parts: list[str] = []
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping) or message.get("role") not in ("system", "developer"):
            break  # system messages lead the list
        parts.append(_text_of(message.get("content"), SYSTEM_CHARS))
    return "\n".join(parts)


def _messages(api: Api, body: Mapping[str, Any]) -> list[Any]:
    if api == "openai-responses":
        items = body.get("input")
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        return items if isinstance(items, list) else []
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def _read(api: Api, message: Any) -> tuple[str, str]:
    """(kind, text) of one message: kind is "user", "tool" or "other"."""
    if not isinstance(message, Mapping):
        return "other", ""
    role = message.get("role")
    if role == "tool" or message.get("type") in _TOOL_RESULT_TYPES:
        return "tool", ""
    if role != "user":
        return "other", ""
    content = message.get("content")
    if isinstance(content, list) and any(
        isinstance(block, Mapping) and block.get("type") in _TOOL_RESULT_TYPES for block in content
    ):
        return "tool", ""
    # A person's message even without text (an image, a file).
    return "user", _text_of(content, HEAD_CHARS + TAIL_CHARS + 1, keep_tail=True)


def _text_of(content: Any, limit: int, keep_tail: bool = False) -> str:
    """The text of a string or a list of text blocks; long text keeps its head (and tail)."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(
            block.get("text", "")
            for block in content
            if isinstance(block, Mapping)
            and block.get("type") in _TEXT_TYPES
            and isinstance(block.get("text"), str)
        )
    else:
        return ""
    if len(text) <= limit:
        return text
    if keep_tail:
        return text[:HEAD_CHARS] + text[-TAIL_CHARS:]
    return text[:limit]
