"""``moltconsole keys`` and ``rotate-token`` on the command line (no backend running here; the
CLI against a live backend is tested in tests/integration/test_keys_live.py).

``moltconsole keys`` is the backend's verb: ``moltconsole`` becomes ``python -m
moltconsole_backend`` with the same argv, so most tests call the backend's ``main`` in-process,
and the ones that run ``python -m moltconsole`` check that the hand-over keeps the terminal, the
output and the exit code.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path
from types import CoroutineType
from typing import Any, cast

import pytest

from moltconsole import cli
from moltconsole.cli import follow, processes
from moltconsole.cli import status as status_verb
from moltconsole.client import BackendClient
from moltconsole_backend import cli as backend_cli
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tests.unit.test_cli import (
    GUARD,
    ScriptedClient,
    _read_until,
    config_file,
    in_terminal,
    short_dir,
    status,
)

__all__ = ["config_file", "short_dir"]  # fixtures shared with test_cli

KEY = "sk-ant-api03-typed-at-a-prompt-nobody-sees-7c7c"


def keys_path(config: Path) -> Path:
    return config.parent / "data" / "keys.env"


def keys(config: Path, *args: str) -> int:
    """``moltconsole --config CONFIG keys ARGS`` as the backend's command line runs it."""
    return backend_cli.main(["--config", str(config), "keys", *args])


async def test_keys_set_at_a_terminal_prompts_without_echo(config_file: Path) -> None:
    async with in_terminal("--config", str(config_file), "keys", "set", "ANTHROPIC_API_KEY") as (
        process, master,
    ):
        seen = await asyncio.wait_for(_read_until(master, b"(not shown): "), GUARD)
        os.write(master, KEY.encode() + b"\n")
        seen += await asyncio.wait_for(_read_until(master, b"next one reads"), GUARD)
        code = await asyncio.wait_for(process.wait(), GUARD)
    assert code == EXIT_OK
    assert KEY.encode() not in seen  # the terminal never showed it
    assert b"sk-ant-\xe2\x80\xa67c7c" in seen  # only the masked hint
    assert keys_path(config_file).read_text() == f"ANTHROPIC_API_KEY={KEY}\n"


@pytest.mark.parametrize(("stdin", "problem"), [("", "no value given"), ("a\nb\n", "more than one line")])
def test_keys_set_refuses_an_empty_or_multi_line_value(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
    stdin: str, problem: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert keys(config_file, "set", "ANTHROPIC_API_KEY") == EXIT_USAGE
    assert problem in capsys.readouterr().err
    assert not keys_path(config_file).exists()


def test_keys_set_refuses_a_bad_name(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(config_file, "set", "ANTHROPIC-KEY") == EXIT_USAGE
    assert "is not a variable name" in capsys.readouterr().err


def test_keys_set_warns_about_a_name_no_provider_reads(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret-value\n"))
    assert keys(config_file, "set", "ANTROPIC_API_KEY") == EXIT_OK
    captured = capsys.readouterr()
    assert "no configured provider reads ANTROPIC_API_KEY" in captured.err
    assert "secret-value" not in captured.out + captured.err


def test_keys_ls_without_a_backend_shows_the_file_and_this_shell(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-from-this-shell-0000000000-wxyz")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY))
    assert keys(config_file, "set", "ANTHROPIC_API_KEY") == EXIT_OK
    capsys.readouterr()
    assert keys(config_file, "ls") == EXIT_OK
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.endswith(("anthropic", "openai"))}
    assert "keys file" in rows["ANTHROPIC_API_KEY"] and "sk-ant-…7c7c" in rows["ANTHROPIC_API_KEY"]
    assert "this shell" in rows["OPENAI_API_KEY"] and "sk-proj-…wxyz" in rows["OPENAI_API_KEY"]
    assert "no backend is running" in out
    assert KEY not in out and "from-this-shell" not in out


def test_keys_ls_refuses_a_file_others_can_read(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY))
    assert keys(config_file, "set", "ANTHROPIC_API_KEY") == EXIT_OK
    keys_path(config_file).chmod(0o644)
    capsys.readouterr()
    assert keys(config_file, "ls") == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"chmod 600 {keys_path(config_file)}" in err and KEY not in err


def test_keys_rm_of_an_absent_key_fails(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(config_file, "rm", "ANTHROPIC_API_KEY") == EXIT_FAILED
    assert "nothing removed" in capsys.readouterr().err


async def test_rotate_token_of_a_stopped_sandbox_says_the_next_start_uses_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ScriptedClient(first=status("stopped"), before=[status("absent")], answer=status("absent"))
    code = await asyncio.wait_for(
        follow.start_like(cast(BackendClient, client), "rotate-token", wait=True), GUARD
    )
    assert code == EXIT_OK
    assert client.actions == [("rotate-token", {})]
    out = capsys.readouterr().out
    assert "gateway token replaced: the previous one is refused from now on" in out
    assert "its next start creates it with the new token" in out


# --- the hand-over: moltconsole keys|serve runs the backend's command line --------------------
def test_backend_verbs_become_the_backend_command_line_with_the_same_argv(
    monkeypatch: pytest.MonkeyPatch, config_file: Path,
) -> None:
    became: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        became.append(argv)
        raise SystemExit(0)  # execv does not return

    monkeypatch.setattr(os, "execv", fake_execv)
    for argv in (["--config", str(config_file), "keys", "set", "NAME"],
                 [f"--config={config_file}", "serve"], ["keys", "ls", "--json"], ["keys", "--help"],
                 ["--conf", str(config_file), "serve"]):  # an abbreviation argparse accepts
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert became.pop() == [sys.executable, "-m", "moltconsole_backend", *argv]


def test_other_verbs_stay_with_the_console(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    def fake_execv(path: str, argv: list[str]) -> None:
        raise AssertionError(f"handed over: {argv}")

    ran: list[str] = []

    def fake_run(work: CoroutineType[Any, Any, int]) -> int:
        ran.append(work.__qualname__)
        work.close()
        return EXIT_OK

    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setattr(status_verb, "run", fake_run)
    monkeypatch.setattr(processes, "run", fake_run)
    assert cli.main(["--config", str(config_file), "status"]) == EXIT_OK
    assert cli.main(["--config", str(config_file), "exec", "--", "keys", "ls"]) == EXIT_OK
    assert ran == ["status_command.<locals>.show", "on_backend"]


def test_backend_verbs_hand_over_before_the_console_imports_its_libraries(config_file: Path) -> None:
    # A fresh interpreter, as the moltconsole command starts: the hand-over must not pay for
    # the console's HTTP, WebSocket and settings libraries (about 0.4 s) only to replace itself.
    heavy = ["httpx", "websockets", "pydantic", "moltconsole.client", "moltconsole.settings"]
    script = (
        "import os, sys\n"
        f"def execv(path, argv):\n    print(sorted(set({heavy!r}) & set(sys.modules)))\n    sys.exit(0)\n"
        "os.execv = execv\n"
        "from moltconsole.cli import main\n"
        f"main(['--config', {str(config_file)!r}, 'keys', 'ls'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


async def test_moltconsole_keys_exits_and_prints_as_the_backend_does(config_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTCONSOLE_")}
    results = []
    for module in ("moltconsole", "moltconsole_backend"):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--config", str(config_file), "keys", "rm", "NOT_THERE",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        out, err = await asyncio.wait_for(process.communicate(), GUARD)
        results.append((process.returncode, out, err))
    assert results[0] == results[1]
    code, _, err = results[0]
    assert code == EXIT_FAILED
    assert b"NOT_THERE is not in" in err and b"nothing removed" in err
