"""The backend's settings: the sandbox, the log pipeline and the AI gateway (its providers,
prices, budgets and the Cloudflare import), with the ``[paths]`` both sides read.

Loaded from the one config file by :func:`moltconsole_shared.config.load_config`, which leaves
the console's ``[console]`` section to the console. Every validation error names the key and
where its value came from, so a user can fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from moltconsole_shared.config import ConfigRoot, Section, load_config
from moltconsole_shared.durations import DurationError, parse_duration
from moltconsole_shared.names import NAME_RULE, is_sandbox_name
from moltconsole_shared.paths import PathSettings

DEFAULT_OPENCLAW_VERSION = "2026.9.6"

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")
_MEMORY_RE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)


class SandboxSettings(Section):
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
    # Measured (bench/bench_sandbox_memory.py): working set 0.75 GiB idle, 1.4 GiB at the peak of
    # an agent turn, killed at 1 GiB; a user's turns reached 1.8 GiB. 3g leaves room above that.
    memory_limit: str = "3g"
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
    # Free host memory a sandbox needs to start (measured: an idle OpenClaw's working set is about
    # 750 MiB); a start that would leave less is refused unless allow_overcommit is set.
    start_memory_mb: int = Field(default=768, ge=0, le=1_000_000)
    allow_overcommit: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_sandbox_name(value):
            raise ValueError(f"use {NAME_RULE}")
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
        try:
            parse_duration(value, whole=True)  # OpenClaw's own format: a whole number of units
        except DurationError:
            raise ValueError("expected a duration such as 0m (off), 30m or 1h") from None
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


class LogSettings(Section):
    """The log pipeline: what the backend keeps on disk and how it cuts lines."""

    history_mb: int = Field(default=256, ge=1, le=1_000_000)  # bounded spool on disk
    segment_mb: int = Field(default=16, ge=1, le=1024)
    max_line_bytes: int = Field(default=16_384, ge=256, le=1_048_576)  # longer lines are cut
    # Free space the history leaves on its disk; unset: the smaller of 64 MiB and 1% of the disk.
    reserve_mb: int | None = Field(default=None, ge=0, le=1_000_000)
    # Seconds a console line waits for the log file's record of the same event (kept instead).
    twin_wait: float = Field(default=3.0, ge=0, le=60)


DEFAULT_MEMORY_EXCLUDES = [
    "*.lock", "*.tmp", "*.pid", "tmp/*", "cache/*", "*/cache/*", "logs/*", "*/logs/*",
    "*-wal", "*-shm", "*-journal", "*.sock",
    # OpenClaw's lock databases beside the agent's (generation-lock, generation-writer,
    # reindex-lock: held in a write while a memory reindex runs) and the reindex's scratch copy.
    "*.sqlite.*.sqlite", "*.sqlite.memory-reindex-*",
]


class MemorySettings(Section):
    """Where and when each sandbox's state directory is kept with history (memory/).

    On by default, in a local repository under ``<data_dir>/memory``; ``repository`` adds a
    bucket. ``enabled = false`` keeps nothing (a stop then waits for no snapshot).
    """

    enabled: bool = True
    # "": a local repository under <data_dir>/memory only. "s3://bucket/prefix" or
    # "r2://bucket/prefix": that bucket too (snapshots are kept locally first and copied).
    repository: str = ""
    endpoint_url: str = ""  # S3 endpoint; for r2:// it comes from account_id
    account_id: str = ""  # Cloudflare account id (or CF_ACCOUNT_ID)
    region: str = ""  # "auto" for R2
    path_style: bool = False  # SeaweedFS and MinIO without DNS names per bucket
    access_key_env: str = ""  # variable names; empty: R2_* then AWS_* (keys file or environment)
    secret_key_env: str = ""
    # A variable holding a passphrase: the repository is encrypted (AES-256-GCM) with it.
    encryption_key_env: str = ""
    debounce: float = Field(default=1.0, ge=0.05, le=60)  # quiet seconds after a change
    max_delay: float = Field(default=3.0, ge=0.1, le=600)  # at most this long while changes go on
    interval: float = Field(default=3600.0, ge=0)  # a scheduled snapshot; 0: none
    stop_timeout: float = Field(default=30.0, gt=0, le=3600)  # what a stop waits for its snapshot
    excludes: list[str] = Field(default_factory=lambda: list(DEFAULT_MEMORY_EXCLUDES))
    keep_last: int = Field(default=20, ge=1)
    keep_hourly: int = Field(default=24, ge=0)
    keep_daily: int = Field(default=14, ge=0)
    keep_weekly: int = Field(default=8, ge=0)
    keep_monthly: int = Field(default=12, ge=0)

    @field_validator("excludes", mode="before")
    @classmethod
    def _excludes(cls, value: object) -> object:
        # From the environment (MOLTCONSOLE_MEMORY__EXCLUDES) a list is one string: comma-separated.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if value and not re.match(r"^(s3|r2)://[a-z0-9][a-z0-9.-]{1,62}(/.*)?$", value):
            raise ValueError('expected "" (local only), "s3://bucket/prefix" or "r2://bucket/prefix"')
        return value


class ProviderSettings(Section):
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


class PriceSettings(Section):
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


class BudgetSettings(Section):
    """A spend limit in USD; 0 means no limit."""

    daily_usd: float = Field(default=0.0, ge=0)
    monthly_usd: float = Field(default=0.0, ge=0)


class CloudflareSettings(Section):
    """Import the logs of a Cloudflare AI Gateway into the ledger (off while account_id is empty)."""

    account_id: str = ""
    gateway_id: str = ""
    api_token_env: str = "CLOUDFLARE_API_TOKEN"  # noqa: S105 - the name of a variable
    api_base: str = "https://api.cloudflare.com/client/v4"
    import_interval: float = Field(default=300.0, ge=10)


class GatewaySettings(Section):
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


# What a sandbox of its own does not take from [sandbox]: who it is and where it listens.
NOT_INHERITED = frozenset({"name", "gateway_port"})


def inherit_sandbox(base: Mapping[str, Any], name: str, own: Mapping[str, Any]) -> dict[str, Any]:
    """A sandbox's raw settings: ``base`` (the [sandbox] section) overlaid by its ``own``."""
    inherited = {key: value for key, value in base.items() if key not in NOT_INHERITED}
    return {**inherited, **own, "name": name}


class Settings(ConfigRoot):
    """All of the backend's settings.

    ``sandbox`` is the default sandbox (the only one of a zero-config start); each
    ``[sandboxes.NAME]`` section adds one, taking what it does not set from ``[sandbox]``
    except its name and gateway port (``NOT_INHERITED``). Sandboxes made with ``moltconsole
    create`` live in the backend's registry (``sandbox/registry.py``), not here.
    """

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    sandboxes: dict[str, SandboxSettings] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inherit_sandbox(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("sandboxes"), Mapping):
            return data
        found = data.get("sandbox")
        base: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        own = {
            name: inherit_sandbox(base, str(name), section) if isinstance(section, Mapping) else section
            for name, section in data["sandboxes"].items()
        }
        return {**data, "sandboxes": own}

    @field_validator("sandboxes")
    @classmethod
    def _distinct(cls, value: dict[str, SandboxSettings], info: ValidationInfo) -> dict[str, SandboxSettings]:
        default = info.data.get("sandbox")
        taken: dict[tuple[str, int], str] = {}
        if isinstance(default, SandboxSettings):
            if default.name in value:
                raise ValueError(
                    f"[sandboxes.{default.name}] has the name of the default sandbox ([sandbox] "
                    f"name = {default.name!r}); give one of them another name"
                )
            taken[(default.bind_address, default.gateway_port)] = f"the default sandbox {default.name!r}"
        for name, sb in value.items():
            where = (sb.bind_address, sb.gateway_port)
            if where in taken:
                raise ValueError(
                    f"sandboxes.{name}.gateway_port {sb.gateway_port} is also the port of "
                    f"{taken[where]}; give each sandbox its own gateway_port"
                )
            taken[where] = f"sandbox {name!r}"
        return value

    def for_sandbox(self, sandbox: SandboxSettings) -> Settings:
        """These settings as one sandbox sees them: ``sandbox`` in place of the default."""
        view = self.model_copy(update={"sandbox": sandbox})
        view._source = self._source
        return view

    @classmethod
    def explain(cls, loc: tuple[str, ...], error_type: str) -> str | None:
        """A new provider without ``api``: say what to write."""
        if error_type == "missing" and loc[:2] == ("gateway", "providers") and loc[3:] == ("api",):
            return (
                'a new provider needs its wire protocol: add api = "anthropic" or api = "openai" '
                "(only anthropic and openai are built in and may leave it out)."
            )
        return None

    @property
    def socket_path(self) -> Path:
        """The backend API's unix socket."""
        return self.paths.socket_path

    @property
    def ledger_path(self) -> Path:
        """The AI gateway's SQLite ledger of requests and their cost."""
        return self.paths.data_dir / "ledger.sqlite"

    @property
    def memory_dir(self) -> Path:
        """The local memory repository (snapshots of every sandbox's state)."""
        return self.paths.data_dir / "memory"

    @property
    def keys_path(self) -> Path:
        """The provider keys file (``moltconsole keys``), read by the backend on every change."""
        return self.paths.keys_file or self.paths.data_dir / "keys.env"

    @property
    def sandbox_dir(self) -> Path:
        """The host directory holding this sandbox's state and logs."""
        return self.paths.data_dir / "sandboxes" / self.sandbox.name


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The backend's settings from the config file and the environment; ConfigError names the
    key and its source."""
    return load_config(Settings, path, env)
