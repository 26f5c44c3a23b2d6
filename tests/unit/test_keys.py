"""The keys file (systemd EnvironmentFile syntax, owner-only) and the live mapping the gateway reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moltconsole_backend.gateway.keys import (
    KeyEnvironment,
    KeysFileError,
    format_assignment,
    hint,
    missing_keys,
    parse,
    read_keys,
    remove_key,
    set_key,
)
from moltconsole_backend.settings import GatewaySettings

ANTHROPIC = "sk-ant-api03-Zq8vN2kLmP4rT6wY9bC1dF3gH5jK7-a1b2"


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


# --- syntax -----------------------------------------------------------------------------------
def test_parse_reads_systemd_environment_file_syntax() -> None:
    text = (
        "# a comment\n"
        "; another comment\n"
        "\n"
        "PLAIN=sk-ant-abc\n"
        "  SPACED  =   value with inner  spaces   \n"
        "SINGLE='keeps \\n and \"quotes\" verbatim'\n"
        'DOUBLE="a \\"quoted\\" \\$HOME \\\\ \\x"\n'
        "ESCAPED=a\\ b\\#c\n"
        "CONTINUED=first\\\nsecond\n"
        "MULTI='line one\nline two'\n"
        "no equals sign here\n"
        "9BAD=not a name\n"
        "EMPTY=\n"
        "DUP=old\n"
        "DUP=new\n"
        "QUOTE_LATER=a'b\"c\n"
        "LAST=no newline at the end"
    )
    assert parse(text) == {
        "PLAIN": "sk-ant-abc",
        "SPACED": "value with inner  spaces",
        "SINGLE": 'keeps \\n and "quotes" verbatim',
        "DOUBLE": 'a "quoted" $HOME \\ \\x',
        "ESCAPED": "a b#c",
        "CONTINUED": "firstsecond",
        "MULTI": "line one\nline two",
        "EMPTY": "",
        "DUP": "new",
        "QUOTE_LATER": "a'b\"c",
        "LAST": "no newline at the end",
    }


@pytest.mark.parametrize(
    "value",
    [
        ANTHROPIC,
        "with spaces  inside",
        "a#hash;semi",
        "single'quote and $dollar `tick` \\ backslash \"double\"",
        " leading and trailing ",
        "two\nlines",
        "ünïcødé",
    ],
)
def test_every_value_written_reads_back_exactly(value: str) -> None:
    line = format_assignment("NAME", value)
    assert line.endswith("\n")
    assert parse(line) == {"NAME": value}
    assert parse("A=1\n" + line + "B=2\n") == {"A": "1", "NAME": value, "B": "2"}


def test_keys_are_written_bare_when_they_can_be() -> None:
    assert format_assignment("ANTHROPIC_API_KEY", ANTHROPIC) == f"ANTHROPIC_API_KEY={ANTHROPIC}\n"


@pytest.mark.parametrize(("name", "value"), [("1X", "v"), ("A-B", "v"), ("A", ""), ("A", "x\0y")])
def test_bad_names_and_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(KeysFileError):
        format_assignment(name, value)


def test_hint_shows_the_kind_and_at_most_the_last_four() -> None:
    assert hint(ANTHROPIC) == "sk-ant-…a1b2"
    assert hint("sk-proj-" + "x" * 40 + "9z9z") == "sk-proj-…9z9z"
    assert hint("0123456789abcdefghij") == "…ghij"
    assert hint("short-secret") == "…"  # 4 characters of a short secret would be too many
    assert hint("tiny") == "…"


# --- the file ---------------------------------------------------------------------------------
def test_set_creates_an_owner_only_file_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new" / "keys.env"
    old = os.umask(0)
    try:
        assert set_key(path, "ANTHROPIC_API_KEY", ANTHROPIC) is False
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert read_keys(path) == {"ANTHROPIC_API_KEY": ANTHROPIC}


def test_set_and_rm_keep_comments_and_other_keys(tmp_path: Path) -> None:
    path = private_file(
        tmp_path / "keys.env",
        "# my keys\nOPENAI_API_KEY=sk-o\nANTHROPIC_API_KEY=old\n; note\nANTHROPIC_API_KEY='older'\nZ=1",
    )
    assert set_key(path, "ANTHROPIC_API_KEY", "sk-new") is True
    assert path.read_text() == "# my keys\nOPENAI_API_KEY=sk-o\n; note\nANTHROPIC_API_KEY=sk-new\nZ=1"
    assert set_key(path, "CF_AIG_TOKEN", "t 1") is False
    assert path.read_text().endswith("Z=1\nCF_AIG_TOKEN='t 1'\n")
    assert remove_key(path, "OPENAI_API_KEY") is True
    assert remove_key(path, "OPENAI_API_KEY") is False
    assert read_keys(path) == {"ANTHROPIC_API_KEY": "sk-new", "Z": "1", "CF_AIG_TOKEN": "t 1"}
    assert path.read_text().startswith("# my keys\n; note\n")
    assert (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_file_others_can_access_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = private_file(tmp_path / "keys.env", f"ANTHROPIC_API_KEY={ANTHROPIC}\n")
    path.chmod(mode)
    with pytest.raises(KeysFileError) as caught:
        read_keys(path)
    message = str(caught.value)
    assert f"mode is {mode:04o}" in message and f"chmod 600 {path}" in message
    assert ANTHROPIC not in message
    with pytest.raises(KeysFileError):
        set_key(path, "OTHER", "x")  # nor is it written to, which would hide the exposure
    assert path.read_text() == f"ANTHROPIC_API_KEY={ANTHROPIC}\n"


def test_a_missing_file_holds_no_keys(tmp_path: Path) -> None:
    assert read_keys(tmp_path / "absent.env") == {}
    assert remove_key(tmp_path / "absent.env", "X") is False


# --- what the gateway reads ---------------------------------------------------------------------
def test_the_file_overrides_the_environment_and_changes_are_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.env"
    environ = {"ANTHROPIC_API_KEY": "from-env", "OPENAI_API_KEY": "openai-env"}
    env = KeyEnvironment(path, environ, recheck_every=0)  # look at the file on every lookup
    assert env.get("ANTHROPIC_API_KEY") == "from-env" and env.source("ANTHROPIC_API_KEY") == "environment"
    set_key(path, "ANTHROPIC_API_KEY", ANTHROPIC)
    assert env.get("ANTHROPIC_API_KEY") == ANTHROPIC and env.source("ANTHROPIC_API_KEY") == "file"
    assert env.in_environment("ANTHROPIC_API_KEY")
    set_key(path, "ANTHROPIC_API_KEY", "sk-second")  # same size class, same second: still seen
    assert env.get("ANTHROPIC_API_KEY") == "sk-second"
    remove_key(path, "ANTHROPIC_API_KEY")
    assert env.get("ANTHROPIC_API_KEY") == "from-env"
    assert env.get("NOWHERE") is None and env.source("NOWHERE") is None
    assert dict(env) == environ
    path.unlink()
    assert env.get("OPENAI_API_KEY") == "openai-env"


def test_the_request_path_looks_at_the_file_at_most_every_interval_and_refresh_looks_now(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.env"
    set_key(path, "ANTHROPIC_API_KEY", "sk-first")
    env = KeyEnvironment(path, {}, recheck_every=3600)
    assert env.get("ANTHROPIC_API_KEY") == "sk-first"
    set_key(path, "ANTHROPIC_API_KEY", "sk-second")
    assert env.get("ANTHROPIC_API_KEY") == "sk-first"  # no system call per lookup
    assert env.source("ANTHROPIC_API_KEY") == "file"  # reporting looks at the file now...
    assert env.get("ANTHROPIC_API_KEY") == "sk-second"  # ...and the lookups see what it found
    remove_key(path, "ANTHROPIC_API_KEY")
    env.refresh()
    assert env.get("ANTHROPIC_API_KEY") is None


def test_an_empty_value_in_the_file_does_not_hide_the_environment(tmp_path: Path) -> None:
    path = private_file(tmp_path / "keys.env", "ANTHROPIC_API_KEY=\n")
    env = KeyEnvironment(path, {"ANTHROPIC_API_KEY": "from-env"})
    assert env["ANTHROPIC_API_KEY"] == "from-env"


def test_an_exposed_file_is_ignored_until_fixed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = private_file(tmp_path / "keys.env", f"ANTHROPIC_API_KEY={ANTHROPIC}\n")
    path.chmod(0o644)
    env = KeyEnvironment(path, {}, recheck_every=0)
    assert env.get("ANTHROPIC_API_KEY") is None
    assert "chmod 600" in env.file_error
    assert sum("chmod 600" in r.getMessage() for r in caplog.records) == 1
    env.get("ANTHROPIC_API_KEY")
    assert sum("chmod 600" in r.getMessage() for r in caplog.records) == 1  # logged once, not per call
    path.chmod(0o600)
    assert env.get("ANTHROPIC_API_KEY") == ANTHROPIC and env.file_error == ""
    assert ANTHROPIC not in caplog.text


# --- which providers lack a key -----------------------------------------------------------------
def test_only_providers_in_use_are_reported_with_the_command() -> None:
    gaps = missing_keys(GatewaySettings(), {})
    # The sandbox's agent goes to anthropic; openai is built in but nobody chose it.
    assert [(g.provider, g.variable, g.command) for g in gaps] == [
        ("anthropic", "ANTHROPIC_API_KEY", "moltconsole keys set ANTHROPIC_API_KEY")
    ]
    assert "anthropic" in gaps[0].message and "moltconsole keys set ANTHROPIC_API_KEY" in gaps[0].message
    assert missing_keys(GatewaySettings(), {"ANTHROPIC_API_KEY": "k"}) == []


def test_named_providers_fallbacks_and_headers_are_checked() -> None:
    gw = GatewaySettings.model_validate({
        "providers": {
            "openai": {"base_url": "https://llm.example"},
            "backup": {"api": "anthropic", "base_url": "https://cf.example",
                       "headers": {"cf-aig-authorization": "env:CF_AIG_TOKEN"}},
            "inline": {"api": "anthropic", "base_url": "https://i.example", "api_key": "sk-inline"},
            "nameless": {"api": "anthropic", "base_url": "https://n.example"},
        },
        "fallbacks": {"claude-sonnet-4-6": ["backup/claude-sonnet-4-6"]},
    })
    gaps = {(g.provider, g.variable) for g in missing_keys(gw, {"ANTHROPIC_API_KEY": "k"})}
    assert gaps == {("openai", "OPENAI_API_KEY"), ("backup", "CF_AIG_TOKEN"), ("nameless", "")}
    nameless = next(g for g in missing_keys(gw, {}) if g.provider == "nameless")
    assert nameless.command == "" and "gateway.providers.nameless.api_key_env" in nameless.message
