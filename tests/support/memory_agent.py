"""Helpers for the memory tests with the real agent: a provider that makes OpenClaw write a
memory file with its own tool, a SeaweedFS that can be stopped and started again on the same
ports and data, and readers of the bucket that go around the backend.

The provider answers Anthropic's Messages API as ``FakeProvider`` does, except for a prompt
that carries a marker the test scripted with ``remember``: that one gets a real ``tool_use``
(streamed as ``input_json_delta`` events, stop reason ``tool_use``) calling the file-writing
tool that OpenClaw offered in that very request, found by its input schema, not by a guessed
name. OpenClaw runs the tool in the sandbox and sends the ``tool_result`` back; the provider
then ends the turn with a text answer.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]

from moltconsole_backend.memory.repo import FileEntry, Repository, Snapshot
from moltconsole_backend.memory.s3 import S3Location, s3_store_from
from moltconsole_backend.settings import MemorySettings, load_settings
from tests.support.fake_llm import FakeProvider, Reply, Seen
from tests.support.s3_server import START_TIMEOUT, S3Server

ACCESS_KEY_ENV = "MOLT_TEST_MEMORY_KEY_ID"
SECRET_KEY_ENV = "MOLT_TEST_MEMORY_SECRET"  # a variable's name, not a secret
POLL = 0.1  # while a restarted S3 server comes up; there is no event to await for it


# --- the file-writing tool, as OpenClaw describes it -------------------------------------------
@dataclass(frozen=True)
class WriteTool:
    """The tool OpenClaw offers for writing a file: its name and the names of its inputs."""

    name: str
    path_key: str
    content_key: str
    description: str


def find_write_tool(tools: list[dict[str, Any]]) -> WriteTool:
    """The file-writing tool among ``tools`` (a request's ``tools``): the one whose description
    says it writes, that requires exactly two strings, a path and a content."""
    found: list[WriteTool] = []
    for tool in tools:
        schema = tool.get("input_schema") or {}
        props: dict[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        if len(required) != 2 or any((props.get(name) or {}).get("type") != "string" for name in required):
            continue
        path = [n for n in required if "path" in f"{n} {props[n].get('description', '')}".lower()]
        content = [n for n in required if "content" in f"{n} {props[n].get('description', '')}".lower()]
        description = str(tool.get("description", ""))
        if len(path) == 1 and len(content) == 1 and path != content and "write" in description.lower():
            found.append(WriteTool(str(tool["name"]), path[0], content[0], description))
    if len(found) != 1:
        names = [t.get("name") for t in tools]
        raise AssertionError(f"expected one file-writing tool in the request, found {found}; tools: {names}")
    return found[0]


# --- the provider ---------------------------------------------------------------------------
@dataclass
class Remember:
    """A scripted memory: the prompt carrying ``marker`` gets a call of the write tool that
    writes ``content`` to ``path`` (relative to the agent's working directory)."""

    marker: str
    path: str
    content: str
    tool_use_id: str = field(default_factory=lambda: "toolu_" + secrets.token_hex(12))
    tool: WriteTool | None = None  # the tool called, once called
    called_at: float | None = None
    result: Any = None  # the tool_result's content OpenClaw sent back
    result_is_error: bool | None = None


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _since_last_answer(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks after the last assistant message: what this request asks about
    (earlier turns, restored from memory, must not trigger their scripts again)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    return [block for m in messages[last + 1 :] for block in _blocks(m)]


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event as Anthropic's stream writes it."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def tool_use_events(model: str, tool_use_id: str, tool: str, arguments: dict[str, Any]) -> list[bytes]:
    """A whole streamed assistant message that calls ``tool`` (Anthropic's wire format: the
    input arrives as JSON pieces in ``input_json_delta`` events)."""
    usage = {"input_tokens": 1500, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_" + secrets.token_hex(8), "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
    }
    raw = json.dumps(arguments)
    cut = max(1, len(raw) // 3)
    pieces = [raw[i : i + cut] for i in range(0, len(raw), cut)]
    block = {"type": "tool_use", "id": tool_use_id, "name": tool, "input": {}}
    return [
        sse_event("message_start", {"type": "message_start", "message": message}),
        sse_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        *(
            sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "input_json_delta", "partial_json": piece}})
            for piece in pieces
        ),
        sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse_event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                    "usage": {"output_tokens": 60}}),
        sse_event("message_stop", {"type": "message_stop"}),
    ]


class MemoryAgentProvider(FakeProvider):
    """``FakeProvider`` that also makes the agent write files (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: list[Remember] = []
        self.tools: list[dict[str, Any]] = []  # as offered in the last request that had tools

    def remember(self, marker: str, path: str, content: str) -> Remember:
        plan = Remember(marker, path, content)
        self.plans.append(plan)
        return plan

    async def _answer(self, send: Any, api: str, reply: Reply, body: dict[str, Any], seen: Seen) -> None:
        if api != "anthropic" or not body.get("stream"):
            await super()._answer(send, api, reply, body, seen)
            return
        if body.get("tools"):
            self.tools = list(body["tools"])
        blocks = _since_last_answer(body)
        for plan in self.plans:
            results = [b for b in blocks if b.get("type") == "tool_result"
                       and _id_chars(str(b.get("tool_use_id"))) == _id_chars(plan.tool_use_id)]
            if results:
                plan.result = results[0].get("content")
                plan.result_is_error = bool(results[0].get("is_error"))
                await super()._answer(send, api, Reply(text=f"Noted in {plan.path}."), body, seen)
                return
        text = " ".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        for plan in self.plans:
            if plan.called_at is None and plan.marker in text:
                plan.tool = find_write_tool(self.tools)
                plan.called_at = time.time()
                arguments = {plan.tool.path_key: plan.path, plan.tool.content_key: plan.content}
                await _stream(send, tool_use_events(str(body.get("model")), plan.tool_use_id, plan.tool.name,
                                                    arguments))
                return
        await super()._answer(send, api, reply, body, seen)


def _id_chars(tool_use_id: str) -> str:
    # OpenClaw keeps only the letters and digits of a tool call's id ("toolu_ab" comes back as
    # "tooluab" in the tool_result).
    return "".join(c for c in tool_use_id if c.isalnum())


async def _stream(send: Any, events: list[bytes]) -> None:
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- the bucket -----------------------------------------------------------------------------
def memory_settings(server: S3Server, prefix: str, **extra: str) -> MemorySettings:
    """Memory on, kept in ``server``'s bucket under ``prefix``, read from the environment
    variables a user sets (``MOLTCONSOLE_MEMORY__*``); the key pair is named, not given."""
    env = {
        "XDG_CONFIG_HOME": "/nonexistent",
        "MOLTCONSOLE_MEMORY__ENABLED": "true",
        "MOLTCONSOLE_MEMORY__REPOSITORY": f"s3://{server.bucket}/{prefix}",
        "MOLTCONSOLE_MEMORY__ENDPOINT_URL": server.endpoint_url,
        "MOLTCONSOLE_MEMORY__PATH_STYLE": "true",
        "MOLTCONSOLE_MEMORY__REGION": server.region,
        "MOLTCONSOLE_MEMORY__ACCESS_KEY_ENV": ACCESS_KEY_ENV,
        "MOLTCONSOLE_MEMORY__SECRET_KEY_ENV": SECRET_KEY_ENV,
        **{f"MOLTCONSOLE_MEMORY__{name.upper()}": value for name, value in extra.items()},
    }
    return load_settings(None, env=env).memory


def bucket_keys(server: S3Server) -> dict[str, str]:
    """The key pair under the names ``memory_settings`` gives, for the backend's keys file."""
    return {ACCESS_KEY_ENV: server.access_key, SECRET_KEY_ENV: server.secret_key}


def bucket_repository(server: S3Server, prefix: str) -> Repository:
    """The repository in the bucket, read straight from it (not through any backend)."""
    location = S3Location(bucket=server.bucket, prefix=prefix, endpoint_url=server.endpoint_url,
                          region=server.region, path_style=True, access_key_env=ACCESS_KEY_ENV,
                          secret_key_env=SECRET_KEY_ENV)
    return Repository(s3_store_from(location, bucket_keys(server))).open(create=False)


def entry(snapshot: Snapshot, path: str) -> FileEntry | None:
    """``path``'s entry in ``snapshot``, or None."""
    return next((e for e in snapshot.files if e.path == path), None)


def snapshots_holding(repo: Repository, sandbox: str, path: str, content: bytes) -> list[Snapshot]:
    """The snapshots of ``sandbox`` in ``repo`` whose ``path`` has exactly ``content``, oldest first."""
    held = []
    for snap in repo.snapshots(sandbox):
        found = entry(snap, path)
        if found is not None and found.size == len(content) and repo.read_file(found) == content:
            held.append(snap)
    return held


# --- the S3 server going away and coming back ------------------------------------------------
def restart_s3(server: S3Server, timeout: float = START_TIMEOUT) -> float:
    """Start ``server`` again (stopped with ``server.stop()``) with the same command, so the same
    ports, data and key pair; return once a signed request lists its bucket (seconds taken)."""
    assert server.process.poll() is not None, "the S3 server is still running"
    started = time.monotonic()
    with open(server.directory / "weed.log", "ab") as log:
        server.process = subprocess.Popen(
            server.process.args, cwd=server.directory, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = server.client(timeout=2.0)
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            client.list_objects_v2(Bucket=server.bucket, MaxKeys=1)
            return time.monotonic() - started
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(POLL)
    raise RuntimeError(f"the restarted S3 server did not answer within {timeout:.0f} s ({last})")


# --- reading the bucket ---------------------------------------------------------------------
class BucketReader:
    """One sandbox's snapshots as the bucket holds them, each manifest read once (a manifest
    never changes) and each blob checked once."""

    def __init__(self, server: S3Server, prefix: str, sandbox: str) -> None:
        self.server = server
        self.prefix = prefix
        self.sandbox = sandbox
        self._repo: Repository | None = None
        self._manifests: dict[str, Snapshot] = {}

    @property
    def repo(self) -> Repository:
        """The repository in the bucket (opened once the backend has put its config there)."""
        if self._repo is None:
            self._repo = bucket_repository(self.server, self.prefix)
        return self._repo

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot of the sandbox in the bucket now, oldest first."""
        if self._repo is None and not self.server.client().list_objects_v2(
            Bucket=self.server.bucket, Prefix=f"{self.prefix}/config.json"
        ).get("KeyCount"):
            return []  # nothing pushed yet
        ids = {i for _, i in self.repo.snapshot_ids(self.sandbox)}
        for snapshot_id in ids - set(self._manifests):
            self._manifests[snapshot_id] = self.repo.read_snapshot(self.sandbox, snapshot_id)
        return sorted((self._manifests[i] for i in ids), key=lambda snap: (snap.time, snap.id))

    def holding(self, path: str, content: bytes) -> list[Snapshot]:
        """The snapshots whose ``path`` is ``content``, oldest first (the blob read back whole
        from the bucket and compared, not just its name)."""
        name = self.repo.blob_name(content)
        held = [s for s in self.snapshots() if (e := entry(s, path)) is not None and e.blob == name]
        if held:
            found = entry(held[0], path)
            assert found is not None and self.repo.read_file(found) == content, \
                f"the bucket's blob for {path} differs"
        return held

    def latest(self) -> Snapshot:
        found = self.snapshots()
        assert found, f"the bucket has no snapshot of {self.sandbox}"
        return found[-1]


def sqlite_tables_with(image: bytes, needle: str) -> list[str]:
    """The tables of the SQLite database ``image`` (a snapshot's blob) that hold ``needle`` in
    any text or blob column."""
    import sqlite3
    import tempfile
    from pathlib import Path

    raw = needle.encode()
    with tempfile.TemporaryDirectory(prefix="mc-db-") as tmp:
        path = Path(tmp) / "copy.sqlite"
        path.write_bytes(image)
        db = sqlite3.connect(path)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            found = []
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                for row in db.execute(f"SELECT * FROM {quoted}"):
                    if any(needle in v if isinstance(v, str) else isinstance(v, bytes) and raw in v
                           for v in row):
                        found.append(table)
                        break
            return found
        finally:
            db.close()
