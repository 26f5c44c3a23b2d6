"""What the sandbox's memory figure is made of: the real OpenClaw image, real agent turns.

A backend (in this process) runs a fresh sandbox whose model calls go through the AI gateway to
the fake Anthropic provider (real SSE over HTTP, no paid API). The script then samples the
container's memory every half second while it idles, while it runs ``--turns`` agent turns
(``openclaw agent`` inside the container, as a user's message would) and while it answers
``--device-polls`` pairing-list calls (what the Dashboard does every 30 s), and prints for each
phase: Docker's raw ``memory_stats`` (usage, and in ``stats`` the cache and anonymous figures),
what the Docker CLI shows (usage minus inactive_file), and the working set moltconsole shows
(usage minus all file-backed page cache). The peak is the highest sample of each figure. At the
end it prints the sandbox's event history: with a small ``--memory-limit`` it shows the memory
warning, the kill (exit 137) and the restart as the Dashboard does.

Usage: .venv/bin/python bench/bench_sandbox_memory.py [--turns N] [--idle S] [--device-polls N]
       [--memory-limit SIZE]
Uses its own sandbox name, ports and directories; removes its container at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_backend.sandbox.stats import compute_sample
from moltconsole_backend.settings import GatewaySettings, ProviderSettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake provider the tests use, run as a script from anywhere
from tests.support.fake_llm import FakeServer, Reply  # noqa: E402

MIB = 2**20
KEY = "sk-ant-bench-memory-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Phase:
    """The samples of one phase: raw documents and the figures derived from them."""

    name: str
    raws: list[dict[str, Any]] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)  # the largest RSS seen per command

    def figures(self) -> list[dict[str, int]]:
        rows = []
        for raw in self.raws:
            mem = raw.get("memory_stats") or {}
            stats = mem.get("stats") or {}
            usage = int(mem.get("usage", 0))
            inactive = int(stats.get("total_inactive_file", stats.get("inactive_file", 0)))
            sample = compute_sample(raw)
            rows.append({
                "usage": usage,
                "docker_cli": usage - inactive if inactive < usage else usage,
                "shown": sample.memory_bytes,
                "wset": usage - int(stats.get("total_active_file", stats.get("active_file", 0))) - inactive,
                "rss": int(stats.get("total_rss", stats.get("anon", 0))),
                "file": int(stats.get("total_cache", stats.get("file", 0))),
                "active_file": int(stats.get("total_active_file", stats.get("active_file", 0))),
                "inactive_file": inactive,
            })
        return rows


def report(phase: Phase) -> None:
    rows = phase.figures()
    if not rows:
        print(f"{phase.name}: no samples")
        return
    last = rows[-1]
    peak = {key: max(r[key] for r in rows) for key in last}
    cols = ("usage", "docker_cli", "shown", "wset", "rss", "file", "active_file", "inactive_file")
    print(f"{phase.name} ({len(rows)} samples)")
    print("  last: " + ", ".join(f"{k} {last[k] / MIB:,.0f}" for k in cols) + " MiB")
    print("  peak: " + ", ".join(f"{k} {peak[k] / MIB:,.0f}" for k in cols) + " MiB")
    biggest = sorted(phase.peak_rss.items(), key=lambda item: -item[1])[:4]
    print("  largest processes (peak RSS): " + "; ".join(f"{cmd} {rss / MIB:,.0f}" for cmd, rss in biggest))


async def sample_into(
    client: docker.DockerClient, container_id: str, phase: list[Phase], stop: asyncio.Event
) -> None:
    """One stats document every 0.5 s into the current phase."""
    while not stop.is_set():
        raw = await asyncio.to_thread(client.api.stats, container_id, stream=False)
        phase[0].raws.append(raw)
        container = client.containers.get(container_id)
        with contextlib.suppress(docker.errors.APIError):
            top = await asyncio.to_thread(container.top, ps_args="-o pid,rss,args")
            for _pid, rss, *args in top["Processes"]:
                command = " ".join(args)[:60]
                kib = int(rss) if str(rss).isdigit() else 0
                peak = phase[0].peak_rss
                peak[command] = max(peak.get(command, 0), kib * 1024)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run(turns: int, idle: float, device_polls: int, memory_limit: str, cache_dir: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="mc-mem-", dir="/tmp"))
    docker_client = docker.from_env(timeout=120)
    name = f"mem{uuid.uuid4().hex[:8]}"
    async with FakeServer() as fake:
        fake.provider.default = Reply(text="Memory bench: this turn went through. " * 20, chunks=16)
        settings = Settings(
            sandbox=SandboxSettings(name=name, gateway_port=free_port(), memory_limit=memory_limit),
            gateway=GatewaySettings(
                port=free_port(), retry_backoff=0.0,
                providers={"anthropic": ProviderSettings(api="anthropic", base_url=fake.url, api_key=KEY)},
            ),
            paths=PathSettings(data_dir=root / "data", cache_dir=cache_dir, runtime_dir=root / "run"),
        )
        try:
            async with BackendService(settings) as service, BackendClient(service.socket_path) as client:
                started = time.monotonic()
                status = await client.action("start")
                print(f"started in {time.monotonic() - started:.1f}s: {status['state']}")
                await service.manager.wait_for(lambda s: s.state.value == "ready", timeout=180)
                container = docker_client.containers.get(f"moltconsole-{name}")
                phase = [Phase("idle after ready")]
                stop = asyncio.Event()
                sampler = asyncio.ensure_future(sample_into(docker_client, str(container.id), phase, stop))
                phases = [phase[0]]
                await asyncio.sleep(idle)
                for turn in range(1, turns + 1):
                    phase[0] = Phase(f"agent turn {turn}")
                    phases.append(phase[0])
                    began = time.monotonic()
                    try:
                        code, output = await asyncio.to_thread(
                            container.exec_run,
                            ["openclaw", "agent", "--agent", "main", "-m", f"Turn {turn}: say hello",
                             "--json"],
                        )
                    except docker.errors.APIError as exc:  # the gateway was killed: no exec
                        code, output = -1, str(exc).encode()
                    container.reload()
                    oom = container.attrs["State"].get("OOMKilled")
                    print(f"turn {turn}: exit {code} in {time.monotonic() - began:.1f}s"
                          + (" (the container was OOM-killed)" if oom else ""))
                    if code != 0:
                        text = output if isinstance(output, bytes) else b"".join(output)
                        print(text.decode(errors="replace")[-500:])
                        await service.manager.wait_for(lambda s: s.state.value == "ready", timeout=180)
                phase[0] = Phase(f"idle {idle:.0f}s after the turns")
                phases.append(phase[0])
                await asyncio.sleep(idle)
                if device_polls:
                    phase[0] = Phase(f"{device_polls} pairing-list calls")
                    phases.append(phase[0])
                    for _ in range(device_polls):
                        await client.devices()
                    phase[0] = Phase(f"idle {idle:.0f}s after the pairing calls")
                    phases.append(phase[0])
                    await asyncio.sleep(idle)
                stop.set()
                await sampler
                status = await client.status()
                print(f"restarts after a crash: {status['restarts']}")
                print("the sandbox's history (what the Dashboard's events panel shows):")
                for event in service.manager.history.last():
                    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
                    print(f"  {stamp} {event.level:7} {event.describe()}")
                print(f"memory limit {memory_limit}; figures in MiB; 'shown' is what moltconsole shows")
                for each in phases:
                    report(each)
                last = phases[-1].raws[-1]
                print("raw memory_stats of the last sample:")
                print(json.dumps(last.get("memory_stats"), indent=1, sort_keys=True))
                await client.action("destroy")
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(f"moltconsole-{name}").remove(force=True)
            docker_client.close()
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle sampling per idle phase")
    parser.add_argument("--device-polls", type=int, default=3)
    parser.add_argument("--memory-limit", default="2g")
    args = parser.parse_args()
    cache_dir = Path("~/.cache/moltconsole").expanduser()  # the prepared image inputs, shared
    asyncio.run(run(args.turns, args.idle, args.device_polls, args.memory_limit, cache_dir))


if __name__ == "__main__":
    main()
