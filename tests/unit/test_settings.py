"""Settings: defaults, TOML, environment overrides, and errors that name the key and its source.

Most tests read the backend's settings (it owns most sections); the ones at the end check that
each side reads only its own sections of the one file.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from moltconsole import settings as console
from moltconsole_backend.settings import DEFAULT_OPENCLAW_VERSION, load_settings
from moltconsole_shared.config import SECTIONS, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(None, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.sandbox.openclaw_version == DEFAULT_OPENCLAW_VERSION
    assert settings.sandbox.bind_address == "127.0.0.1"  # loopback only by default
    assert settings.sandbox.gateway_port == 18789
    assert settings.source is None


def test_file_values_and_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[sandbox]\ngateway_port = 18800\nmemory_limit = "1g"\n')
    settings = load_settings(path, env={"MOLTCONSOLE_SANDBOX__GATEWAY_PORT": "18900"})
    assert settings.sandbox.gateway_port == 18900
    assert settings.sandbox.memory_limit == "1g"
    assert settings.source == path


def test_bad_value_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[sandbox]\ngateway_port = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "sandbox.gateway_port" in message
    assert str(path) in message
    assert "'lots'" in message


def test_bad_value_in_env_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"XDG_CONFIG_HOME": str(tmp_path),
                            "MOLTCONSOLE_SANDBOX__HEARTBEAT": "often"})
    message = str(info.value)
    assert "sandbox.heartbeat" in message
    assert "MOLTCONSOLE_SANDBOX__HEARTBEAT" in message
    assert "30m" in message  # says what a good value looks like


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[sandbox]\ngateway_prot = 1\n")
    with pytest.raises(ConfigError, match=r"sandbox.gateway_prot .*unknown setting"):
        load_settings(path, env={})


def test_broken_toml_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "[sandbox\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(None, env={"MOLTCONSOLE_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("openclaw_version", '"1.0; rm -rf /"'),
        ("name", '"Bad Name"'),
        ("bind_address", '"localhost:80"'),
        ("memory_limit", '"lots"'),
        ("gateway_port", "70000"),
        ("cpus", "0"),
    ],
)
def test_hostile_or_wrong_values_are_refused(tmp_path: Path, key: str, value: str) -> None:
    path = write(tmp_path, f"[sandbox]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=f"sandbox.{key}"):
        load_settings(path, env={})


def test_paths_follow_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = load_settings(None, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.paths.data_dir == tmp_path / "data" / "moltconsole"
    assert settings.sandbox_dir == tmp_path / "data" / "moltconsole" / "sandboxes" / "default"


def test_errors_never_show_a_provider_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[gateway.providers.mine]\napi = "anthropic"\napi_key = "sk-ant-SECRET-1234"\n'
        '[gateway.providers.other]\napi = "telepathy"\nbase_url = "https://x"\n'
        'api_key = "sk-ant-SECRET-1234"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    text = str(caught.value)
    assert "gateway.providers.mine.base_url" in text and "add it" in text
    assert "gateway.providers.other.api" in text
    assert "SECRET" not in text


def test_a_built_in_provider_section_keeps_what_it_does_not_override(tmp_path: Path) -> None:
    # Issue 9, item 5: overriding only the URL used to drop api_key_env (and demanded api).
    path = write(tmp_path, '[gateway.providers.anthropic]\nbase_url = "https://proxy.example/anthropic/"\n')
    providers = load_settings(path, env={}).gateway.providers
    anthropic = providers["anthropic"]
    assert (anthropic.api, anthropic.base_url, anthropic.api_key_env) == (
        "anthropic", "https://proxy.example/anthropic", "ANTHROPIC_API_KEY"
    )
    assert providers["openai"].api_key_env == "OPENAI_API_KEY"  # the other built-in stays too


def test_a_built_in_provider_section_may_override_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[gateway.providers.openai]\napi = "openai"\nbase_url = "https://llm.example"\n'
        'api_key_env = "MY_OPENAI_KEY"\nheaders = { "x-team" = "env:TEAM" }\n',
    )
    openai = load_settings(path, env={}).gateway.providers["openai"]
    assert (openai.base_url, openai.api_key_env, openai.headers) == (
        "https://llm.example", "MY_OPENAI_KEY", {"x-team": "env:TEAM"}
    )


def test_a_new_provider_keeps_the_built_ins_beside_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway.providers.backup]\napi = "anthropic"\nbase_url = "https://b.example"\n')
    providers = load_settings(path, env={}).gateway.providers
    assert set(providers) == {"anthropic", "openai", "backup"}
    assert providers["backup"].api_key_env == ""  # a new provider inherits nothing
    assert providers["anthropic"].api_key_env == "ANTHROPIC_API_KEY"


def test_a_new_provider_without_api_is_refused_with_what_to_write(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway.providers.backup]\nbase_url = "https://b.example"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    text = str(caught.value)
    assert "gateway.providers.backup.api" in text
    assert 'api = "anthropic" or api = "openai"' in text
    assert "only anthropic and openai are built in" in text


def test_the_keys_file_lives_in_the_data_dir_unless_configured(tmp_path: Path) -> None:
    path = write(tmp_path, f'[paths]\ndata_dir = "{tmp_path}/data"\n')
    assert load_settings(path, env={}).keys_path == tmp_path / "data" / "keys.env"
    path = write(tmp_path, f'[paths]\nkeys_file = "{tmp_path}/etc/keys.env"\n')
    assert load_settings(path, env={}).keys_path == tmp_path / "etc" / "keys.env"


# --- one file, two readers ------------------------------------------------------------------
def test_each_side_validates_only_its_own_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[console]\ntheme = "nord"\n[sandbox]\ngateway_port = "lots"\n'
        f'[paths]\nruntime_dir = "{tmp_path}/run"\n',
    )
    seen_by_console = console.load_settings(path, env={})  # the sandbox is not its business
    assert seen_by_console.console.theme == "nord"
    assert seen_by_console.socket_path == tmp_path / "run" / "backend.sock"
    with pytest.raises(ConfigError, match=r"sandbox\.gateway_port"):
        load_settings(path, env={})
    backend_path = write(tmp_path, '[console]\nkeymap = "not a table"\n')
    assert load_settings(backend_path, env={}).gateway.enabled  # the console's section is not its
    with pytest.raises(ConfigError, match=r"console\.keymap"):
        console.load_settings(backend_path, env={})


@pytest.mark.parametrize("load", [load_settings, console.load_settings], ids=["backend", "console"])
def test_a_section_nobody_owns_is_named_by_both_sides(tmp_path: Path, load: Callable[..., Any]) -> None:
    path = write(tmp_path, "[sandbx]\nname = \"x\"\n")
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    text = str(caught.value)
    assert f"sandbx (in {path}): unknown section" in text
    assert "[sandbox]" in text and "[console]" in text  # says what the sections are


@pytest.mark.parametrize("load", [load_settings, console.load_settings], ids=["backend", "console"])
def test_a_variable_for_a_section_nobody_owns_names_the_variable(
    tmp_path: Path, load: Callable[..., Any]
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "MOLTCONSOLE_GATEWY__PORT": "1"}
    with pytest.raises(ConfigError) as caught:
        load(None, env=env)
    assert "gatewy (in environment variable MOLTCONSOLE_GATEWY__PORT): unknown section" in str(caught.value)


def test_both_sides_own_every_section_between_them() -> None:
    from moltconsole_backend.settings import Settings as BackendSettings

    owned = {name for model in (BackendSettings, console.Settings) for name in model.model_fields}
    assert owned == SECTIONS


def test_a_top_level_key_is_a_section_too(tmp_path: Path) -> None:
    path = write(tmp_path, 'source = "/etc/passwd"\n')
    with pytest.raises(ConfigError, match=r"source .* unknown section"):
        console.load_settings(path, env={})


def test_heartbeat_is_a_whole_number_of_units_as_openclaw_reads_it(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, '[sandbox]\nheartbeat = "30m"\n'), env={}).sandbox.heartbeat == "30m"
    with pytest.raises(ConfigError, match=r"sandbox\.heartbeat = '0\.5h'"):
        load_settings(write(tmp_path, '[sandbox]\nheartbeat = "0.5h"\n'), env={})


def test_memory_excludes_from_the_environment_are_comma_separated(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "MOLTCONSOLE_MEMORY__EXCLUDES": "*.lock, cache/* ,,tmp/*"}
    assert load_settings(None, env=env).memory.excludes == ["*.lock", "cache/*", "tmp/*"]
