"""The config loader both sides use: one TOML file plus ``MOLTCONSOLE_<SECTION>__<KEY>`` variables.

Precedence, lowest first: built-in defaults, the TOML file
(``$XDG_CONFIG_HOME/moltconsole/config.toml`` or ``$MOLTCONSOLE_CONFIG``), environment variables
(``MOLTCONSOLE_SANDBOX__GATEWAY_PORT=18800`` sets ``sandbox.gateway_port``).

The file holds the sections of both sides. Each side loads its own model class
(:class:`ConfigRoot`), which validates only the sections it declares; the other side's sections
(:data:`SECTIONS`) are left to it, and a section nobody owns is an error that names it.

Every validation error names the key and where its value came from, so a user can fix it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

ENV_PREFIX = "MOLTCONSOLE_"
ENV_NESTING = "__"
CONFIG_VARIABLE = "MOLTCONSOLE_CONFIG"

# Every section of the config file, whichever side owns it: the console's, the backend's, and
# the ones both read. A side ignores the sections here that it does not own.
SECTIONS: frozenset[str] = frozenset(
    {"console", "paths", "sandbox", "sandboxes", "logs", "gateway", "memory"}
)

# Keys whose values an error message never shows.
_SECRET_KEYS = ("api_key", "headers", "token", "secret", "password")


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key, where, and what to do."""


class Section(BaseModel):
    """A table of the config file: unknown keys are refused, values never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigRoot(Section):
    """The settings one side reads from the config file; its fields are the sections it owns."""

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file the settings were read from, if there was one."""
        return self._source

    @classmethod
    def explain(cls, loc: tuple[str, ...], error_type: str) -> str | None:
        """A side's own advice for an error at ``loc`` (None: the generic wording)."""
        return None


Root = TypeVar("Root", bound=ConfigRoot)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The TOML file read when none is named."""
    env = os.environ if env is None else env
    if env.get(CONFIG_VARIABLE):
        return Path(env[CONFIG_VARIABLE])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "moltconsole" / "config.toml"


def load_config(model: type[Root], path: Path | None = None, env: Mapping[str, str] | None = None) -> Root:
    """Read, merge and validate ``model``'s sections; raise ConfigError naming the key and source."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(CONFIG_VARIABLE))
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
        raise ConfigError(f"{path}: config file not found. Create it or unset {CONFIG_VARIABLE}.")
    overrides, origin = _env_overrides(env)
    merged = _merge(data, overrides)
    owned = set(model.model_fields)
    # The other side's sections are its business; a name in no side's list stays, to be refused.
    mine = {key: value for key, value in merged.items() if key in owned or key not in SECTIONS}
    try:
        settings = model.model_validate(mine)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, origin, model, frozenset(data))) from None
    settings._source = path if path.exists() else None
    return settings


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Nested overrides from MOLTCONSOLE_SECTION__KEY variables, and which variable set what."""
    values: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_VARIABLE:
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


def _describe(
    exc: ValidationError, path: Path, origin: Mapping[tuple[str, ...], str], model: type[ConfigRoot],
    in_file: frozenset[str],
) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        where = _where(loc, path, origin, in_file)
        if err["type"] == "extra_forbidden" and len(loc) == 1:
            known = ", ".join(f"[{name}]" for name in sorted(SECTIONS))
            lines.append(
                f"  {key} (in {where}): unknown section; the sections are {known}. "
                "Check the spelling or remove it."
            )
            continue
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key} (in {where}): unknown setting. Check the spelling or remove it.")
            continue
        advice = model.explain(loc, err["type"])
        if advice is not None:
            lines.append(f"  {key} (in {where}): {advice}")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            lines.append(f"  {key} (in {where}): {message}; add it.")
            continue
        lines.append(f"  {key} = {_shown(loc, err.get('input'))} (in {where}): {message}")
    return "\n".join(lines)


def _where(
    loc: tuple[str, ...], path: Path, origin: Mapping[tuple[str, ...], str], in_file: frozenset[str]
) -> str:
    """The file or the variable(s) a bad key came from."""
    if loc in origin:
        return f"environment variable {origin[loc]}"
    if len(loc) == 1 and loc[0] not in in_file:  # a whole section that only variables set
        names = sorted(name for key, name in origin.items() if key[0] == loc[0])
        if names:
            return "environment variable " + ", ".join(names)
    return str(path)


def _shown(loc: tuple[str, ...], value: Any) -> str:
    """A bad value as the error message may show it: never a secret, never a whole table."""
    if any(part in _SECRET_KEYS for part in loc):
        return "<hidden>"
    if isinstance(value, Mapping):
        return "{...}"
    return repr(value)
