"""``moltconsole keys`` and ``rotate-token`` on the command line (no backend running here; the
CLI against a live backend is tested in tests/integration/test_keys_live.py)."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import sys
from pathlib import Path
from typing import cast

import pytest

from moltconsole import cli
from moltconsole.client import BackendClient
from tests.unit.test_cli import GUARD, ScriptedClient, _read_until, config_file, short_dir, status

__all__ = ["config_file", "short_dir"]  # fixtures shared with test_cli

KEY = "sk-ant-api03-typed-at-a-prompt-nobody-sees-7c7c"


def keys_path(config: Path) -> Path:
    return config.parent / "data" / "keys.env"


async def test_keys_set_at_a_terminal_prompts_without_echo(config_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTCONSOLE_")}
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltconsole", "--config", str(config_file), "keys", "set",
        "ANTHROPIC_API_KEY", stdin=slave, stdout=slave, stderr=slave, env=env,
        start_new_session=True,  # no controlling terminal but the pty: getpass uses it
    )
    os.close(slave)
    try:
        seen = await asyncio.wait_for(_read_until(master, b"(not shown): "), GUARD)
        os.write(master, KEY.encode() + b"\n")
        seen += await asyncio.wait_for(_read_until(master, b"next one reads"), GUARD)
        code = await asyncio.wait_for(process.wait(), GUARD)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
    assert code == cli.EXIT_OK
    assert KEY.encode() not in seen  # the terminal never showed it
    assert b"sk-ant-\xe2\x80\xa67c7c" in seen  # only the masked hint
    assert keys_path(config_file).read_text() == f"ANTHROPIC_API_KEY={KEY}\n"


@pytest.mark.parametrize(("stdin", "problem"), [("", "no value given"), ("a\nb\n", "more than one line")])
def test_keys_set_refuses_an_empty_or_multi_line_value(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
    stdin: str, problem: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert cli.main(["--config", str(config_file), "keys", "set", "ANTHROPIC_API_KEY"]) == cli.EXIT_USAGE
    assert problem in capsys.readouterr().err
    assert not keys_path(config_file).exists()


def test_keys_set_refuses_a_bad_name(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config_file), "keys", "set", "ANTHROPIC-KEY"]) == cli.EXIT_USAGE
    assert "is not a variable name" in capsys.readouterr().err


def test_keys_set_warns_about_a_name_no_provider_reads(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret-value\n"))
    assert cli.main(["--config", str(config_file), "keys", "set", "ANTROPIC_API_KEY"]) == cli.EXIT_OK
    captured = capsys.readouterr()
    assert "no configured provider reads ANTROPIC_API_KEY" in captured.err
    assert "secret-value" not in captured.out + captured.err


def test_keys_ls_without_a_backend_shows_the_file_and_this_shell(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-from-this-shell-0000000000-wxyz")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY))
    assert cli.main(["--config", str(config_file), "keys", "set", "ANTHROPIC_API_KEY"]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main(["--config", str(config_file), "keys", "ls"]) == cli.EXIT_OK
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
    assert cli.main(["--config", str(config_file), "keys", "set", "ANTHROPIC_API_KEY"]) == cli.EXIT_OK
    keys_path(config_file).chmod(0o644)
    capsys.readouterr()
    assert cli.main(["--config", str(config_file), "keys", "ls"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"chmod 600 {keys_path(config_file)}" in err and KEY not in err


def test_keys_rm_of_an_absent_key_fails(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config_file), "keys", "rm", "ANTHROPIC_API_KEY"]) == cli.EXIT_FAILED
    assert "nothing removed" in capsys.readouterr().err


async def test_rotate_token_of_a_stopped_sandbox_says_the_next_start_uses_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ScriptedClient(first=status("stopped"), before=[status("absent")], answer=status("absent"))
    code = await asyncio.wait_for(
        cli._start_like(cast(BackendClient, client), "rotate-token", wait=True), GUARD
    )
    assert code == cli.EXIT_OK
    assert client.actions == [("rotate-token", {})]
    out = capsys.readouterr().out
    assert "gateway token replaced: the previous one is refused from now on" in out
    assert "its next start creates it with the new token" in out
