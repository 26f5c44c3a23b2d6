"""The container's definition: hardened by default, state on host directories.

Pure functions of the settings, so the hardening is reviewable and unit-tested in one place.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from moltconsole_backend.settings import Settings

GATEWAY_PORT = 18789  # inside the container
STATE_MOUNT = "/data/state"
LOGS_MOUNT = "/data/logs"
LABEL_SANDBOX = "moltconsole.sandbox"
LABEL_VERSION = "moltconsole.openclaw_version"
DEFAULT_UID = 1000  # the image's own user, used when the backend runs as root


@dataclass(frozen=True)
class SandboxPaths:
    """Host directories of one sandbox. Only state/ and logs/ are mounted into the container."""

    root: Path

    @property
    def state(self) -> Path:
        """OpenClaw's state directory (config, workspace, SQLite), mounted at /data/state."""
        return self.root / "state"

    @property
    def logs(self) -> Path:
        """OpenClaw's JSON log files, mounted at /data/logs."""
        return self.root / "logs"

    @property
    def secrets(self) -> Path:
        """Tokens the backend keeps for this sandbox; never mounted."""
        return self.root / "secrets"

    @property
    def desired(self) -> Path:
        """Whether the user wants the sandbox running, as earlier versions kept it (read once)."""
        return self.root / "desired"

    @property
    def kept(self) -> Path:
        """What the manager keeps across backend restarts: wanted state, restart count."""
        return self.root / "supervision.json"

    @property
    def events(self) -> Path:
        """The sandbox's event history (JSON lines, bounded)."""
        return self.root / "events.jsonl"

    @property
    def pin(self) -> Path:
        """The OpenClaw version chosen by an explicit rebuild, overriding the config's."""
        return self.root / "openclaw-version"


def container_name(settings: Settings) -> str:
    """The Docker name of the sandbox container."""
    return f"moltconsole-{settings.sandbox.name}"


def container_user() -> tuple[int, int]:
    """The uid:gid the gateway runs as: the backend's own user, or the image's when root."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        return DEFAULT_UID, DEFAULT_UID
    return uid, gid


def read_or_create_token(path: Path) -> str:
    """A random token persisted with owner-only permissions, so it survives backend restarts."""
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    return write_new_token(path)


def write_new_token(path: Path) -> str:
    """A fresh random token, replacing whatever ``path`` held (atomically, mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token


MODEL_TOKEN_FILE = "model-token"  # noqa: S105 - a file name, not a secret


def model_token_path(data_dir: Path, sandbox: str) -> Path:
    """Where a sandbox's gateway token (the agent's only model credential) is kept."""
    return SandboxPaths(data_dir / "sandboxes" / sandbox).secrets / MODEL_TOKEN_FILE


class ModelTokens(Protocol):
    """Hands out the token a sandbox's agent presents to the AI gateway.

    The gateway service is the one owner in a backend: a token it hands out or rotates is
    known to the gateway at once, and a rotated one is refused from then on.
    """

    def token_for(self, sandbox: str) -> str:
        """The sandbox's current token, created on first use."""
        ...

    def rotate(self, sandbox: str) -> str:
        """Replace the sandbox's token; the old one stops working."""
        ...


class FileModelTokens:
    """Tokens kept on disk only, for a manager running without a gateway (tests, tools)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def token_for(self, sandbox: str) -> str:
        """The sandbox's current token, created on first use."""
        return read_or_create_token(model_token_path(self.data_dir, sandbox))

    def rotate(self, sandbox: str) -> str:
        """Replace the sandbox's token on disk."""
        return write_new_token(model_token_path(self.data_dir, sandbox))


def prepare_host_dirs(paths: SandboxPaths) -> None:
    """Create the mounted directories and give them to the container's user. Never deletes."""
    uid, gid = container_user()
    for directory in (paths.root, paths.state, paths.logs):
        directory.mkdir(parents=True, exist_ok=True)
    paths.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.getuid() == 0:
        for directory in (paths.state, paths.logs):
            for current, dirs, files in os.walk(directory):
                for name in (
                    current,
                    *(os.path.join(current, d) for d in dirs),
                    *(os.path.join(current, f) for f in files),
                ):
                    st = os.lstat(name)
                    if st.st_uid != uid or st.st_gid != gid:
                        os.lchown(name, uid, gid)


def create_kwargs(
    settings: Settings, image: str, version: str, paths: SandboxPaths, env: dict[str, str]
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``: the hardened sandbox."""
    sb = settings.sandbox
    uid, gid = container_user()
    return {
        "image": image,
        "name": container_name(settings),
        # A fixed hostname: OpenClaw clears a dead gateway's owner lease in its state database
        # only when the hostname matches; with Docker's random one, a re-created container
        # refuses to start for up to 5 minutes ("Another Gateway owner lease is still active").
        "hostname": f"molt-{sb.name}",
        "labels": {LABEL_SANDBOX: sb.name, LABEL_VERSION: version},
        "environment": env,
        "user": f"{uid}:{gid}",
        "detach": True,
        # Hardening: nothing to escalate to, nothing writable outside the volumes and tmpfs.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m"},
        "mem_limit": sb.memory_limit,
        "memswap_limit": sb.memory_limit,
        "nano_cpus": int(sb.cpus * 1e9),
        "pids_limit": sb.pids_limit,
        # The gateway is reachable from the host's loopback only (or the configured address).
        "ports": {f"{GATEWAY_PORT}/tcp": (sb.bind_address, sb.gateway_port)},
        "extra_hosts": {"host.docker.internal": "host-gateway"},
        "volumes": {
            str(paths.state): {"bind": STATE_MOUNT, "mode": "rw"},
            str(paths.logs): {"bind": LOGS_MOUNT, "mode": "rw"},
        },
        # moltconsole supervises restarts itself (backoff, crash-loop detection).
        "restart_policy": {"Name": "no"},
        "log_config": {"Type": "json-file", "Config": {"max-size": "20m", "max-file": "5"}},
    }


def container_env(settings: Settings, gateway_token: str, model_token: str) -> dict[str, str]:
    """The container's environment. It carries sandbox-scoped tokens only, never provider keys."""
    sb = settings.sandbox
    env = {
        "OPENCLAW_GATEWAY_TOKEN": gateway_token,
        "OPENCLAW_SKIP_CHANNELS": "1",
        "MOLT_HEARTBEAT": sb.heartbeat,
        # The AI gateway listens on the host's Docker bridge; the agent only holds its token,
        # and the gateway swaps in the provider's real key upstream.
        "MOLT_MODEL_BASE_URL": f"http://host.docker.internal:{settings.gateway.port}",
        "MOLT_MODEL_API_KEY": model_token,
    }
    if sb.node_max_old_space_mb:
        env["MOLT_NODE_MAX_OLD_SPACE_MB"] = str(sb.node_max_old_space_mb)
    return env
