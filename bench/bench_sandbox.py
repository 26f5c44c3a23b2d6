"""Sandbox benchmarks, each printed next to its yardstick measured in the same run.

1. Start to ready from a stopped container:
   yardstick: ``docker start`` (the CLI) then polling ``/readyz`` by hand every 50 ms;
   ours:      ``moltconsole start`` (the CLI, through the running backend) until it exits ready.
   Target: ours within 0.5 s of the yardstick.
2. ``status`` round trip through the API (client already started; excludes Python start-up).
   Target: p50 under 5 ms. The whole ``moltconsole status`` command is shown for reference.

Usage: .venv/bin/python bench/bench_sandbox.py [--rounds N]
Uses its own sandbox name, port and directories; removes its container at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from moltconsole.client import BackendClient

sys.path.insert(0, str(Path(__file__).parent))
from world import BenchWorld, pct

READYZ_POLL = 0.05


def wait_ready_by_hand(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(READYZ_POLL)
    raise TimeoutError("gateway not ready")


def yardstick_start(container: str, port: int) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "start", container], check=True, capture_output=True)
    wait_ready_by_hand(port)
    return time.perf_counter() - started


def ours_start(world: BenchWorld) -> float:
    started = time.perf_counter()
    world.cli("start", check=True)
    return time.perf_counter() - started


def stop(world: BenchWorld) -> None:
    world.cli("stop", check=True)


async def status_round_trips(socket_path: Path, count: int) -> list[float]:
    async with BackendClient(socket_path) as client:
        await client.status()  # connection set up outside the measurement
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            await client.status()
            samples.append(time.perf_counter() - t0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="start rounds per side (default 3)")
    parser.add_argument("--status-calls", type=int, default=2000)
    args = parser.parse_args()

    with BenchWorld("bench") as world:
        container, port = world.container, world.gateway_port
        print(f"preparing sandbox {container} on port {port} ...", flush=True)
        ours_start(world)  # creates the container and the detached backend
        stop(world)

        ours, yard = [], []
        for i in range(args.rounds):
            # Alternate the order so neither side always runs on a warmer machine.
            if i % 2 == 0:
                yard.append(yardstick_start(container, port))
                stop(world)
                ours.append(ours_start(world))
                stop(world)
            else:
                ours.append(ours_start(world))
                stop(world)
                yard.append(yardstick_start(container, port))
                stop(world)
            print(
                f"  round {i + 1}: docker start + /readyz {yard[-1]:.2f}s   "
                f"moltconsole start {ours[-1]:.2f}s",
                flush=True,
            )

        rtt = asyncio.run(status_round_trips(world.socket_path, args.status_calls))
        cli_runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            world.cli("status")
            cli_runs.append(time.perf_counter() - t0)

        med_y, med_o = statistics.median(yard), statistics.median(ours)
        print()
        print("| measure | yardstick | moltconsole | target |")
        print("|---|---|---|---|")
        print(
            f"| stopped -> ready (median of {args.rounds}) | {med_y:.2f} s (docker start + "
            f"polling /readyz) | {med_o:.2f} s (moltconsole start) | within 0.5 s: "
            f"{'met' if med_o - med_y <= 0.5 else 'MISSED'} ({med_o - med_y:+.2f} s) |"
        )
        print(
            f"| status round trip, {len(rtt)} calls | - | p50 {pct(rtt, 0.5) * 1e3:.2f} ms, "
            f"p99 {pct(rtt, 0.99) * 1e3:.2f} ms | p50 < 5 ms: "
            f"{'met' if pct(rtt, 0.5) < 0.005 else 'MISSED'} |"
        )
        print(
            f"| `moltconsole status` whole command (with Python start-up) | - | "
            f"median {statistics.median(cli_runs) * 1e3:.0f} ms | reference |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
