"""Provider keys: the file ``moltconsole keys`` keeps them in, and where the gateway finds them.

A backend used to know only the keys of the shell that started it, so a backend started by the
console from a keyless shell answered every model call with a 502. Keys now have a home that
does not depend on who starts the backend: the keys file (``<data_dir>/keys.env`` or
``paths.keys_file``), owner-only (mode 0600), written by ``moltconsole keys set``.

The file is in the syntax of systemd's ``EnvironmentFile=`` (``NAME=value`` lines, ``#`` and
``;`` comments, single or double quotes, backslash escapes), so a unit can point at the same
file. A file that group or others can access, or that belongs to someone else, is refused.

The gateway looks a key up on every request in ``KeyEnvironment``: the file first, then the
backend's own environment. The file wins because it is where ``keys set`` writes, the user's
latest word; a stale key in the environment of whoever started the backend must not shadow it.
The file is re-read whenever its inode, size, mtime or mode change, so ``keys set`` needs no
restart: the gateway looks at the file at most every ``RECHECK_S`` on its hot path, and at once
whenever the backend is asked about its keys (``moltconsole keys set`` asks right after writing).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from moltconsole_backend.settings import GatewaySettings, ProviderSettings
from moltconsole_shared.files import write_atomically
from moltconsole_shared.wire.status import MissingKey

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Values written without quotes: what API keys and tokens are made of.
_BARE_RE = re.compile(r"^[A-Za-z0-9_.,:/+=@%~^-]+$")
# The public kind of a key ("sk-", "sk-ant-", "sk-proj-"), shown in hints; never its secret part.
_KIND_RE = re.compile(r"^(?:[a-z]{2,5}-){1,2}")
_WHITESPACE = " \t\r"
_COMMENTS = "#;"
HINT_MIN_LENGTH = 20  # shorter values show none of their characters
# How stale the gateway's view of the keys file may be: a stat per lookup would cost the request
# path a system call per key (several per request) for a file that changes a few times a year.
RECHECK_S = 0.5

Source = Literal["file", "environment"]


class KeysFileError(Exception):
    """The keys file cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    value: str
    start: int  # offset of the assignment's first character in the text
    end: int  # offset just past its terminating newline (or the end of the text)


def valid_name(name: str) -> bool:
    """Whether ``name`` can be an environment variable in the file (and in systemd)."""
    return bool(NAME_RE.match(name))


def _entries(text: str) -> list[_Entry]:
    """The assignments in ``text``, parsed the way systemd parses an ``EnvironmentFile=``.

    A state machine over characters, as systemd's own parser is: values may span lines inside
    quotes or after a trailing backslash, so a line-by-line split would misread them.
    """
    entries: list[_Entry] = []
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    keep = 0  # length of ``value`` up to its last character that is not unquoted whitespace
    start = 0

    def finish(end: int) -> None:
        name = "".join(key).rstrip(_WHITESPACE)
        if valid_name(name):
            entries.append(_Entry(name, "".join(value[:keep]), start, end))

    for i, c in enumerate(text):
        if state == "pre_key":
            if c in _COMMENTS:
                state = "comment"
            elif c not in _WHITESPACE and c != "\n":
                state, key, value, keep, start = "key", [c], [], 0, i
        elif state == "key":
            if c == "\n":
                state = "pre_key"  # no "=": ignored, as systemd does
            elif c == "=":
                state = "pre_value"
            else:
                key.append(c)
        elif state == "pre_value" or state == "value":
            if c == "\n":
                finish(i + 1)
                state = "pre_key"
            elif c == "'" and state == "pre_value":
                state = "single"
            elif c == '"' and state == "pre_value":
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c in _WHITESPACE and state == "pre_value":
                pass
            else:
                value.append(c)
                state = "value"
                if c not in _WHITESPACE:
                    keep = len(value)
        elif state == "value_escape":
            if c != "\n":  # a backslash-newline continues the line
                value.append(c)
                keep = len(value)
            state = "value"
        elif state == "single":
            if c == "'":
                state, keep = "pre_value", len(value)
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state, keep = "pre_value", len(value)
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            if c in '"\\`$':
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
            state = "double"
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c == "\n":
                state = "pre_key"
        elif state == "comment_escape":
            state = "comment"
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        if state in ("single", "double", "double_escape"):
            keep = len(value)  # an unterminated quote runs to the end, as in systemd
        finish(len(text))
    return entries


def parse(text: str) -> dict[str, str]:
    """``NAME=value`` assignments of an env file; a later one of the same name wins."""
    return {entry.name: entry.value for entry in _entries(text)}


def format_assignment(name: str, value: str) -> str:
    """One ``NAME=value`` line that systemd and ``parse`` both read back as ``value``."""
    if not valid_name(name):
        raise KeysFileError(
            f"{name!r} is not a variable name: use letters, digits and _, not starting with a digit"
        )
    if not value:
        raise KeysFileError(f"no value given for {name}: nothing was written")
    if "\0" in value:
        raise KeysFileError(f"the value for {name} contains a NUL character, which no env file can hold")
    if _BARE_RE.match(value):
        return f"{name}={value}\n"
    if "'" not in value:
        return f"{name}='{value}'\n"
    escaped = re.sub(r'(["\\`$])', r"\\\1", value)
    return f'{name}="{escaped}"\n'


def hint(value: str) -> str:
    """A masked reminder of which key this is: its public kind and at most its last 4 characters.

    ``sk-ant-api03-...a1b2`` shows as ``sk-ant-…a1b2``; a value shorter than 20 characters
    shows none of its characters, since a few of them would be a good part of the secret.
    """
    if len(value) < HINT_MIN_LENGTH:
        return "…"
    match = _KIND_RE.match(value)
    kind = match.group(0) if match else ""
    return f"{kind}…{value[-4:]}"


# --- the file -------------------------------------------------------------------------------
def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeysFileError(f"the keys file {path} is not a regular file; remove it or set paths.keys_file")
    if info.st_uid != os.geteuid():
        raise KeysFileError(
            f"refusing to read the keys file {path}: it belongs to uid {info.st_uid}, not to you "
            f"(uid {os.geteuid()}). Give it to yourself (chown) or set paths.keys_file."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeysFileError(
            f"refusing to read the keys file {path}: its mode is {mode:04o}, so other users can "
            f"read or change it. Run: chmod 600 {path} (and replace the keys in it if someone "
            "else may have read them)."
        )


def read_text(path: Path) -> str | None:
    """The file's text after checking it is private to its owner; None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeysFileError(f"cannot open the keys file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        _check_private(path, os.fstat(fh.fileno()))
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeysFileError(f"the keys file {path} is not UTF-8 text; fix or remove it") from None


def read_keys(path: Path) -> dict[str, str]:
    """The keys in the file (empty when there is none); KeysFileError if it may not be read."""
    text = read_text(path)
    return {} if text is None else parse(text)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise writers (two ``keys set`` at once must not lose one)."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 from the first byte."""
    write_atomically(path, text.encode("utf-8"))


def _edit(path: Path, name: str, line: str | None) -> bool:
    """Replace every assignment of ``name`` by ``line`` (None: remove them), keeping the rest of
    the file (comments, other keys) as it was. Returns whether ``name`` was in the file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(path):
        text = read_text(path) or ""
        found = [e for e in _entries(text) if e.name == name]
        out, at = [], 0
        for n, entry in enumerate(found):
            out.append(text[at:entry.start])
            if line is not None and n == len(found) - 1:
                out.append(line)
            at = entry.end
        out.append(text[at:])
        new = "".join(out)
        if line is not None and not found:
            new += ("" if not new or new.endswith("\n") else "\n") + line
        if found or line is not None:
            _replace(path, new)
        return bool(found)


def set_key(path: Path, name: str, value: str) -> bool:
    """Store ``name=value`` in the keys file; True if it replaced an earlier value."""
    return _edit(path, name, format_assignment(name, value))


def remove_key(path: Path, name: str) -> bool:
    """Remove ``name`` from the keys file; False if it was not there."""
    if not valid_name(name):
        raise KeysFileError(f"{name!r} is not a variable name")
    if not path.exists():
        return False
    return _edit(path, name, None)


# --- what the gateway reads -----------------------------------------------------------------
class KeyEnvironment(Mapping[str, str]):
    """The keys file over the backend's environment, as one live read-only mapping.

    A lookup checks the file's identity (one ``stat``) when the last check is more than
    ``recheck_every`` seconds old, and re-reads the file when it changed; ``refresh`` checks at
    once, and so do the methods that report on the file (``source``, ``file_error``,
    ``file_names``). A file that may not be read (mode, owner, encoding) counts as empty and
    ``file_error`` says why; the error is logged once per version of the file. An empty value in
    the file counts as not set.
    """

    def __init__(
        self, path: Path, environ: Mapping[str, str] | None = None, *, recheck_every: float = RECHECK_S,
    ) -> None:
        self.path = path
        self._environ = os.environ if environ is None else environ
        self._recheck_every = recheck_every
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int, int] | None = None
        self._checked_until = float("-inf")
        self._values: dict[str, str] = {}
        self._error = ""

    def refresh(self) -> None:
        """Look at the file now (re-read it if it changed)."""
        self._file(fresh=True)

    def _file(self, *, fresh: bool = False) -> dict[str, str]:
        now = time.monotonic()
        if not fresh and now < self._checked_until:
            return self._values
        self._checked_until = now + self._recheck_every
        try:
            info = os.stat(self.path)
            signature = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
        except FileNotFoundError:
            signature = None
        except OSError as exc:
            signature = (-1, -1, -1, exc.errno or 0)
        if signature == self._signature:
            return self._values
        with self._lock:
            if signature != self._signature:
                self._reload(signature)
        return self._values

    def _reload(self, signature: tuple[int, int, int, int] | None) -> None:
        values: dict[str, str] = {}
        error = ""
        if signature is not None:
            try:
                values = {k: v for k, v in read_keys(self.path).items() if v}
            except KeysFileError as exc:
                error = str(exc)
                log.error("%s", error)
            else:
                log.info("read %d key(s) from %s", len(values), self.path)
        self._values, self._error, self._signature = values, error, signature

    @property
    def file_error(self) -> str:
        """Why the keys file is not used ("" when it is, or when there is none)."""
        self._file(fresh=True)
        return self._error

    def source(self, name: str) -> Source | None:
        """Where ``name`` comes from: the file, the backend's environment, or nowhere."""
        if self._file(fresh=True).get(name):
            return "file"
        if self._environ.get(name):
            return "environment"
        return None

    def in_environment(self, name: str) -> bool:
        """Whether the backend's own environment has ``name`` (shadowed or not)."""
        return bool(self._environ.get(name))

    def file_names(self) -> list[str]:
        """The names the keys file holds."""
        return list(self._file(fresh=True))

    def __getitem__(self, name: str) -> str:
        value = self._file().get(name)
        if value:
            return value
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        file = self._file()
        yield from file
        yield from (name for name in self._environ if name not in file)

    def __len__(self) -> int:
        file = self._file()
        return len(file) + sum(1 for name in self._environ if name not in file)


# --- which providers lack a key -------------------------------------------------------------
def providers_in_use(gw: GatewaySettings) -> list[str]:
    """Providers the agent's requests can reach, in the order worth reporting them.

    The sandbox's OpenClaw has one model provider, ``molt``, which speaks Anthropic Messages:
    its calls go to ``default_anthropic``. Also in use: every provider the configuration names
    (a section of its own), an explicitly chosen ``default_openai``, and the providers named by
    fallbacks. A built-in provider nobody chose (``openai`` for an Anthropic-only user) is not:
    warning about its key forever would be noise.
    """
    names = [gw.default_anthropic]
    if "default_openai" in gw.model_fields_set:
        names.append(gw.default_openai)
    names += sorted(gw.named_providers)
    for spec in [m for targets in gw.fallbacks.values() for m in targets] + [gw.budget_fallback_model]:
        provider, sep, _ = spec.partition("/")
        if sep:
            names.append(provider)
    return [name for name in dict.fromkeys(names) if name in gw.providers]


def set_command(variable: str) -> str:
    """The command that stores ``variable`` in the keys file."""
    return f"moltconsole keys set {variable}"


def provider_gaps(name: str, provider: ProviderSettings, env: Mapping[str, str]) -> list[MissingKey]:
    """What ``provider`` lacks to authenticate upstream, mirroring what the gateway sends.

    A provider with ``headers`` (e.g. a Cloudflare AI Gateway holding the real key) may go
    without a key of its own, but each ``env:NAME`` header value must be set.
    """
    gaps: list[MissingKey] = []
    if provider.headers:
        for header, value in provider.headers.items():
            variable = value[4:] if value.startswith("env:") else ""
            if variable and not env.get(variable):
                gaps.append(MissingKey(
                    name, variable, set_command(variable),
                    f"provider {name} has no value for its {header} header: {variable} is not "
                    f"set. Set it with: {set_command(variable)}",
                ))
        return gaps
    if provider.api_key or (provider.api_key_env and env.get(provider.api_key_env)):
        return gaps
    if not provider.api_key_env:
        return [MissingKey(
            name, "", "",
            f"provider {name} has no key and names no variable for one: set "
            f"gateway.providers.{name}.api_key_env in the config, then moltconsole keys set NAME",
        )]
    variable = provider.api_key_env
    return [MissingKey(
        name, variable, set_command(variable),
        f"provider {name} has no key ({variable}): the agent's calls to it fail. "
        f"Set it with: {set_command(variable)}",
    )]


def missing_keys(gw: GatewaySettings, env: Mapping[str, str]) -> list[MissingKey]:
    """Every credential the providers in use lack, one entry per variable to set."""
    out: list[MissingKey] = []
    for name in providers_in_use(gw):
        out += provider_gaps(name, gw.providers[name], env)
    return out


def referenced_variables(gw: GatewaySettings) -> dict[str, list[str]]:
    """Variable name -> the providers (or importer) that read it, for ``moltconsole keys ls``."""
    out: dict[str, list[str]] = {}
    for name, provider in gw.providers.items():
        if provider.api_key_env:
            out.setdefault(provider.api_key_env, []).append(name)
        for value in provider.headers.values():
            if value.startswith("env:"):
                out.setdefault(value[4:], []).append(name)
    if gw.cloudflare.account_id and gw.cloudflare.api_token_env:
        out.setdefault(gw.cloudflare.api_token_env, []).append("cloudflare import")
    return out


def key_rows(gw: GatewaySettings, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """``moltconsole keys ls``: every variable the configuration reads and every name in the
    keys file, with ``source`` (``file``, ``environment`` or None), a masked ``hint``, what
    reads it (``used_by``) and whether a file value overrides one in the environment
    (``shadowed``). Never a value."""
    live = env if isinstance(env, KeyEnvironment) else None
    if live is not None:
        live.refresh()
    used_by = referenced_variables(gw)
    names = list(used_by) + [n for n in (live.file_names() if live else []) if n not in used_by]
    rows = []
    for name in names:
        value = env.get(name, "")
        source: Source | None = live.source(name) if live else ("environment" if value else None)
        rows.append({
            "name": name,
            "source": source,
            "hint": hint(value) if value else "",
            "used_by": used_by.get(name, []),
            "shadowed": bool(live and source == "file" and live.in_environment(name)),
        })
    return rows
