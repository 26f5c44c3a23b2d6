"""OpenClaw's sessions and transcripts as the Memory screen shows them: the real state of seven
agent turns (text, tool calls that succeed and fail, an entry stored zstd-compressed, a reset,
a second session, a deleted one archived), read live, from a snapshot's copy, and from files
alone; then hostile transcripts (entries of every wrong shape, keys, escapes, a zstd bomb,
links out of the state directory, a damaged database) that must never crash the view."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from moltconsole_backend.memory import transcripts
from moltconsole_backend.memory.sqlite_view import HIDDEN_SECRET
from moltconsole_backend.memory.transcripts import (
    NoSuchSession,
    SnapshotFiles,
    conversation,
    entry_turns,
    sessions,
    state_path,
)
from moltconsole_shared.wire.memory_db import CONVERSATION, SESSION_LIST, Turn, TurnUsage

FIXTURE = Path(__file__).parent / "fixtures" / "openclaw_state"
ARCHIVE = (
    "d0034583-7b65-4cce-98a5-7a0f1184578d.jsonl.deleted.2026-12-03T13-37-29.739Z."
    "4892adbd77604ab98a1b449ee57525d4.zst"
)
MAIN = "db/main/4b9e8107-a264-4145-a53b-a6fc950c0747"
SHOPPING = "db/main/70ea9f97-689e-4c60-9f79-e952780d7a9a"


def snapshot_of(root: Path, only: Callable[[str], bool] = lambda name: True) -> SnapshotFiles:
    """The files under ``root`` as a snapshot offers them (content on demand)."""
    files = {
        p.relative_to(root).as_posix(): p.read_bytes
        for p in sorted(root.rglob("*"))
        if p.is_file() and only(p.relative_to(root).as_posix())
    }
    return SnapshotFiles(files)


def jsonl(*entries: object) -> bytes:
    return "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries).encode()


def message(role: str, **fields: object) -> dict[str, object]:
    return {
        "type": "message", "id": f"e-{role}", "parentId": None, "timestamp": "2026-12-03T10:00:00.000Z",
        "message": {"role": role, **fields},
    }


# -- the real state -----------------------------------------------------------------------------


def test_the_sessions_of_the_real_state_are_listed_newest_first_with_their_turns_and_cost() -> None:
    listed = sessions(FIXTURE)
    assert listed.problems == []
    assert [s.ref for s in listed.sessions] == [f"archive/main/{ARCHIVE}", SHOPPING, MAIN]
    archived, shopping, main = listed.sessions
    assert (main.key, main.agent, main.title, main.first_line) == ("agent:main:main", "main", "", "Say hello")
    assert (main.turns, main.cost_nanos, main.archived) == (14, 47_790_000, None)
    assert main.model == "molt/claude-sonnet-4-6"
    assert main.started is not None and main.updated is not None and main.started < main.updated
    assert (shopping.key, shopping.title, shopping.first_line) == (
        "agent:main:shopping", "shopping", "Add apples to my shopping list",
    )
    assert (shopping.turns, shopping.cost_nanos) == (2, 4_875_000)
    assert (archived.key, archived.archived, archived.first_line) == (
        "agent:main:scratch", "deleted", "A throwaway question",
    )
    assert (archived.id, archived.turns, archived.cost_nanos) == (
        "d0034583-7b65-4cce-98a5-7a0f1184578d", 2, 3_975_000,
    )


def test_a_session_reads_as_the_conversation_the_agent_had() -> None:
    talk = conversation(FIXTURE, MAIN)
    assert talk.session.ref == MAIN and talk.omitted == 0
    assert [(t.role, t.kind, t.tool_name) for t in talk.turns] == [
        ("system", "model_change", None),
        ("system", "thinking_level_change", None),
        ("user", "message", None),
        ("assistant", "message", None),
        ("user", "message", None),
        ("assistant", "message", None),
        ("assistant", "message", "write"),
        ("tool", "message", "write"),
        ("assistant", "message", None),
        ("user", "message", None),
        ("assistant", "message", None),  # the reply OpenClaw stored zstd-compressed
        ("user", "message", None),
        ("assistant", "message", None),
        ("assistant", "message", "read"),
        ("tool", "message", "read"),
        ("assistant", "message", None),
        ("system", "reset", None),
    ]
    turns = talk.turns
    assert turns[0].text == "model: molt/claude-sonnet-4-6" and turns[1].text == "thinking level: high"
    assert (turns[2].text, turns[3].text) == ("Say hello", "Hello! I am the fake model.")
    assert turns[3].usage == TurnUsage(prompt=1200, cache_read=800, cache_write=300, output=85)
    assert (turns[3].cost_nanos, turns[3].model) == (6_240_000, "molt/claude-sonnet-4-6")
    # A response with a tool call: its text, then the call; its usage is counted once.
    assert turns[5].text == "I will write that down." and turns[5].cost_nanos == 4_875_000
    assert turns[6].usage is None and turns[6].cost_nanos is None and turns[6].text == ""
    assert json.loads(turns[6].tool_input or "") == {
        "path": "memory/colour.md", "content": "The user's favourite colour is teal.\n",
    }
    assert turns[7].text == "Successfully wrote 37 bytes to memory/colour.md" and not turns[7].is_error
    long = turns[10]
    assert long.text.startswith("Point 0: teal is a blue-green colour") and len(long.text) > 3000
    assert long.usage == TurnUsage(prompt=1200, cache_read=2000, cache_write=500, output=900)
    assert turns[14].is_error and "File not found" in turns[14].text
    assert turns[16].text == "reset (new)"
    assert all(t.time is not None for t in turns)
    assert [t.time for t in turns] == sorted(t.time or 0 for t in turns)
    assert sum(t.cost_nanos or 0 for t in turns) == talk.session.cost_nanos


def test_openclaws_bookkeeping_is_shown_raw_only_when_asked() -> None:
    plain = conversation(FIXTURE, MAIN)
    full = conversation(FIXTURE, MAIN, internal=True)
    extra = [t for t in full.turns if t not in plain.turns]
    assert extra and all(t.role == "system" and t.kind == "custom" and t.raw for t in extra)
    assert any('"customType":"model-snapshot"' in t.text for t in extra)


def test_an_archived_session_is_read_with_the_escapes_in_its_text_made_inert() -> None:
    talk = conversation(FIXTURE, f"archive/main/{ARCHIVE}")
    assert talk.session.archived == "deleted"
    reply = talk.turns[-1]
    assert reply.role == "assistant" and reply.text == "Shopping list noted: \u241b[31mred\u241b[0m apples."
    assert "\x1b" not in CONVERSATION.dump_json(talk).decode()


def test_the_newest_turns_are_kept_when_a_conversation_is_long() -> None:
    talk = conversation(FIXTURE, MAIN, max_turns=5)
    assert talk.omitted == 12 and len(talk.turns) == 5 and talk.turns[-1].text == "reset (new)"


def test_a_snapshot_of_the_state_lists_and_reads_the_same() -> None:
    snapshot = snapshot_of(FIXTURE)
    assert sessions(snapshot) == sessions(FIXTURE)
    assert conversation(snapshot, MAIN) == conversation(FIXTURE, MAIN)


def test_a_transcript_file_alone_is_a_session_of_its_own() -> None:
    snapshot = snapshot_of(FIXTURE, lambda name: name.startswith("agents/main/sessions/"))
    (only,) = sessions(snapshot).sessions
    assert only.ref == f"file/main/{ARCHIVE}" and only.archived == "deleted"
    assert (only.id, only.turns, only.cost_nanos) == ("d0034583-7b65-4cce-98a5-7a0f1184578d", 2, 3_975_000)
    from_db = conversation(FIXTURE, f"archive/main/{ARCHIVE}")
    assert conversation(snapshot, only.ref).turns == from_db.turns


def test_the_list_says_of_each_session_what_its_conversation_shows() -> None:
    hostile = hostile_snapshot(jsonl(
        message("user", content="\n\n  first \x1b[1mline\x1b[0m\nsecond"),
        message("assistant", content=[{"type": "toolCall", "name": "a"}, {"type": "toolCall", "name": "b"}],
                usage={"cost": {"total": 0.5}}),
        message("toolResult", toolName="a", content="x"),
        "garbage",
    ))
    for source in (FIXTURE, hostile):
        for info in sessions(source).sessions:
            talk = conversation(source, info.ref)
            assert talk.session == info
            shown = [t for t in talk.turns if t.role in ("user", "assistant", "tool") and not t.raw]
            assert info.turns == len(shown)
            assert info.cost_nanos == (sum(t.cost_nanos or 0 for t in talk.turns) or None)
    (info,) = sessions(hostile).sessions
    assert (info.first_line, info.turns, info.cost_nanos) == ("first \u241b[1mline\u241b[0m", 4, 500_000_000)


def test_the_wire_carries_sessions_and_conversations_unchanged() -> None:
    listed = sessions(FIXTURE)
    assert SESSION_LIST.read(json.loads(SESSION_LIST.dump_json(listed))) == listed
    talk = conversation(FIXTURE, MAIN, internal=True)
    assert CONVERSATION.read(json.loads(CONVERSATION.dump_json(talk))) == talk


def test_a_ref_is_printable_whatever_the_agent_named_things() -> None:
    snapshot = SnapshotFiles({
        "agents/main/sessions/x.jsonl": lambda: jsonl(message("user", content="hi")),
        "agents/ma%2Fin/sessions/evil\x1b[2J..%2F.jsonl": lambda: jsonl(message("user", content="yo")),
    })
    refs = [s.ref for s in sessions(snapshot).sessions]
    assert len(refs) == 2 and all(r.isascii() and r.isprintable() and r.count("/") == 2 for r in refs)
    assert {conversation(snapshot, r).turns[0].text for r in refs} == {"hi", "yo"}


def test_an_unknown_session_is_said() -> None:
    refs = ("db/main/no-such-id", "archive/main/none.jsonl.deleted.x", "file/main/x.jsonl", "nonsense", "")
    for ref in refs:
        with pytest.raises(NoSuchSession, match="refresh the list of sessions"):
            conversation(FIXTURE, ref)


# -- a transcript moved to cold storage ---------------------------------------------------------


def cold_state(tmp_path: Path, storage: str) -> Path:
    """The fixture with the shopping session's events moved into a cold archive, as OpenClaw's
    cold storage does (records of kind "event", zstd), kept in the database or as a file."""
    root = tmp_path / "state"
    shutil.copytree(FIXTURE, root)
    db = root / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    conn = sqlite3.connect(db)
    session_id = SHOPPING.rsplit("/", 1)[1]
    events = conn.execute(
        "SELECT seq, event_json, created_at FROM transcript_events WHERE session_id = ? ORDER BY seq",
        (session_id,),
    ).fetchall()
    records = [{"kind": "header", "version": 1, "sessionId": session_id, "generation": "g1"}]
    records += [{"kind": "event", "row": {"seq": s, "event_json": e, "created_at": c}} for s, e, c in events]
    packed = zstandard.ZstdCompressor().compress(jsonl(*records))
    name = f"{hashlib.sha256(packed).hexdigest()}.jsonl.zst"
    conn.execute("DELETE FROM transcript_events WHERE session_id = ?", (session_id,))
    conn.execute(
        "INSERT INTO session_transcript_cold_archives (session_id, generation, archive_name, archive_sha256, "
        "event_count, raw_bytes, archive_bytes, last_seq, archived_at, storage, archive_blob) "
        "VALUES (?, 'g1', ?, ?, ?, 1, ?, ?, 1, ?, ?)",
        (session_id, name, name[:64], len(events), len(packed), events[-1][0], storage,
         packed if storage == "sqlite" else None),
    )
    conn.commit()
    conn.close()
    if storage == "file":
        cold = root / "agents" / "main" / "sessions" / "cold"
        cold.mkdir()
        (cold / name).write_bytes(packed)
    return root


@pytest.mark.parametrize("storage", ["sqlite", "file"])
def test_a_session_in_cold_storage_is_read_from_its_archive(tmp_path: Path, storage: str) -> None:
    root = cold_state(tmp_path, storage)
    by_ref = {s.ref: s for s in sessions(root).sessions}
    shopping = by_ref[SHOPPING]
    assert (shopping.turns, shopping.cost_nanos, shopping.problem) == (2, 4_875_000, "")
    assert conversation(root, SHOPPING).turns == conversation(FIXTURE, SHOPPING).turns


def test_a_missing_cold_archive_is_said_and_the_session_still_listed(tmp_path: Path) -> None:
    root = cold_state(tmp_path, "file")
    shutil.rmtree(root / "agents" / "main" / "sessions" / "cold")
    by_ref = {s.ref: s for s in sessions(root).sessions}
    assert by_ref[SHOPPING].turns == 0
    assert "cold archive sessions/cold/" in by_ref[SHOPPING].problem and "missing" in by_ref[SHOPPING].problem
    assert conversation(root, SHOPPING).turns == []


# -- hostile transcripts ------------------------------------------------------------------------


def hostile_snapshot(content: bytes, name: str = "s1.jsonl") -> SnapshotFiles:
    return SnapshotFiles({f"agents/main/sessions/{name}": lambda: content})


def test_entries_of_every_wrong_shape_are_shown_raw_or_skipped_never_crashing() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    content = jsonl(
        {"type": "session", "version": 4, "id": "s1", "timestamp": "2026-12-03T09:59:00.000Z"},
        "this is not JSON",
        deep,
        "[1, 2, 3]",
        "null",
        {"type": "future_kind", "id": "f", "payload": {"x": 1}},
        {"type": 17},
        message("wizard", content="?"),
        message("user", content=12),
        message("user", content=[{"type": "image", "mimeType": "image/png"}, 5, {"no": "type"}]),
        {"type": "message", "id": "m", "message": "just a string"},
        message("assistant", content=[{"type": "toolCall", "name": None, "arguments": {"a": [1, {"b": 0}]}}],
                usage={"input": "12", "output": -5, "cacheRead": True, "cacheWrite": 3.5,
                       "cost": {"total": "0.01", "input": float("inf")}}),
        message("assistant", content="plain string reply", usage=[1, 2], stopReason="error",
                errorMessage="overloaded"),
        message("toolResult", toolName=["x"], content=None, isError="yes"),
        message("bashExecution", command="ls", output="a\nb", exitCode=2),
        {"type": "compaction", "id": "c", "summary": "earlier talk", "tokensBefore": 12345},
        {"type": "custom_message", "id": "cm", "content": "hidden from view", "display": False},
        {"type": "model_change", "id": "mc", "timestamp": "not a time", "provider": 5},
        {"type": "message", "timestamp": "2026-12-03T10:00", "message": {"role": "user", "content": "nz"}},
    )
    listed = sessions(hostile_snapshot(content))
    (info,) = listed.sessions
    assert info.id == "s1" and info.problem == "5 entries could not be read"
    turns = conversation(hostile_snapshot(content), info.ref).turns
    kinds = [(t.role, t.kind, t.raw) for t in turns]
    assert kinds[:6] == [("system", "unreadable", True)] * 4 + [
        ("system", "future_kind", True), ("system", "unreadable", True),
    ]
    assert turns[0].text == "this is not JSON" and turns[1].text.startswith("[[[[")
    assert turns[1].text.endswith(f"[cut: {len(deep):,} characters in all]")
    assert [(t.role, t.kind, t.raw) for t in turns[6:8]] == [("system", "message", True)] * 1 + [
        ("user", "message", False),
    ]
    by_text = {t.text: t for t in turns}
    assert by_text["[image: image/png]"].role == "user"
    tool_call = next(t for t in turns if t.tool_name == "?")
    assert json.loads(tool_call.tool_input or "") == {"a": [1, {"b": 0}]}
    assert tool_call.usage == TurnUsage(prompt=0, cache_read=0, cache_write=0, output=0)
    assert tool_call.cost_nanos is None
    failed = by_text["plain string reply\noverloaded"]
    assert failed.is_error and failed.usage is None
    bash = by_text["a\nb"]
    assert (bash.role, bash.tool_name, bash.tool_input, bash.is_error) == ("tool", "bash", "ls", True)
    assert by_text["compacted (12,345 tokens before): earlier talk"].role == "system"
    assert "hidden from view" not in by_text
    assert by_text["model: "].time is None
    assert by_text["nz"].time is None  # a time without its zone is no time
    assert all(isinstance(t, Turn) for t in turns)


def test_keys_and_escapes_in_a_transcript_are_hidden_or_made_inert() -> None:
    key = "sk-ant-api03-" + "Zz09" * 12
    content = jsonl(
        message("user", content=f"my key is {key}\nsecond line\x1b]52;c;ZXZpbA==\x07"),
        message("assistant", content=[{"type": "toolCall", "name": "exec", "arguments": {"env": key}}]),
    )
    snapshot = hostile_snapshot(content)
    (info,) = sessions(snapshot).sessions
    user, call = conversation(snapshot, info.ref).turns
    assert user.text == f"my key is {HIDDEN_SECRET}\nsecond line\u241b]52;c;ZXZpbA==\u2407"
    assert info.first_line == f"my key is {HIDDEN_SECRET}"
    assert key not in (call.tool_input or "") and HIDDEN_SECRET in (call.tool_input or "")


def test_long_text_is_cut_with_its_length_said() -> None:
    content = jsonl(message("user", content="y" * (transcripts.MAX_TEXT + 10)))
    snapshot = hostile_snapshot(content)
    (info,) = sessions(snapshot).sessions
    (turn,) = conversation(snapshot, info.ref).turns
    cut = f"\n[cut: {transcripts.MAX_TEXT + 10:,} characters in all]"
    assert turn.text == "y" * transcripts.MAX_TEXT + cut


def test_a_compressed_bomb_is_refused_not_decompressed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcripts, "MAX_FILE", 1024 * 1024)
    bomb = zstandard.ZstdCompressor().compress(b"\n" * (64 * 1024 * 1024))
    assert len(bomb) < 10_000
    (info,) = sessions(hostile_snapshot(bomb, "s2.jsonl.reset.2026-12-03T10-00-00.000Z.zst")).sessions
    assert info.archived == "reset" and info.turns == 0
    assert "larger than 1,048,576 bytes decompressed" in info.problem
    (garbage,) = sessions(hostile_snapshot(b"not zstd", "s3.jsonl.deleted.x.zst")).sessions
    assert "not valid zstd data" in garbage.problem


def test_a_damaged_agent_database_is_said_and_the_other_sessions_listed(tmp_path: Path) -> None:
    root = tmp_path / "state"
    shutil.copytree(FIXTURE, root)
    db = root / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    db.write_bytes(db.read_bytes()[:8192])
    listed = sessions(root)
    assert [s.ref for s in listed.sessions] == [f"file/main/{ARCHIVE}"]  # the archive's file is still read
    (problem,) = listed.problems
    assert problem.startswith("the sessions of agent main could not be read: ")
    assert "damaged or cut short" in problem


def test_a_snapshot_blob_that_cannot_be_read_is_said_not_raised() -> None:
    def damaged() -> bytes:
        raise RuntimeError("blob 3f2a is damaged")

    files = dict(snapshot_of(FIXTURE).files)
    files["agents/main/agent/openclaw-agent.sqlite"] = damaged
    files[f"agents/main/sessions/{ARCHIVE}"] = damaged
    listed = sessions(SnapshotFiles(files))
    assert listed.problems == [
        "the sessions of agent main could not be read: agents/main/agent/openclaw-agent.sqlite could not "
        "be read from the snapshot: blob 3f2a is damaged"
    ]
    (archive,) = listed.sessions
    assert "blob 3f2a is damaged" in archive.problem
    with pytest.raises(transcripts.TranscriptError, match="blob 3f2a is damaged; refresh"):
        conversation(SnapshotFiles(files), MAIN)


def test_links_out_of_the_state_directory_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sessions").mkdir(parents=True)
    (outside / "sessions" / "secret.jsonl").write_bytes(jsonl(message("user", content="host secret")))
    root = tmp_path / "state"
    (root / "agents" / "main" / "sessions").mkdir(parents=True)
    (root / "agents" / "main" / "sessions" / "evil.jsonl").symlink_to(outside / "sessions" / "secret.jsonl")
    (root / "agents" / "other").symlink_to(outside, target_is_directory=True)
    (root / "agents" / "main" / "agent").symlink_to(FIXTURE / "agents" / "main" / "agent")
    assert sessions(root).sessions == []
    with pytest.raises(NoSuchSession):
        conversation(root, "file/other/secret.jsonl")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a//b", "", "a/./b", "x\x00y"])
def test_paths_that_leave_the_state_directory_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="is not a path inside the state directory"):
        state_path(tmp_path, name)


def test_a_path_through_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "agents").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ValueError, match="a link or a file on the way"):
        state_path(tmp_path, "agents/main/agent/openclaw-agent.sqlite")
    assert state_path(tmp_path, "elsewhere/x.sqlite") == tmp_path / "elsewhere" / "x.sqlite"


def test_an_entry_reads_the_same_whatever_the_source() -> None:
    entry = message(
        "assistant", content=[{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "hi"}],
        provider="molt", model="m", usage={"input": 1, "output": 2, "cost": {"input": 0.5, "output": 0.25}},
    )
    (turn,) = entry_turns(entry, json.dumps(entry))
    assert (turn.text, turn.thinking, turn.model, turn.cost_nanos) == ("hi", "hmm", "molt/m", 750_000_000)
    assert turn.usage == TurnUsage(prompt=1, output=2)
    assert entry_turns({"type": "session", "id": "x"}, "{}") == []
