"""The console in a real terminal (tmux), backend already running: start, key latency, memory.

Modes (``--mode``, default ``all``):

``start``    launching ``moltconsole`` until the first frame that shows the sandbox state
             (polling ``tmux capture-pane`` every 10 ms). Target (issue 3): under 1 s.
``latency``  the Logs screen while the backend collects ``--rate`` lines/s (10,000 by default):
             ``p`` (pause/resume) is pressed ``--presses`` times, at random intervals, and each
             press is timed from the key sent to the terminal until the frame that shows the new
             state (``paused`` / ``following``) comes out of the console. Target: under 100 ms.
``memory``   the console's RSS (from /proc) before streaming and after 250k, 500k, 750k and 1M
             lines have gone through the Logs screen, at ``--rate`` lines/s. It must stay bounded.

How it works. One backend (``moltconsole serve``) with its own directories; lines are appended
by a writer process to the sandbox's OpenClaw log file on the host, the file the backend
tails (JSON lines, as OpenClaw writes them), at a steady rate in 10 ms ticks. The console runs
in a tmux server of its own, at 160x48. Keys are sent and frames read through a tmux control
client (``tmux -C``): tmux reports every byte the console writes to its terminal as it arrives,
so a press is timed to the rendered frame, not to the key handler, and nothing polls.
The memory checkpoints wait until the newest line on screen (``capture-pane``) has reached
the checkpoint, so RSS is read once the console has really handled that many lines.

Usage: .venv/bin/python bench/bench_console.py [--mode all|start|latency|memory] [--runs N]
       [--rate LINES_PER_S] [--presses N] [--lines N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SIZE = (160, 48)
LOG_FILE = "openclaw.log"  # the file the backend tails in <sandbox_dir>/logs (logs/collector.py)
MARK = "B-"  # every streamed message starts with B-<number>


# --- start to first frame -----------------------------------------------------------------------
def capture(session: str, server: list[str] | None = None) -> str:
    result = subprocess.run(
        [*(server or ["tmux"]), "capture-pane", "-p", "-t", session],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout


def kill_server(server: list[str]) -> None:
    """Stop a private tmux server and remove its socket (tmux 3.3 leaves the file behind)."""
    found = subprocess.run(
        [*server, "display-message", "-p", "#{socket_path}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    subprocess.run([*server, "kill-server"], capture_output=True, check=False)
    if found:
        Path(found).unlink(missing_ok=True)


def one_run(config: Path, runtime: Path, size: tuple[int, int], run: int) -> float:
    # A tmux server per run: killing the last session of a shared one races with the next start.
    server = ["tmux", "-L", f"mcstart{os.getpid()}-{run}", "-f", "/dev/null"]
    session = "console"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime.parent)}
    command = f"{sys.executable} -m moltconsole --config {config}; sleep 30"
    started = time.perf_counter()
    subprocess.run(
        [*server, "new", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command],
        env=env,
        check=True,
    )
    try:
        while time.perf_counter() - started < 20:
            screen = capture(session, server)
            if "sandbox " in screen and "connecting" not in screen:
                return time.perf_counter() - started
            time.sleep(0.01)
        raise TimeoutError("no frame with the sandbox state within 20 s")
    finally:
        kill_server(server)


def bench_start(config: Path, root: Path, runs: int) -> list[str]:
    """Start to first frame, alternating 80x24 and 160x48; the result table's row."""
    times = []
    for run, size in enumerate([(80, 24), (160, 48)] * ((runs + 1) // 2)):
        times.append(one_run(config, root / "run", size, run))
        print(f"  {size[0]}x{size[1]}: {times[-1] * 1000:.0f} ms", flush=True)
    med = statistics.median(times)
    return [
        f"| start to first frame with backend data, median of {len(times)} | "
        f"{med * 1000:.0f} ms (max {max(times) * 1000:.0f} ms) | < 1 s: "
        f"{'met' if med < 1 else 'MISSED'} |"
    ]


# --- streaming lines into the backend -----------------------------------------------------------
def _write_lines(path: str, rate: float, total: int, written: Any, stop: Any) -> None:
    """A writer process: append ``total`` JSON lines to ``path`` at ``rate`` lines/s."""
    pad = "lorem ipsum dolor sit amet " * 3
    started = time.perf_counter()
    count = 0
    with open(path, "a", encoding="utf-8") as fh:
        while count < total and not stop.is_set():
            due = min(total, int((time.perf_counter() - started) * rate))
            if due > count:
                stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                level = ("info", "debug", "warn")
                fh.write(
                    "".join(
                        json.dumps(
                            {
                                "time": stamp,
                                "level": level[n % 3],
                                "subsystem": "bench",
                                "message": f"{MARK}{n:07d} {pad}",
                            }
                        )
                        + "\n"
                        for n in range(count + 1, due + 1)
                    )
                )
                fh.flush()
                count = due
                written.value = count
            time.sleep(0.01)


class Writer:
    """Streams lines into the log file from a process of its own (no GIL shared with timing)."""

    def __init__(self, path: Path, rate: float, total: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.written = ctx.Value("q", 0)
        self.stop = ctx.Event()
        self.process = ctx.Process(
            target=_write_lines, daemon=True, args=(str(path), rate, total, self.written, self.stop)
        )

    def __enter__(self) -> Writer:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(10)

    @property
    def count(self) -> int:
        return int(self.written.value)


# --- the console in tmux, driven through a control client ---------------------------------------
_OCTAL = re.compile(rb"\\([0-7]{3})")


class Terminal:
    """A console running in a private tmux server, with a control client that sends keys and
    timestamps every byte of output the moment tmux reports it."""

    def __init__(self, root: Path, config: Path) -> None:
        self.server = ["tmux", "-L", f"mcbench{os.getpid()}", "-f", "/dev/null"]
        self.session = "console"
        self.pid_file = root / "console.pid"
        self.root = root
        self.config = config
        self._chunks: list[tuple[float, bytes]] = []
        self._cond = threading.Condition()
        self._control: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.root)}
        command = f"echo $$ > {self.pid_file}; exec {sys.executable} -m moltconsole --config {self.config}"
        subprocess.run(
            [
                *self.server,
                "new",
                "-d",
                "-s",
                self.session,
                "-x",
                str(SIZE[0]),
                "-y",
                str(SIZE[1]),
                "sh",
                "-c",
                command,
            ],
            env=env,
            check=True,
        )
        subprocess.run([*self.server, "set-option", "-g", "window-size", "manual"], check=True)
        self._control = subprocess.Popen(
            [*self.server, "-C", "attach", "-t", self.session], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._control is not None and self._control.stdout is not None
        for line in self._control.stdout:
            if line.startswith(b"%output "):
                now = time.perf_counter()
                data = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), line.split(b" ", 2)[2].rstrip(b"\n"))
                with self._cond:
                    self._chunks.append((now, data))
                    del self._chunks[:-4096]  # only what arrived since the last press matters
                    self._cond.notify_all()

    def mark(self) -> float:
        """A point in time: output after it is what a key press caused."""
        return time.perf_counter()

    def send_key(self, key: str) -> float:
        """Send ``key``; returns when it was sent."""
        assert self._control is not None and self._control.stdin is not None
        sent = time.perf_counter()
        self._control.stdin.write(f"send-keys -t {self.session} {key}\n".encode())
        self._control.stdin.flush()
        return sent

    def wait_output(self, needle: bytes, after: float, timeout: float = 10.0) -> float:
        """When output containing ``needle`` (written after ``after``) arrived."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while True:
                tail = b""
                for at, data in self._chunks:
                    if at < after:
                        continue
                    if needle in tail + data:
                        return at
                    tail = data[-len(needle) :]
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"{needle!r} did not appear within {timeout} s")
                self._cond.wait(left)

    def screen(self) -> str:
        return capture(self.session, self.server)

    def wait_screen(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not on screen within {timeout} s:\n{self.screen()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time the console has used (user + system)."""
        pid = int(self.pid_file.read_text())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        pid = int(self.pid_file.read_text())
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def newest_line(self) -> int:
        """The highest streamed line number visible on screen, 0 if none."""
        numbers = [int(n) for n in re.findall(rf"{MARK}(\d{{7}})", self.screen())]
        return max(numbers, default=0)

    def stop(self) -> None:
        if self._control is not None:
            self._control.kill()
            self._control.wait()
        kill_server(self.server)


@contextmanager
def logs_screen(root: Path, config: Path) -> Iterator[Terminal]:
    """The console in tmux, on its Logs screen, following."""
    term = Terminal(root, config)
    term.start()
    try:
        term.wait_screen("backend: connected")
        term.send_key("2")
        term.wait_screen("following")
        yield term
    finally:
        term.stop()


def status_line(term: Terminal) -> str:
    """The Logs screen's status line as shown (following/paused, lines, dropped)."""
    return next((line for line in term.screen().splitlines() if "range " in line), "").strip()


def bench_latency(root: Path, config: Path, log_file: Path, rate: float, presses: int) -> list[str]:
    """Key press to changed frame while ``rate`` lines/s stream; the result table's row."""
    latencies: list[float] = []
    with logs_screen(root, config) as term, Writer(log_file, rate, 10**9) as writer:
        while term.newest_line() < rate * 2:  # two seconds of streaming before the first press
            time.sleep(0.1)
        following = True
        cpu_start, wall_start = term.cpu_seconds(), time.perf_counter()
        for n in range(presses):
            needle = b"paused" if following else b"following"
            after = term.mark()
            sent = term.send_key("p")
            shown = term.wait_output(needle, after)
            latencies.append(shown - sent)
            following = not following
            time.sleep(random.uniform(0.25, 0.6))
            if n % 10 == 9:
                print(
                    f"  {n + 1} presses, last {latencies[-1] * 1000:.1f} ms, {writer.count:,} lines written",
                    flush=True,
                )
        if not following:
            term.send_key("p")
        elapsed_lines = writer.count
        cpu = (term.cpu_seconds() - cpu_start) / (time.perf_counter() - wall_start)
        status = status_line(term)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    worst = latencies[-1]
    print(f"  streamed {elapsed_lines:,} lines during the presses; status: {status}")
    print(f"  console CPU {cpu:.0%} of a core; load average {load()} on {os.cpu_count()} CPUs")
    print("  every press, sorted (ms): " + " ".join(f"{t * 1000:.0f}" for t in latencies))
    return [
        f"| key press (p) to changed frame at {rate:,.0f} lines/s, {len(latencies)} presses | "
        f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {worst * 1000:.1f} ms | "
        f"< 100 ms: {'met' if p95 < 0.1 else 'MISSED'} (p95) |"
    ]


def count_label(n: int) -> str:
    """250000 -> 250k, 1000000 -> 1M."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def load() -> str:
    """The load averages, so numbers taken on a busy machine can be read as such."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_memory(root: Path, config: Path, log_file: Path, rate: float, total: int) -> list[str]:
    """Console RSS at 0, 1/4, 1/2, 3/4 and all of ``total`` lines; the result table's row."""
    checkpoints = [total // 4, total // 2, 3 * total // 4, total]
    readings: list[tuple[int, float]] = []
    with logs_screen(root, config) as term:
        time.sleep(1.0)  # settle after the first frame of the Logs screen
        readings.append((0, term.rss_mb()))
        print(f"  0 lines: RSS {readings[-1][1]:.1f} MB", flush=True)
        started = time.perf_counter()
        with Writer(log_file, rate, total) as writer:
            for point in checkpoints:
                while (newest := term.newest_line()) < point:
                    if time.perf_counter() - started > 3 * total / rate + 60:
                        raise TimeoutError(f"the console shows line {newest:,}, waited for {point:,}")
                    time.sleep(0.2)
                readings.append((point, term.rss_mb()))
                print(
                    f"  {point:,} lines: RSS {readings[-1][1]:.1f} MB "
                    f"({writer.count:,} written, {time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        status = status_line(term)
    print(f"  status at the end: {status}; load average {load()}")
    peak = max(mb for _, mb in readings)
    growth = readings[-1][1] - readings[2][1]
    cells = ", ".join(f"{count_label(n)}: {mb:.1f} MB" for n, mb in readings)
    dropped = re.search(r"dropped ([\d,]+)", status)
    return [
        f"| console RSS while {total:,} lines stream through the Logs screen at {rate:,.0f} "
        f"lines/s | {cells} (peak {peak:.0f} MB; {growth:+.1f} MB over the second half"
        f"{'; dropped ' + dropped.group(1) if dropped else ''}) | bounded: "
        f"{'met' if growth < 20 else 'MISSED'} |"
    ]


# --- main ---------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["all", "start", "latency", "memory"], default="all")
    parser.add_argument("--runs", type=int, default=5, help="start: launches")
    parser.add_argument("--rate", type=float, default=10_000, help="latency, memory: lines/s")
    parser.add_argument("--presses", type=int, default=40, help="latency: key presses (>= 30)")
    parser.add_argument("--lines", type=int, default=1_000_000, help="memory: lines to stream")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is needed (scripts/setup.sh installs it)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="mc-bench-console-", dir="/tmp"))
    config = root / "config.toml"
    name = f"benchconsole{os.getpid()}"
    config.write_text(
        f'[sandbox]\nname = "{name}"\n[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n'
    )
    log_file = root / "data" / "sandboxes" / name / "logs" / LOG_FILE
    log_file.parent.mkdir(parents=True, exist_ok=True)
    backend = subprocess.Popen(
        [sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not (root / "run" / "backend.sock").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("backend did not start")
            time.sleep(0.05)
        if args.mode in ("all", "start"):
            print("start to first frame:", flush=True)
            rows += bench_start(config, root, args.runs)
        if args.mode in ("all", "latency"):
            print(f"key latency at {args.rate:,.0f} lines/s:", flush=True)
            rows += bench_latency(root, config, log_file, args.rate, args.presses)
        if args.mode in ("all", "memory"):
            print(f"RSS over {args.lines:,} lines at {args.rate:,.0f} lines/s:", flush=True)
            rows += bench_memory(root, config, log_file, args.rate, args.lines)
        print()
        print("| measure | moltconsole | target |")
        print("|---|---|---|")
        for row in rows:
            print(row)
    finally:
        backend.terminate()
        backend.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
