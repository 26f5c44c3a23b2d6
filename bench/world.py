"""What the sandbox benchmarks share: a private moltconsole world (its own directories, sandbox
name and ports, a config file), the CLI run against it, and a clean-up that removes the
container and stops the detached backend the CLI started.

    with BenchWorld("blogs") as world:
        world.cli("start")
        ... world.container, world.socket_path, world.gateway_port ...
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class BenchWorld:
    """A temporary root with a config naming sandbox ``<prefix><n>`` on free ports."""

    def __init__(self, prefix: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mc-bench-", dir="/tmp"))
        self.name = f"{prefix}{int(time.time()) % 100000}"
        self.gateway_port = free_port()
        self.config = self.root / "config.toml"
        self.config.write_text(
            f'[sandbox]\nname = "{self.name}"\ngateway_port = {self.gateway_port}\n'
            f'[paths]\ndata_dir = "{self.root}/data"\nruntime_dir = "{self.root}/run"\n'
            f"[gateway]\nport = {free_port()}\n"
        )

    @property
    def container(self) -> str:
        return f"moltconsole-{self.name}"

    @property
    def socket_path(self) -> Path:
        return self.root / "run" / "backend.sock"

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """``moltconsole --config <ours> ARGS``; with ``check``, a failure raises naming the verb."""
        result = subprocess.run(
            [sys.executable, "-m", "moltconsole", "--config", str(self.config), *args],
            capture_output=True, text=True, check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"moltconsole {args[0]} failed: {result.stdout}{result.stderr}")
        return result

    def __enter__(self) -> BenchWorld:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, check=False)
        lock = self.root / "run" / "backend.lock"
        if lock.exists() and lock.read_text().strip():
            subprocess.run(["kill", lock.read_text().strip()], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
