"""One typed settings object, read from a TOML file and ``MOLTCONSOLE_*`` environment variables.

Precedence, lowest first: built-in defaults, the TOML file
(``$XDG_CONFIG_HOME/moltconsole/config.toml`` or ``$MOLTCONSOLE_CONFIG``), environment variables
(``MOLTCONSOLE_SANDBOX__GATEWAY_PORT=18800`` sets ``sandbox.gateway_port``).

Every validation error names the key and where its value came from, so a user can fix it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

ENV_PREFIX = "MOLTCONSOLE_"
ENV_NESTING = "__"
DEFAULT_OPENCLAW_VERSION = "2026.9.6"

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_DURATION_RE = re.compile(r"^[0-9]+(ms|s|m|h|d)$")
_MEMORY_RE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key, where, and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SandboxSettings(_Section):
    """How the OpenClaw gateway container is built and run."""

    name: str = "default"
    openclaw_version: str = DEFAULT_OPENCLAW_VERSION
    image_repository: str = "moltconsole/openclaw"
    # "registry": build FROM base_image and install OpenClaw with npm inside the build.
    # "offline": bootstrap the base from Debian packages and prepare Node and OpenClaw on the
    # host, for machines whose containers cannot reach a registry. "auto" tries the registry
    # route when base_image is present locally and falls back to offline otherwise.
    build_route: Literal["auto", "registry", "offline"] = "auto"
    base_image: str = "node:24-bookworm-slim"
    bind_address: str = "127.0.0.1"
    gateway_port: int = Field(default=18789, ge=1, le=65535)
    memory_limit: str = "2g"
    cpus: float = Field(default=1.5, gt=0, le=256)
    pids_limit: int = Field(default=512, ge=16)
    node_max_old_space_mb: int = Field(default=0, ge=0)
    heartbeat: str = "0m"
    ready_timeout: float = Field(default=180.0, gt=0)
    # Seconds OpenClaw gets to finish in-flight agent work on stop before it is killed.
    stop_timeout: int = Field(default=30, ge=1, le=600)
    readyz_interval: float = Field(default=0.05, gt=0)
    health_interval: float = Field(default=2.0, gt=0)
    unhealthy_after: int = Field(default=3, ge=1)
    restart_backoff_initial: float = Field(default=1.0, ge=0)
    restart_backoff_max: float = Field(default=60.0, ge=0)
    crash_loop_threshold: int = Field(default=5, ge=1)
    crash_loop_window: float = Field(default=300.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("use 1-31 lowercase letters, digits or '-', starting with a letter or digit")
        return value

    @field_validator("openclaw_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION_RE.match(value):
            raise ValueError("expected an OpenClaw version such as 2026.9.6")
        return value

    @field_validator("heartbeat")
    @classmethod
    def _heartbeat(cls, value: str) -> str:
        if not _DURATION_RE.match(value):
            raise ValueError("expected a duration such as 0m (off), 30m or 1h")
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _MEMORY_RE.match(value):
            raise ValueError("expected a size such as 2g or 1536m")
        return value

    @field_validator("bind_address")
    @classmethod
    def _bind(cls, value: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("expected an IP address such as 127.0.0.1") from None
        return value


class LogSettings(_Section):
    """The log pipeline: what the backend keeps on disk and how it cuts lines."""

    history_mb: int = Field(default=256, ge=1, le=1_000_000)  # bounded spool on disk
    segment_mb: int = Field(default=16, ge=1, le=1024)
    max_line_bytes: int = Field(default=16_384, ge=256, le=1_048_576)  # longer lines are cut


class ConsoleSettings(_Section):
    """The Textual console: theme and key bindings (binding id -> keys, e.g. "logs.pause" = "p")."""

    theme: str = "textual-dark"
    keymap: dict[str, str] = Field(default_factory=dict)


class ProviderSettings(_Section):
    """An upstream the AI gateway forwards to, with the credentials the sandbox never sees.

    ``api`` is the wire protocol it speaks. The key comes from ``api_key_env`` (a variable read
    from the keys file or the backend's environment) or, discouraged, ``api_key`` in the file.
    ``headers`` are sent upstream as given; a value ``"env:NAME"`` is read the same way, e.g. a
    Cloudflare AI Gateway's ``cf-aig-authorization = "env:CF_AIG_TOKEN"``.

    A section naming a built-in provider (``BUILT_IN_PROVIDERS``) starts from the built-in's
    values and overrides only what it sets.
    """

    api: Literal["anthropic", "openai"]
    base_url: str
    api_key_env: str = ""
    api_key: str = Field(default="", repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an http(s) URL such as https://api.anthropic.com")
        return value.rstrip("/")


# The providers every configuration has; a [gateway.providers.<name>] section of the same name
# overrides only the fields it sets.
BUILT_IN_PROVIDERS: dict[str, dict[str, str]] = {
    "anthropic": {
        "api": "anthropic", "base_url": "https://api.anthropic.com", "api_key_env": "ANTHROPIC_API_KEY",
    },
    "openai": {"api": "openai", "base_url": "https://api.openai.com", "api_key_env": "OPENAI_API_KEY"},
}


def _default_providers() -> dict[str, ProviderSettings]:
    return {name: ProviderSettings.model_validate(values) for name, values in BUILT_IN_PROVIDERS.items()}


class PriceSettings(_Section):
    """A user's price for one model, USD per million tokens; overrides the shipped table."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write_5m: float | None = Field(default=None, ge=0)
    cache_write_1h: float | None = Field(default=None, ge=0)
    # Above this many prompt tokens the whole request is priced at the long_* rates.
    long_context_threshold: int | None = Field(default=None, ge=1)
    long_input: float | None = Field(default=None, ge=0)
    long_output: float | None = Field(default=None, ge=0)


class BudgetSettings(_Section):
    """A spend limit in USD; 0 means no limit."""

    daily_usd: float = Field(default=0.0, ge=0)
    monthly_usd: float = Field(default=0.0, ge=0)


class CloudflareSettings(_Section):
    """Import the logs of a Cloudflare AI Gateway into the ledger (off while account_id is empty)."""

    account_id: str = ""
    gateway_id: str = ""
    api_token_env: str = "CLOUDFLARE_API_TOKEN"  # noqa: S105 - the name of a variable
    api_base: str = "https://api.cloudflare.com/client/v4"
    import_interval: float = Field(default=300.0, ge=10)


class GatewaySettings(_Section):
    """The AI gateway: the sandbox's only way to a model provider, and the ledger of its cost."""

    enabled: bool = True
    # "auto": the Docker bridge's address, which the sandbox reaches as host.docker.internal.
    bind_address: str = "auto"
    port: int = Field(default=18790, ge=0, le=65535)
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    # Which provider serves each API when the agent does not name one in the path.
    default_anthropic: str = "anthropic"
    default_openai: str = "openai"
    connect_timeout: float = Field(default=10.0, gt=0)
    # Longest silence between two chunks of a response. There is no total limit: long
    # generations are never cut.
    read_timeout: float = Field(default=600.0, gt=0)
    # Attempts after the first, on connection errors, 429, 5xx and 529, before any byte went out.
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: float = Field(default=0.5, ge=0)
    # model -> ordered fallbacks, each "model" or "provider/model" of the same API family.
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    sandbox_budgets: dict[str, BudgetSettings] = Field(default_factory=dict)
    budget_warn_percent: float = Field(default=80.0, gt=0, le=100)
    # What happens once a budget is spent: refuse with an error the agent reports, or serve a
    # cheaper model (budget_fallback_model, "model" or "provider/model").
    budget_action: Literal["block", "fallback"] = "block"
    budget_fallback_model: str = ""
    cloudflare: CloudflareSettings = Field(default_factory=CloudflareSettings)
    # Limits of the gateway's HTTP server, held under attack (see the README's gateway section).
    max_connections: int = Field(default=512, ge=1, le=100_000)  # all clients together
    max_connections_per_client: int = Field(default=128, ge=1, le=100_000)  # per source address
    header_timeout: float = Field(default=10.0, gt=0)  # the whole request head, however it trickles
    body_timeout: float = Field(default=60.0, gt=0)  # the whole body, from the end of the head
    max_body_mb: int = Field(default=32, ge=1, le=1024)  # one request body (413 beyond)
    # Bodies held in memory at once, all connections together (503 beyond).
    max_bodies_mb: int = Field(default=128, ge=1, le=65536)
    # After this many bad tokens from one source within a minute, it is refused (429) for a while.
    auth_failures_per_minute: int = Field(default=20, ge=1, le=100_000)
    # After the agent hangs up mid-stream, keep reading the provider's answer for its usage, this long.
    drain_timeout: float = Field(default=10.0, ge=0)
    drain_max_mb: int = Field(default=8, ge=0, le=1024)

    # Providers the configuration names itself (a section of its own), built-in or not.
    _named_providers: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_named_providers(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        named = data.get("providers") if isinstance(data, Mapping) else None
        result = handler(data)
        if isinstance(named, Mapping) and isinstance(result, GatewaySettings):
            result._named_providers = frozenset(named)
        return result

    @property
    def named_providers(self) -> frozenset[str]:
        """Providers with a section of their own in the configuration (not only built in)."""
        return self._named_providers

    @field_validator("providers", mode="before")
    @classmethod
    def _inherit_built_ins(cls, value: Any) -> Any:
        """The built-in providers, each overlaid by a section of its name; other sections as given."""
        if not isinstance(value, Mapping):
            return value  # pydantic says what is wrong with it
        merged: dict[str, Any] = dict(_default_providers())
        for name, section in value.items():
            built_in = BUILT_IN_PROVIDERS.get(name)
            if built_in is not None and isinstance(section, Mapping):
                merged[name] = {**built_in, **section}
            else:
                merged[name] = section
        return merged

    @field_validator("bind_address")
    @classmethod
    def _bind(cls, value: str) -> str:
        import ipaddress

        if value == "auto":
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("expected \"auto\" or an IP address such as 172.17.0.1") from None
        return value


class PathSettings(_Section):
    """Where moltconsole keeps its data, caches and runtime files."""

    data_dir: Path = Field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    runtime_dir: Path = Field(default_factory=lambda: _runtime_dir())
    # Provider keys (NAME=value lines, mode 0600); empty: <data_dir>/keys.env.
    keys_file: Path | None = None


class Settings(_Section):
    """All of moltconsole's settings."""

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    source: Path | None = Field(default=None, exclude=True)

    @property
    def socket_path(self) -> Path:
        """The backend API's unix socket."""
        return self.paths.runtime_dir / "backend.sock"

    @property
    def ledger_path(self) -> Path:
        """The AI gateway's SQLite ledger of requests and their cost."""
        return self.paths.data_dir / "ledger.sqlite"

    @property
    def keys_path(self) -> Path:
        """The provider keys file (``moltconsole keys``), read by the backend on every change."""
        return self.paths.keys_file or self.paths.data_dir / "keys.env"

    @property
    def sandbox_dir(self) -> Path:
        """The host directory holding this sandbox's state and logs."""
        return self.paths.data_dir / "sandboxes" / self.sandbox.name


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var) or str(Path.home() / fallback)
    return Path(base) / "moltconsole"


def _runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "moltconsole"
    return Path(f"/tmp/moltconsole-{os.getuid()}")


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The TOML file read when none is named."""
    env = os.environ if env is None else env
    if env.get("MOLTCONSOLE_CONFIG"):
        return Path(env["MOLTCONSOLE_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "moltconsole" / "config.toml"


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Nested overrides from MOLTCONSOLE_SECTION__KEY variables, and which variable set what."""
    values: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "MOLTCONSOLE_CONFIG":
            continue
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_NESTING))
        if len(parts) != 2 or not all(parts):
            continue
        values.setdefault(parts[0], {})[parts[1]] = value
        origin[parts] = name
    return values, origin


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the settings; raise ConfigError naming the key and its source."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get("MOLTCONSOLE_CONFIG"))
    path = path or default_config_path(env)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the file or move it away.") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror}).") from None
    elif explicit:
        raise ConfigError(f"{path}: config file not found. Create it or unset MOLTCONSOLE_CONFIG.")
    overrides, origin = _env_overrides(env)
    merged = _merge(data, overrides)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, origin)) from None
    return settings.model_copy(update={"source": path if path.exists() else None})


def _describe(exc: ValidationError, path: Path, origin: Mapping[tuple[str, ...], str]) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        where = f"environment variable {origin[loc]}" if loc in origin else str(path)
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key} (in {where}): unknown setting. Check the spelling or remove it.")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing" and loc[:2] == ("gateway", "providers") and loc[3:] == ("api",):
            lines.append(
                f"  {key} (in {where}): a new provider needs its wire protocol: add "
                'api = "anthropic" or api = "openai" (only anthropic and openai are built in '
                "and may leave it out)."
            )
            continue
        if err["type"] == "missing":
            lines.append(f"  {key} (in {where}): {message}; add it.")
            continue
        lines.append(f"  {key} = {_shown(loc, err.get('input'))} (in {where}): {message}")
    return "\n".join(lines)


_SECRET_KEYS = ("api_key", "headers", "token", "secret", "password")


def _shown(loc: tuple[str, ...], value: Any) -> str:
    """A bad value as the error message may show it: never a secret, never a whole table."""
    if any(part in _SECRET_KEYS for part in loc):
        return "<hidden>"
    if isinstance(value, Mapping):
        return "{...}"
    return repr(value)
