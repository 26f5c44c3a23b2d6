"""Five sandboxes on one backend (issue 10 section 4), each figure next to its yardstick from the same run.

One backend (``moltconsole serve``, its own process, directories and ports) supervises five real
OpenClaw sandboxes: the default one (``bf1``, from the environment) and four made with
``POST /v1/sandboxes`` (``bf2``..``bf5``). Then:

1. Status of all in one call: ``GET /v1/sandboxes`` (``client.sandboxes()``: every sandbox's
   status, newest stats sample and today's spend), timed ``--calls`` times;
   yardstick: ``GET /v1/status`` of one sandbox (``client.status()``), alternated with it in
   blocks of 50 so both see the same machine. Each also timed as a bare HTTP request (no client
   checks) to show what the client's schema check adds. Target: p50 under 5 ms.
2. Log streams while a sixth starts: five followers of ``/v1/sandboxes/NAME/logs`` (one client
   each, in this process); ``--lines`` lines are written into each of the five containers'
   stdout at once (``docker exec ... seq > /proc/1/fd/1``, as bench_logs.py does), and the rate
   is the lines received in total over the time until every follower has its last line, none
   lost. Yardsticks: five ``docker logs -f`` read into counters (Docker's own ceiling here), and
   our five streams with nothing else going on; then our five again, written at the moment a
   sixth sandbox (``bf6``) is created and started (its start lasts until it is ready, which the
   output checks the lines came within). Target: >= 50,000 lines/s in total while the sixth
   starts, no loss.

Each sandbox is started and awaited until ready (a start answers once its container runs),
then the five are left to idle (newest CPU sample under 10% of a core) before measuring.

Usage: .venv/bin/python bench/bench_sandboxes.py [--calls N] [--lines N]
Directories under /tmp/bench-fleet; AI gateway on port 18990, sandbox gateways on 18991-18996;
every container it starts (moltconsole-bf1..bf6) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from moltconsole.client import BackendClient

ROOT = Path("/tmp/bench-fleet")
GATEWAY_PORT = 18990
FIRST_SANDBOX_PORT = 18991
NAMES = [f"bf{i}" for i in range(1, 6)]  # bf1 is the backend's default sandbox
SIXTH = "bf6"
JSON_LINE_BYTES = 80  # one short line in Docker's json-file log, about
DOCKER_LOG_FILE = 20_000_000  # the sandbox's json-file max-size; see bench_logs.py and the README
BLOCK = 50


def container(name: str) -> str:
    return f"moltconsole-{name}"


def backend_env() -> dict[str, str]:
    return {
        **os.environ,
        "MOLTCONSOLE_PATHS__DATA_DIR": str(ROOT / "data"),
        "MOLTCONSOLE_PATHS__RUNTIME_DIR": str(ROOT / "run"),
        "MOLTCONSOLE_GATEWAY__PORT": str(GATEWAY_PORT),
        "MOLTCONSOLE_SANDBOX__NAME": NAMES[0],
        "MOLTCONSOLE_SANDBOX__GATEWAY_PORT": str(FIRST_SANDBOX_PORT),
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def remove_containers() -> None:
    names = [container(n) for n in [*NAMES, SIXTH]]
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False)


async def wait_backend(socket_path: Path, backend: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the backend answers /v1/health (it is a separate process that takes a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend.poll() is not None:
            raise RuntimeError(f"the backend exited ({backend.returncode}); see {ROOT / 'backend.log'}")
        if await asyncio.to_thread(socket_path.exists):
            async with BackendClient(socket_path, timeout=2.0) as client:
                with contextlib.suppress(Exception):
                    await client.health()
                    return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the backend did not answer in {timeout:.0f} s; see {ROOT / 'backend.log'}")


async def wait_ready(socket_path: Path, name: str, timeout: float = 300.0) -> float:
    """Until sandbox ``name`` is ready (a start answers once its container runs); when it was."""
    deadline = time.monotonic() + timeout
    async with BackendClient(socket_path, sandbox=name) as client:
        while time.monotonic() < deadline:
            status = await client.status()
            if status.get("state") == "ready":
                return time.perf_counter()
            if status.get("state") in ("failed", "crash-loop", "config-invalid"):
                raise RuntimeError(f"sandbox {name} did not start: {status.get('reason')}")
            await asyncio.sleep(0.1)
    raise TimeoutError(f"sandbox {name} was not ready in {timeout:.0f} s")


async def start_five(socket_path: Path) -> None:
    """The default sandbox started, four more created and started, each ready before the next."""
    async with BackendClient(socket_path, timeout=None) as client:
        started = time.perf_counter()
        await client.action("start")
        ready = await wait_ready(socket_path, NAMES[0])
        print(f"  {NAMES[0]} (default) started, ready in {ready - started:.1f} s", flush=True)
        for offset, name in enumerate(NAMES[1:], start=1):
            started = time.perf_counter()
            await client.create_sandbox(name, gateway_port=FIRST_SANDBOX_PORT + offset, start=True)
            ready = await wait_ready(socket_path, name)
            print(f"  {name} created and started, ready in {ready - started:.1f} s", flush=True)


async def settle(socket_path: Path, timeout: float = 300.0) -> str:
    """Until every sandbox is ready and idling (newest CPU sample under 10% of a core)."""
    deadline = time.monotonic() + timeout
    async with BackendClient(socket_path) as client:
        while True:
            listing = await client.sandboxes()
            states = {s.name: (str(s.status.state), s.cpu_percent) for s in listing.sandboxes}
            calm = all(state == "ready" and cpu is not None and cpu < 10.0 for state, cpu in states.values())
            if calm or time.monotonic() > deadline:
                return ", ".join(
                    f"{name} {state} {'-' if cpu is None else f'{cpu:.0f}%'}"
                    for name, (state, cpu) in states.items()
                ) + ("" if calm else f" (still busy after {timeout:.0f} s)")
            await asyncio.sleep(1.0)


async def status_calls(socket_path: Path, calls: int) -> dict[str, list[float]]:
    """Milliseconds per call of each kind, alternated in blocks of BLOCK."""
    times: dict[str, list[float]] = {"all": [], "one": [], "all raw": [], "one raw": []}
    async with BackendClient(socket_path) as client, httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), base_url="http://moltconsole"
    ) as raw:
        kinds: dict[str, Any] = {
            "all": client.sandboxes,
            "one": client.status,
            "all raw": lambda: raw.get("/v1/sandboxes"),
            "one raw": lambda: raw.get("/v1/status"),
        }
        for call in kinds.values():  # warm: connections, imports, first ledger query
            for _ in range(20):
                await call()
        listing = await client.sandboxes()
        assert len(listing.sandboxes) == len(NAMES), listing
        for _ in range(max(1, calls // BLOCK)):
            for kind, call in kinds.items():
                for _ in range(BLOCK):
                    started = time.perf_counter()
                    answer = await call()
                    times[kind].append((time.perf_counter() - started) * 1000)
                    if isinstance(answer, httpx.Response) and answer.status_code != 200:
                        raise RuntimeError(f"{kind}: HTTP {answer.status_code} {answer.text[:200]}")
    return times


def write_lines(name: str, mark: str, count: int) -> None:
    subprocess.run(
        ["docker", "exec", container(name), "sh", "-c", f"seq -f '{mark}%.0f' 1 {count} > /proc/1/fd/1"],
        check=True,
        capture_output=True,
    )


def docker_follower(name: str, mark: str, count: int, attached: threading.Barrier) -> float:
    """``docker logs -f`` of one container read into a counter: when the last line came."""
    last = f"{mark}{count}\n".encode()
    reader = subprocess.Popen(
        ["docker", "logs", "-f", "--since", f"{time.time() - 1:.3f}", container(name)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert isinstance(reader.stdout, io.BufferedReader)  # read1: whatever the pipe has
    tail = b""
    try:
        attached.wait()
        while True:
            chunk = reader.stdout.read1(1 << 20)
            if not chunk:
                raise RuntimeError(f"docker logs of {name} ended before the last line")
            tail = (tail + chunk)[-64:]
            if last in tail:
                return time.perf_counter()
    finally:
        reader.kill()
        reader.wait()


async def docker_round(mark: str, count: int) -> float:
    """Lines/s in total through five ``docker logs -f`` readers (the backend collects too)."""
    attached = threading.Barrier(len(NAMES) + 1)
    readers = [asyncio.to_thread(docker_follower, name, mark, count, attached) for name in NAMES]
    gathered = asyncio.gather(*readers)
    await asyncio.sleep(0.5)  # let every `docker logs` attach before the first line is written
    await asyncio.to_thread(attached.wait)
    started = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(write_lines, name, mark, count) for name in NAMES))
    done = await asyncio.wait_for(gathered, 300)
    return len(NAMES) * count / (max(done) - started)


class Follower:
    """One sandbox's log stream, counting the lines that carry ``mark`` until the last one."""

    def __init__(self, socket_path: Path, name: str, mark: str, count: int) -> None:
        self.client = BackendClient(socket_path, sandbox=name)
        self.name = name
        self.mark = mark
        self.last = f"{mark}{count}"
        self.received = 0
        self.dropped = 0
        self.done_at: float | None = None
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        stream = self.client.logs(tail=0, follow=True)
        try:
            async for message in stream:
                self.subscribed.set()  # the (empty) history came: everything written from now is live
                self.dropped += message.get("dropped", 0)
                records = message.get("records", [])
                self.received += sum(1 for r in records if r["message"].startswith(self.mark))
                if any(r["message"] == self.last for r in records):
                    self.done_at = time.perf_counter()
                    return
            raise RuntimeError(f"{self.name}: the log stream ended before the last line")
        finally:
            await stream.aclose()
            await self.client.aclose()


async def log_round(
    socket_path: Path, mark: str, count: int, sixth: bool
) -> tuple[float, list[Follower], str]:
    """Lines/s in total over the five streams; with ``sixth``, while the sixth sandbox starts."""
    followers = [Follower(socket_path, name, mark, count) for name in NAMES]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    await asyncio.wait_for(asyncio.gather(*(f.subscribed.wait() for f in followers)), 30)
    note = ""
    sixth_ready: asyncio.Task[float] | None = None
    started = time.perf_counter()
    if sixth:
        sixth_ready = asyncio.create_task(start_sixth(socket_path))
    writers = [asyncio.to_thread(write_lines, f.name, mark, count) for f in followers]
    await asyncio.gather(*writers)
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    last = max(f.done_at or 0.0 for f in followers)
    elapsed = last - started
    if sixth_ready is not None:
        ready_s = await sixth_ready - started
        note = (
            f"sixth sandbox {SIXTH}: ready {ready_s:.1f} s after its create request; the five streams "
            f"had every line after {elapsed:.2f} s ({'inside' if elapsed <= ready_s else 'NOT inside'} "
            "the sixth's start)"
        )
    return sum(f.received for f in followers) / elapsed, followers, note


async def start_sixth(socket_path: Path) -> float:
    """Create and start the sixth sandbox; when it was ready."""
    async with BackendClient(socket_path, timeout=None) as client:
        await client.create_sandbox(SIXTH, gateway_port=FIRST_SANDBOX_PORT + len(NAMES), start=True)
    return await wait_ready(socket_path, SIXTH)


def uptime() -> str:
    """The load averages (1, 5, 15 minutes)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def measure(socket_path: Path, calls: int, lines: int) -> None:
    print("starting five sandboxes ...", flush=True)
    await start_five(socket_path)
    print(f"  settled: {await settle(socket_path)}", flush=True)

    print(f"status of all, {calls} calls of each kind (load {uptime()}) ...", flush=True)
    times = await status_calls(socket_path, calls)
    print(f"  load after: {uptime()}", flush=True)

    print(f"log streams: {lines:,} lines into each of the five through `docker logs -f` ...", flush=True)
    docker_rate = await docker_round("D-", lines)
    print(f"  {docker_rate:,.0f} lines/s in total (load {uptime()})", flush=True)
    print(f"log streams: {lines:,} lines into each of the five, nothing else going on ...", flush=True)
    base_rate, base, _ = await log_round(socket_path, "A-", lines, sixth=False)
    print(f"  {base_rate:,.0f} lines/s in total (load {uptime()})", flush=True)
    print(f"log streams: the same while {SIXTH} is created and started ...", flush=True)
    six_rate, six, note = await log_round(socket_path, "S-", lines, sixth=True)
    print(f"  {six_rate:,.0f} lines/s in total (load {uptime()})", flush=True)
    print(f"  {note}", flush=True)

    def row(kind: str) -> str:
        t = times[kind]
        return f"p50 {statistics.median(t):.2f} ms, p95 {pct(t, 95):.2f} ms, max {max(t):.2f} ms"

    n = len(times["all"])
    p50 = statistics.median(times["all"])
    print()
    print("| measure | yardstick | moltconsole | target |")
    print("|---|---|---|---|")
    print(
        f"| status of all 5 sandboxes in one call (`GET /v1/sandboxes`, client), {n} calls | "
        f"one sandbox's `GET /v1/status` (client): {row('one')} | {row('all')} | "
        f"p50 < 5 ms: {'met' if p50 < 5.0 else 'MISSED'} |"
    )
    print(
        f"| the same as bare HTTP requests (no client-side schema check) | {row('one raw')} | "
        f"{row('all raw')} | - |"
    )

    def streams(rate: float, followers: list[Follower]) -> str:
        got = sum(f.received for f in followers)
        dropped = sum(f.dropped for f in followers)
        return f"{rate:,.0f} lines/s, {got:,} of {len(followers) * lines:,} received, {dropped} dropped"

    lossless = all(f.received == lines and f.dropped == 0 for f in [*base, *six])
    print(
        f"| 5 log streams followed, {lines:,} lines into each at once, lines/s in total | "
        f"`docker logs -f` x 5: {docker_rate:,.0f} lines/s; our streams, nothing else going on: "
        f"{streams(base_rate, base)} | while a sixth starts: {streams(six_rate, six)} | "
        f">= 50,000 lines/s, no loss: {'met' if lossless and six_rate >= 50_000 else 'MISSED'} |"
    )


async def tear_down(socket_path: Path) -> None:
    """The created sandboxes removed through the API (the registry forgets them); the default destroyed."""
    async with BackendClient(socket_path, timeout=None) as client:
        for name in [SIXTH, *NAMES[1:]]:
            with contextlib.suppress(Exception):
                await client.remove_sandbox(name)
        with contextlib.suppress(Exception):
            await client.action("destroy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="status calls of each kind")
    parser.add_argument("--lines", type=int, default=60_000, help="lines into each sandbox per round")
    args = parser.parse_args()
    if 3 * args.lines * JSON_LINE_BYTES > DOCKER_LOG_FILE * 0.9:
        parser.error(f"--lines {args.lines}: three rounds must fit in one {DOCKER_LOG_FILE // 1_000_000} MB "
                     "Docker log file (Docker 20.10 loses lines for followers at rotation); at most 75000")
    remove_containers()  # a previous run's, if it was killed
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    socket_path = ROOT / "run" / "backend.sock"
    log = (ROOT / "backend.log").open("wb")
    backend = subprocess.Popen(
        [sys.executable, "-m", "moltconsole", "serve"],
        env=backend_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ok = False
    try:
        asyncio.run(wait_backend(socket_path, backend))
        asyncio.run(measure(socket_path, args.calls, args.lines))
        ok = True
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(tear_down(socket_path))
        backend.send_signal(signal.SIGTERM)
        try:
            backend.wait(30)
        except subprocess.TimeoutExpired:
            backend.kill()
            backend.wait()
        log.close()
        remove_containers()
        if ok:
            shutil.rmtree(ROOT, ignore_errors=True)
        else:
            print(f"the backend's log is kept in {ROOT / 'backend.log'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
