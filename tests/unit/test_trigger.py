"""Trigger classification: a person, a tool result, OpenClaw's heartbeat, or its background jobs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from moltconsole_backend.gateway.trigger import (
    BACKGROUND_MARKERS,
    BACKGROUND_SYSTEM_MARKERS,
    HEARTBEAT_MARKERS,
    classify_trigger,
)

SYSTEM = "You are a personal assistant running inside OpenClaw. ## Heartbeat\nHeartbeats are enabled."
CURRENT_TIME = "\nCurrent time: Wednesday, November 25th, 2026 - 15:00 (UTC)"

# What OpenClaw sends on a heartbeat turn: its heartbeat prompt (led by the marker) and a time line.
HEARTBEAT_TURN = HEARTBEAT_MARKERS[0] + " Recurring tasks are automations. Reply NO_REPLY." + CURRENT_TIME
OLD_HEARTBEAT_TURN = ("Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. "
                      "If nothing needs attention, reply HEARTBEAT_OK." + CURRENT_TIME)


def anthropic(*messages: dict[str, Any], system: Any = SYSTEM) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "system": system, "messages": list(messages), "stream": True}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def tool_use() -> dict[str, Any]:
    return {"role": "assistant", "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "exec", "input": {"command": "ls"}}]}


def tool_result() -> dict[str, Any]:
    return {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"}]}


def test_a_persons_message_is_user() -> None:
    body = anthropic(user("hi"), {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "What is on my calendar? (the heartbeat can wait)"})
    assert classify_trigger("anthropic-messages", body) == "user"


def test_a_tool_result_continues_the_users_turn() -> None:
    body = anthropic(user("list my files"), tool_use(), tool_result())
    assert classify_trigger("anthropic-messages", body) == "tool"


@pytest.mark.parametrize("prompt", [HEARTBEAT_TURN, OLD_HEARTBEAT_TURN,
                                    "[OpenClaw heartbeat poll]",
                                    "Run the following periodic tasks (only those due based on their "
                                    "intervals):\n- inbox: check mail\n\nAfter completing all due tasks, "
                                    "reply HEARTBEAT_OK."])
def test_heartbeat_prompts(prompt: str) -> None:
    body = anthropic(user("earlier question"), {"role": "assistant", "content": "answer"}, user(prompt))
    assert classify_trigger("anthropic-messages", body) == "heartbeat"


def test_heartbeat_after_delivery_hints_prefix() -> None:
    body = anthropic(user("Reply through the message tool when needed.\n\n" + HEARTBEAT_TURN))
    assert classify_trigger("anthropic-messages", body) == "heartbeat"


def test_tool_calls_of_a_heartbeat_turn_stay_heartbeat() -> None:
    body = anthropic(user("hello"), {"role": "assistant", "content": "hi"},
                     user(HEARTBEAT_TURN), tool_use(), tool_result())
    assert classify_trigger("anthropic-messages", body) == "heartbeat"


@pytest.mark.parametrize("text", [
    "Pre-compaction memory flush. Store durable memories only in memory/YYYY-MM-DD.md." + CURRENT_TIME,
    "Write a dream diary entry from these memory fragments:\n\n- fixed the build\n- tea",
    "[OpenClaw cron wake]",
    "A scheduled reminder has been triggered. The reminder content is:\n\nwater the plants",
    "An async command you ran earlier has completed. The command completion details are:\n\nexit 0",
])
def test_background_prompts(text: str) -> None:
    assert classify_trigger("anthropic-messages", anthropic(user(text))) == "background"


@pytest.mark.parametrize("marker", BACKGROUND_SYSTEM_MARKERS)
def test_background_system_prompts_win_even_after_tool_results(marker: str) -> None:
    system = [{"type": "text", "text": SYSTEM}, {"type": "text", "text": marker + " Capture memories."}]
    body = anthropic(user("<conversation>...</conversation>"), tool_use(), tool_result(), system=system)
    assert classify_trigger("anthropic-messages", body) == "background"


def test_compaction_summary_marker_at_the_end_of_a_huge_message() -> None:
    transcript = "[User]: words words\n" * 60_000
    text = "<conversation>\n" + transcript + "</conversation>\n\n" + BACKGROUND_MARKERS[2]
    assert len(text) > 1_000_000
    body = anthropic(user(text), system="")
    started = time.perf_counter()
    assert classify_trigger("anthropic-messages", body) == "background"
    assert time.perf_counter() - started < 0.05


def test_long_conversations_are_cheap() -> None:
    # 20,000 messages of 50 chars each: only the tail is walked.
    history = [user("x" * 50) if i % 2 == 0 else {"role": "assistant", "content": "y" * 50}
               for i in range(20_000)]
    body = anthropic(*history, user("and now?"))
    started = time.perf_counter()
    for _ in range(100):
        assert classify_trigger("anthropic-messages", body) == "user"
    assert (time.perf_counter() - started) / 100 < 0.001


def test_an_image_without_text_is_still_a_person() -> None:
    image = {"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                      "media_type": "image/png",
                                                                      "data": "iVBOR"}}]}
    assert classify_trigger("anthropic-messages", anthropic(image)) == "user"


@pytest.mark.parametrize(("api", "body", "expected"), [
    ("anthropic-messages", {}, "unknown"),
    ("anthropic-messages", {"messages": []}, "unknown"),
    ("anthropic-messages", {"messages": "hello"}, "unknown"),
    ("anthropic-messages", {"messages": [{"role": "assistant", "content": "prefill"}]}, "unknown"),
    ("anthropic-messages", {"messages": [None, 3, "x"]}, "unknown"),
    ("anthropic-messages", {"system": 5, "messages": [{"role": "user", "content": {"x": 1}}]}, "user"),
    ("openai-chat", {"messages": [{"role": "tool"}]}, "tool"),
    ("openai-responses", {"input": 7}, "unknown"),
])
def test_unreadable_bodies_never_raise(api: Any, body: dict[str, Any], expected: str) -> None:
    assert classify_trigger(api, body) == expected


# --- OpenAI Chat Completions and Responses ---------------------------------------------------


def chat(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-5", "messages": [{"role": "system", "content": SYSTEM}, *messages]}


def test_openai_chat() -> None:
    assert classify_trigger("openai-chat", chat({"role": "user", "content": "hi"})) == "user"
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "exec", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    asked = {"role": "user", "content": "run it"}
    assert classify_trigger("openai-chat", chat(asked, call, result)) == "tool"
    heartbeat = {"role": "user", "content": [{"type": "text", "text": HEARTBEAT_TURN}]}
    assert classify_trigger("openai-chat", chat(heartbeat, call, result)) == "heartbeat"
    summary = {"model": "gpt-5", "messages": [
        {"role": "system", "content": BACKGROUND_SYSTEM_MARKERS[2] + " Follow the format."},
        {"role": "user", "content": "<conversation>...</conversation>"}]}
    assert classify_trigger("openai-chat", summary) == "background"


def test_openai_responses() -> None:
    assert classify_trigger("openai-responses", {"model": "gpt-5", "input": "hello"}) == "user"
    assert classify_trigger("openai-responses", {"model": "gpt-5", "input": HEARTBEAT_TURN}) == "heartbeat"
    items: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "input_text", "text": "check the weather"}]},
        {"type": "function_call", "call_id": "c1", "name": "web", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert classify_trigger("openai-responses", {"model": "gpt-5", "input": items}) == "tool"
    body = {"model": "gpt-5", "instructions": BACKGROUND_SYSTEM_MARKERS[1], "input": "fragments"}
    assert classify_trigger("openai-responses", body) == "background"
