"""The ``moltconsole`` command line, against fake backends: no Docker needed.

The lifecycle commands are driven with a scripted client, whose ordering is set with events
(never sleeps), and once end to end with a fake backend that speaks the real API on a unix
socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self, cast

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from moltconsole import cli
from moltconsole.cli import devices, follow, lifecycle, logs, processes
from moltconsole.cli.parser import build_parser
from moltconsole.cli.session import on_backend
from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole.settings import PathSettings, Settings
from moltconsole_shared.commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_BACKEND,
    EXIT_OK,
    EXIT_USAGE,
)
from tests.unit.test_client import serve_asgi, wait_readable

GUARD = 10.0  # a hang fails the test after this long instead of blocking the run


def status(state: str, desired: str = "stopped", reason: str = "") -> dict[str, Any]:
    """A status snapshot as the API serves it (the fields the CLI reads)."""
    return {"state": state, "desired": desired, "reason": reason, "restarts": 0}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a path short enough for a unix socket."""
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def settings_in(root: Path) -> Settings:
    """The console's settings, with every path under ``root``."""
    return Settings(
        paths=PathSettings(data_dir=root / "data", cache_dir=root / "cache", runtime_dir=root / "run"),
    )


@pytest.fixture
def config_file(short_dir: Path) -> Path:
    """A config file for ``cli.main`` that keeps every path under a temporary directory."""
    path = short_dir / "config.toml"
    path.write_text(
        '[sandbox]\nname = "clitest"\ngateway_port = 18799\n'
        f'[paths]\ndata_dir = "{short_dir}/data"\ncache_dir = "{short_dir}/cache"\n'
        f'runtime_dir = "{short_dir}/run"\n'
    )
    return path


# --- dispatch: each verb's subparser names the function that runs it -----------------------
@pytest.mark.parametrize(("argv", "runs"), [
    ([], "console.console_command"),
    (["serve"], "handover.hand_over"), (["keys", "ls"], "handover.hand_over"),
    (["status"], "status.status_command"),
    (["start"], "lifecycle.start_command"), (["restart"], "lifecycle.start_command"),
    (["stop"], "lifecycle.stop_command"), (["destroy"], "lifecycle.destroy_command"),
    (["rebuild", "--version", "2026.9.6"], "lifecycle.rebuild_command"),
    (["exec", "--", "ls"], "processes.exec_command"), (["ps"], "processes.ps_command"),
    (["devices"], "devices.devices_command"), (["logs", "-f"], "logs.logs_command"),
    (["costs"], "costs.costs_command"), (["rotate-token"], "tokens.rotate_token_command"),
    (["ls"], "sandboxes.ls_command"), (["create", "work"], "sandboxes.create_command"),
    (["remove", "work"], "sandboxes.remove_command"),
])
def test_every_verb_runs_its_own_function(argv: list[str], runs: str) -> None:
    func = build_parser().parse_args(argv).func
    assert f"{func.__module__.removeprefix('moltconsole.cli.')}.{func.__name__}" == runs


# --- start, restart, rebuild with a scripted client ----------------------------------------
class ContextClient:
    """A stand-in for :class:`BackendClient` that can be used as ``async with client``."""

    sandbox: str | None = None  # the sandbox it addresses, as BackendClient has it

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class ScriptedClient(ContextClient):
    """Plays a backend: the events of an action, then its answer, in a fixed order.

    ``before`` are the events sent before the answer; the answer is given only once the CLI
    has read all of them (the real backend publishes, then answers). ``after`` are sent once the
    answer has been given. Then the stream stays open and silent, or ends with ``stream_ends``.
    """

    def __init__(
        self, *, first: dict[str, Any], before: list[dict[str, Any]], answer: dict[str, Any] | None,
        error: BackendError | None = None, after: list[dict[str, Any]] | None = None,
        current: dict[str, Any] | None = None, stream_ends: bool = False, answers: bool = True,
    ) -> None:
        self.first, self.before, self.after = first, before, after or []
        self.answer, self.error, self.answers = answer, error, answers
        self.current = current or answer or first
        self.stream_ends = stream_ends
        self.before_read = asyncio.Event()
        self.answered = asyncio.Event()
        self.actions: list[tuple[str, dict[str, Any]]] = []

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "status", "status": self.first}
        for item in self.before:
            yield {"type": "status", "status": item}
        self.before_read.set()
        if self.after:
            await self.answered.wait()
            for item in self.after:
                self.current = item
                yield {"type": "status", "status": item}
        if self.stream_ends:
            return
        await asyncio.Event().wait()  # the backend is idle: nothing more comes

    async def action(self, name: str, *, wait: bool = True, **body: Any) -> dict[str, Any]:
        self.actions.append((name, body))
        await self.before_read.wait()
        if not self.answers:
            await asyncio.Event().wait()
        self.answered.set()
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer

    async def status(self) -> dict[str, Any]:
        return self.current


async def start_like(client: ScriptedClient, action: str) -> int:
    return await asyncio.wait_for(follow.start_like(cast(BackendClient, client), action, wait=True),
                                  GUARD)


async def test_rebuild_of_a_stopped_sandbox_succeeds_without_starting_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ScriptedClient(
        first=status("stopped"), before=[status("building"), status("stopped"), status("absent")],
        answer=status("absent"),
    )
    assert await start_like(client, "rebuild") == EXIT_OK
    out = capsys.readouterr().out
    assert "  building\n  stopped\n  absent\n" in out
    assert "image rebuilt; the sandbox was not running" in out


async def test_start_refused_by_the_backend_exits_1_with_status_and_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ScriptedClient(
        first=status("stopped"), before=[status("failed", "running", "port 18789 is in use")],
        answer=None, error=BackendError("port 18789 is in use", "operation", 409),
        current=status("failed", "running", "port 18789 is in use"),
    )
    assert await start_like(client, "start") == EXIT_FAILED
    captured = capsys.readouterr()
    assert "state      failed" in captured.out and "reason     port 18789 is in use" in captured.out
    assert "start failed: port 18789 is in use" in captured.err


async def test_start_ready_before_the_answer_arrived_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    # The answer says "starting" (a start returns once the container runs), but the gateway was
    # ready before the answer was read, and no event follows.
    client = ScriptedClient(
        first=status("stopped"), before=[status("starting", "running"), status("ready", "running")],
        answer=status("starting", "running"), current=status("ready", "running"),
    )
    assert await start_like(client, "start") == EXIT_OK
    assert "ready in" in capsys.readouterr().out


async def test_start_follows_events_after_the_answer_until_ready(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ScriptedClient(
        first=status("stopped"), before=[status("starting", "running")],
        answer=status("starting", "running"), after=[status("ready", "running")],
    )
    assert await start_like(client, "start") == EXIT_OK
    out = capsys.readouterr().out
    assert "  starting\n  ready\n" in out and "ready in" in out


async def test_start_ending_in_crash_loop_exits_1_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ScriptedClient(
        first=status("stopped"), before=[status("starting", "running")],
        answer=status("starting", "running"),
        after=[status("crashed", "running"), status("crash-loop", "running", "exited 5 times")],
    )
    assert await start_like(client, "restart") == EXIT_FAILED
    captured = capsys.readouterr()
    assert "reason     exited 5 times" in captured.out
    assert "the sandbox is crash-loop, not ready: exited 5 times" in captured.err


async def test_backend_dying_mid_start_is_unreachable() -> None:
    client = ScriptedClient(
        first=status("stopped"), before=[status("building", "running")], answer=None,
        error=BackendUnreachable("the moltconsole backend went away during POST /v1/sandbox/start"),
        stream_ends=True,
    )
    with pytest.raises(BackendUnreachable, match="went away"):
        await start_like(client, "start")


async def test_event_stream_ending_without_an_answer_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow, "STREAM_END_GRACE", 0.01)
    client = ScriptedClient(
        first=status("stopped"), before=[status("building", "running")], answer=None,
        stream_ends=True, answers=False,
    )
    with pytest.raises(BackendUnreachable, match="closed its event stream during 'start'"):
        await start_like(client, "start")


def test_backend_dying_mid_start_exits_3(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    async def fake_ensure_backend(settings: Settings) -> ScriptedClient:
        return ScriptedClient(
            first=status("stopped"), before=[], answer=None, stream_ends=True,
            error=BackendUnreachable("the moltconsole backend went away during start"),
        )

    monkeypatch.setattr("moltconsole.launcher.ensure_backend", fake_ensure_backend)
    assert cli.main(["--config", str(config_file), "start"]) == EXIT_NO_BACKEND
    assert "went away during start" in capsys.readouterr().err


# --- rebuild end to end, against a fake backend on a unix socket ---------------------------
class FakeBackend:
    """A backend speaking the real API (HTTP + WebSocket on a unix socket) with scripted actions."""

    def __init__(self, current: dict[str, Any]) -> None:
        self.current = current
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.scripts: dict[str, Callable[[], Awaitable[None]]] = {}

    def publish(self, new: dict[str, Any]) -> None:
        self.current = new
        for queue in self.subscribers:
            queue.put_nowait({"type": "status", "status": new})

    def app(self) -> Starlette:
        async def health(_: Request) -> Response:
            return JSONResponse({"backend": "moltconsole"})

        async def current(_: Request) -> Response:
            return JSONResponse(self.current)

        async def action(request: Request) -> Response:
            await self.scripts[request.path_params["name"]]()
            return JSONResponse(self.current)

        async def events(ws: WebSocket) -> None:
            await ws.accept()
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self.subscribers.add(queue)
            try:
                await ws.send_json({"type": "status", "status": self.current})
                gone = asyncio.ensure_future(ws.receive())  # the client's close
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                    if gone.done():
                        getter.cancel()
                        return
                    await ws.send_json(getter.result())
            except (WebSocketDisconnect, RuntimeError):
                return
            finally:
                self.subscribers.discard(queue)

        return Starlette(routes=[
            Route("/v1/health", health), Route("/v1/status", current),
            Route("/v1/sandbox/{name}", action, methods=["POST"]),
            WebSocketRoute("/v1/events", events),
        ])


async def test_rebuild_of_a_stopped_sandbox_end_to_end(
    short_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    backend = FakeBackend(status("stopped"))

    async def rebuild() -> None:
        # Published right before the answer, as the real backend does; nothing follows.
        for state in ("building", "stopped", "absent"):
            backend.publish(status(state))

    backend.scripts["rebuild"] = rebuild
    settings = settings_in(short_dir)
    settings.paths.runtime_dir.mkdir()
    args = build_parser().parse_args(["rebuild"])
    async with serve_asgi(backend.app(), settings.socket_path):
        code = await asyncio.wait_for(
            on_backend(settings, lambda client: lifecycle.rebuild(client, args)), GUARD
        )
    assert code == EXIT_OK
    assert "image rebuilt; the sandbox was not running" in capsys.readouterr().out


# --- exec ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "command"), [
    (["exec", "--", "git", "log", "--", "f"], ["git", "log", "--", "f"]),
    (["exec", "--", "a", "--", "b"], ["a", "--", "b"]),
    (["exec", "a", "--", "b"], ["a", "--", "b"]),
    (["exec", "--", "--"], ["--"]),
    (["exec", "ls", "-la"], ["ls", "-la"]),
])
def test_exec_drops_only_the_leading_double_dash(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, argv: list[str], command: list[str],
) -> None:
    seen: list[list[str]] = []

    async def fake_run_in_sandbox(client: BackendClient, argv: list[str]) -> int:
        seen.append(argv)
        return 7  # the command's exit code becomes ours

    async def fake_ensure_backend(settings: Settings) -> ContextClient:
        return ContextClient()

    monkeypatch.setattr(processes, "run_in_sandbox", fake_run_in_sandbox)
    monkeypatch.setattr("moltconsole.launcher.ensure_backend", fake_ensure_backend)
    assert cli.main(["--config", str(config_file), *argv]) == 7
    assert seen == [command]


def test_exec_without_a_command_is_a_usage_error(config_file: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--config", str(config_file), "exec", "--"])
    assert exited.value.code == EXIT_USAGE


# --- destroy -------------------------------------------------------------------------------
class DestroyClient(ContextClient):
    """Records the actions asked of it."""

    def __init__(self) -> None:
        self.actions: list[str] = []

    async def status(self) -> dict[str, Any]:
        return status("ready", "running")

    async def action(self, name: str, *, wait: bool = True, **body: Any) -> dict[str, Any]:
        self.actions.append(name)
        return {**status("absent"), "state_dir": "/srv/state"}


class _Tty:
    def isatty(self) -> bool:
        return True


@pytest.fixture
def destroy_client(monkeypatch: pytest.MonkeyPatch) -> DestroyClient:
    client = DestroyClient()

    async def fake_ensure_backend(settings: Settings) -> DestroyClient:
        return client

    monkeypatch.setattr("moltconsole.launcher.ensure_backend", fake_ensure_backend)
    return client


def test_destroy_prompt_runs_outside_the_event_loop_and_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, destroy_client: DestroyClient,
) -> None:
    asked: list[bool] = []

    def interrupted_input(prompt: str = "") -> str:
        # On the main thread and with no loop running, SIGINT interrupts input() at once;
        # in a worker thread (asyncio.to_thread) it cannot, and asyncio.run waits for it.
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
        asked.append(threading.current_thread() is threading.main_thread())
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", interrupted_input)
    assert cli.main(["--config", str(config_file), "destroy"]) == EXIT_INTERRUPTED
    assert asked == [True]
    assert destroy_client.actions == []


def test_destroy_confirmed_removes_and_names_the_kept_state(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, destroy_client: DestroyClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    assert cli.main(["--config", str(config_file), "destroy"]) == EXIT_OK
    assert destroy_client.actions == ["destroy"]
    assert "kept: /srv/state" in capsys.readouterr().out


def test_destroy_not_interactive_needs_yes(
    config_file: Path, destroy_client: DestroyClient, capsys: pytest.CaptureFixture[str],
) -> None:
    # pytest's stdin is not a terminal.
    assert cli.main(["--config", str(config_file), "destroy"]) == EXIT_USAGE
    assert "moltconsole destroy --yes" in capsys.readouterr().err
    assert destroy_client.actions == []


def test_destroy_prompt_names_the_state_directory_the_backend_reports(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path,
) -> None:
    # The sandbox's directories are the backend's settings: the console asks, it does not read them.
    from tests.unit.test_cost_routes import serve_in_thread

    backend = FakeBackend({**status("ready", "running"), "state_dir": "/srv/moltconsole/state"})
    settings = settings_in(short_dir)
    settings.paths.runtime_dir.mkdir()
    asked: list[str] = []

    def answer_no(prompt: str = "") -> str:
        asked.append(prompt)
        return "n"

    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", answer_no)
    with serve_in_thread(backend.app(), settings.socket_path):
        assert lifecycle.confirm_destroy(settings) == EXIT_OK
    assert lifecycle.confirm_destroy(settings) == EXIT_OK  # no backend answers now
    assert asked == [
        "Remove the sandbox container? The state directory /srv/moltconsole/state and the logs are "
        "kept. [y/N] ",
        "Remove the sandbox container? Its state directory and its logs are kept. [y/N] ",
    ]


async def test_destroy_prompt_in_a_terminal_exits_at_once_on_sigint(
    short_dir: Path, config_file: Path,
) -> None:
    """The real thing: a terminal, the prompt, SIGINT; the backend is up, as in real use."""
    backend = FakeBackend(status("ready", "running"))
    settings = settings_in(short_dir)
    settings.paths.runtime_dir.mkdir()
    async with serve_asgi(backend.app(), settings.socket_path):
        async with in_terminal("--config", str(config_file), "destroy") as (process, master):
            await asyncio.wait_for(_read_until(master, b"[y/N] "), GUARD)
            await asyncio.wait_for(_asleep(process.pid), GUARD)
            # What it writes after the signal is read, so a full terminal never holds its exit up.
            draining = asyncio.ensure_future(_read_until(master, b"\x00never\x00"))
            process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), GUARD)
            draining.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await draining
    assert code == EXIT_INTERRUPTED


@contextlib.asynccontextmanager
async def in_terminal(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """``python -m moltconsole ARGS`` on a pty, without this environment's MOLTCONSOLE_*
    variables: the process and the pty's master end. A process still running at the end is
    killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTCONSOLE_")}
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltconsole", *args, stdin=slave, stdout=slave, stderr=slave, env=env,
        start_new_session=True,  # no controlling terminal but the pty: getpass uses it
    )
    os.close(slave)
    try:
        yield process, master
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)


async def _asleep(pid: int) -> None:
    """Return once the process sleeps: after its prompt, only the terminal read puts it to sleep.

    A SIGINT that lands between the prompt's write and the read is handled before the read
    starts, and the read then waits for a line (half the runs on a loaded machine). A person's
    Ctrl-C never comes within that moment; a test's does, unless it waits. No event says
    "blocked in read", so the state is polled.
    """
    while True:
        if _state(pid) == "S":
            return
        await asyncio.sleep(0.005)


def _state(pid: int) -> str:
    """The process's state letter (R running, S asleep, ...) from /proc."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def _read_until(fd: int, marker: bytes) -> bytes:
    """Read the terminal's output until ``marker`` shows up."""
    seen = b""
    while marker not in seen:
        await wait_readable(fd)
        try:
            seen += os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            raise AssertionError(f"the prompt never came; output: {seen!r}") from None
    return seen


# --- devices -------------------------------------------------------------------------------
HOSTILE = "\x1b]52;c;ZXZpbA==\x07\x1b[2J"


def test_device_list_makes_every_device_field_inert() -> None:
    text = devices.format_devices({
        "pending": [{"requestId": "r1" + HOSTILE, "displayName": "phone" + HOSTILE,
                     "role": "operator" + HOSTILE, "remoteIp": "10.0.0.2" + HOSTILE}],
        "paired": [{"deviceId": "d1" + HOSTILE, "displayName": "laptop" + HOSTILE}],
    })
    assert "\x1b" not in text and "\x07" not in text
    assert "role=operator\u241b]52" in text


@pytest.mark.parametrize(("decision", "said"), [("approve", "approved"), ("reject", "rejected")])
async def test_device_decision_is_reported_in_plain_words(
    capsys: pytest.CaptureFixture[str], decision: str, said: str,
) -> None:
    class DeviceClient:
        async def decide_device(self, request_id: str, decision: str) -> dict[str, Any]:
            return {"request_id": request_id, "decision": decision}

    args = build_parser().parse_args(["devices", decision, "req-1"])
    assert await devices.devices(cast(BackendClient, DeviceClient()), args) == EXIT_OK
    assert capsys.readouterr().out == f"{said} req-1\n"


def test_log_losses_say_why() -> None:
    assert logs.losses({"dropped": 0}) == []
    assert logs.losses({"dropped": 5}) == ["5 lines were dropped (this reader fell behind)"]
    assert logs.losses({"dropped": 5, "disk_full": 3}) == [
        "3 lines were not kept: the disk is full (free some space, or lower logs.history_mb)",
        "2 lines were dropped (this reader fell behind)",
    ]


def test_status_lines_carry_the_memory_warning() -> None:
    from moltconsole.cli.status import format_status

    text = format_status({
        "state": "ready", "desired": "running", "restarts": 0,
        "memory_warning": "memory at 92% of 3.0 GiB: raise sandbox.memory_limit\x1b[31m",
    })
    assert text.splitlines()[-1] == "  ~ memory at 92% of 3.0 GiB: raise sandbox.memory_limit␛[31m"


def test_status_says_the_last_snapshot_and_an_unreachable_bucket() -> None:
    import time as clock

    from moltconsole.cli.status import memory_lines

    now = clock.time()
    lines = memory_lines({"memory": {
        "enabled": True, "repository": "/data/memory",
        "last_snapshot": {"id": "20261203T100000000Z-abcdef", "time": now - 125, "reason": "change",
                          "files": 12, "size": 3 * 2**20},
        "bucket": {"where": "r2://agent-memory", "reachable": False, "unreachable_since": now - 60,
                   "last_error": "connection refused"},
    }})
    assert lines[0].startswith("memory     last snapshot 2m0")
    assert lines[0].endswith(" ago (12 files, 3.0 MiB)")
    assert lines[1].startswith("bucket     r2://agent-memory: UNREACHABLE since ")
    assert memory_lines({"memory": {"enabled": False, "problem": "memory is off: a wrong passphrase"}}) == [
        "memory     off: memory is off: a wrong passphrase",
    ]
    assert memory_lines({}) == []  # a backend from before memory
