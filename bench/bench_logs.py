"""Log pipeline throughput, next to its yardstick measured in the same run.

A freshly started sandbox's gateway gets N lines written to its stdout as fast as ``seq`` can produce
them (``docker exec ... seq -f MARK-%g 1 N > /proc/1/fd/1``), measured twice:
   yardstick: ``docker logs -f --since <start>`` read into a counter that discards the lines;
   ours:      a client subscribed to /v1/logs of a detached backend (its own process), from
              the container through the collector, the spool and the WebSocket; every record
              is decoded by the client and counted: received must equal written, none dropped.
Target: ours >= 50,000 lines/s with no loss.

``--shape openclaw`` writes the lines as OpenClaw's console prints them (``<time> [bench]
O-1``): each then waits in the collector for the log file's record of the same event, which
never comes, so this measures the merger's slow path (``logs.twin_wait``, bounded memory)
rather than its fast one.

Usage: .venv/bin/python bench/bench_logs.py [--lines N] [--shape plain|openclaw]
Uses its own sandbox name, port and directories; removes its container at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

from moltconsole.client import BackendClient

sys.path.insert(0, str(Path(__file__).parent))
from world import BenchWorld

PREFIX = ""  # set by --shape: what each line starts with before its mark


def write_lines(container: str, mark: str, count: int) -> None:
    subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"seq -f '{PREFIX}{mark}-%.0f' 1 {count} > /proc/1/fd/1"],
        check=True,
        capture_output=True,
    )


def yardstick(container: str, count: int) -> float:
    """Seconds from starting the writer until ``docker logs -f`` has delivered the last line."""
    last = f"{PREFIX}Y-{count}\n".encode()
    since = f"{time.time() - 1:.3f}"
    reader = subprocess.Popen(
        ["docker", "logs", "-f", "--since", since, container],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert isinstance(reader.stdout, io.BufferedReader)  # read1: whatever the pipe has
    time.sleep(0.5)  # let `docker logs` attach before the first line is written
    started = time.perf_counter()
    writer = threading.Thread(target=write_lines, args=(container, "Y", count))
    writer.start()
    tail = b""
    try:
        while True:
            chunk = reader.stdout.read1(1 << 20)
            if not chunk:
                raise RuntimeError("docker logs ended before the last line")
            tail = (tail + chunk)[-64:]
            if last in tail:
                return time.perf_counter() - started
    finally:
        reader.kill()
        reader.wait()
        writer.join()


async def wait_collected(socket_path: Path, line: str, timeout: float = 300.0) -> None:
    """Wait until the backend has collected ``line`` (it follows the yardstick's lines too)."""
    async with BackendClient(socket_path) as client:

        async def follow() -> None:
            async for message in client.logs(tail=1000, follow=True, grep=f"^{line}$"):
                if message.get("records"):
                    return

        await asyncio.wait_for(follow(), timeout)


async def ours(socket_path: Path, container: str, count: int) -> tuple[float, int, int]:
    """Seconds until the client has the last line, lines received, lines reported dropped."""
    mark = "O-"
    last = f"O-{count}"
    received = dropped = 0
    async with BackendClient(socket_path) as client:
        stream = client.logs(tail=0, follow=True)
        first = await anext(stream)  # the (empty) history: subscribed before writing
        assert first["type"] in ("caught_up", "batch")
        started = time.perf_counter()
        writer = asyncio.create_task(asyncio.to_thread(write_lines, container, "O", count))
        try:
            async for message in stream:
                dropped += message.get("dropped", 0)
                records = message.get("records", [])
                received += sum(1 for r in records if r["message"].startswith(mark))
                if any(r["message"] == last for r in records):
                    return time.perf_counter() - started, received, dropped
            raise RuntimeError("the log stream ended before the last line")
        finally:
            await writer
            await stream.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lines",
        type=int,
        default=200_000,
        help="lines per run; keep N x 80 bytes under Docker's 20 MB log file",
    )
    parser.add_argument(
        "--shape",
        choices=("plain", "openclaw"),
        default="plain",
        help="plain lines, or lines shaped like OpenClaw's console (they wait for a twin)",
    )
    args = parser.parse_args()
    global PREFIX
    PREFIX = "2026-12-03T06:52:24.106+00:00 [bench] " if args.shape == "openclaw" else ""
    with BenchWorld("blogs") as world:
        container = world.container
        print(f"starting sandbox {container} ...", flush=True)
        world.cli("start", check=True)  # creates the container and the detached backend
        n = args.lines
        yard = yardstick(container, n)
        print(f"  yardstick: {n} lines in {yard:.2f}s", flush=True)
        asyncio.run(wait_collected(world.socket_path, f"Y-{n}"))
        # A fresh container, so neither run crosses a rotation of Docker's json-file log:
        # Docker 20.10 loses and repeats lines for followers at rotation (see README).
        world.cli("destroy", "--yes", check=True)
        world.cli("start", check=True)
        elapsed, received, dropped = asyncio.run(ours(world.socket_path, container, n))
        print(f"  ours:      {received} lines in {elapsed:.2f}s, dropped {dropped}", flush=True)
        rate_y, rate_o = n / yard, received / elapsed
        ok = received == n and dropped == 0
        print()
        print("| measure | yardstick (`docker logs -f` > counter) | moltconsole (/v1/logs client) | target |")
        print("|---|---|---|---|")
        print(
            f"| {n:,} lines, container to reader | {rate_y:,.0f} lines/s ({yard:.2f} s) | "
            f"{rate_o:,.0f} lines/s ({elapsed:.2f} s), {received:,} received, {dropped} dropped "
            f"| >= 50,000 lines/s, no loss: {'met' if ok and rate_o >= 50_000 else 'MISSED'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
