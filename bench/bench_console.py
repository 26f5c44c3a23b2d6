"""Console start to first useful frame, in a real terminal (tmux), backend already running.

Measures from launching ``moltconsole`` to the moment the status bar shows the sandbox state
(the first frame that carries backend data), polling ``tmux capture-pane`` every 10 ms.
Target (issue 3): under 1 s. Usage: .venv/bin/python bench/bench_console.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def capture(session: str) -> str:
    result = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                            capture_output=True, text=True, check=False)
    return result.stdout


def one_run(config: Path, runtime: Path, size: tuple[int, int]) -> float:
    session = f"mcbench{os.getpid()}"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime.parent)}
    command = f"{sys.executable} -m moltconsole --config {config}; sleep 30"
    started = time.perf_counter()
    subprocess.run(["tmux", "new", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]),
                    command], env=env, check=True)
    try:
        while time.perf_counter() - started < 20:
            if "sandbox " in capture(session) and "connecting" not in capture(session):
                return time.perf_counter() - started
            time.sleep(0.01)
        raise TimeoutError("no frame with the sandbox state within 20 s")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is needed (scripts/setup.sh installs it)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="mc-bench-console-", dir="/tmp"))
    config = root / "config.toml"
    config.write_text(f'[sandbox]\nname = "benchconsole"\n[paths]\ndata_dir = "{root}/data"\n'
                      f'runtime_dir = "{root}/run"\n')
    backend = subprocess.Popen([sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (root / "run" / "backend.sock").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("backend did not start")
            time.sleep(0.05)
        times = []
        for size in [(80, 24), (160, 48)] * ((args.runs + 1) // 2):
            times.append(one_run(config, root / "run", size))
            print(f"  {size[0]}x{size[1]}: {times[-1] * 1000:.0f} ms", flush=True)
        print()
        print("| measure | moltconsole | target |")
        print("|---|---|---|")
        med = statistics.median(times)
        print(f"| start to first frame with backend data, median of {len(times)} | "
              f"{med * 1000:.0f} ms (max {max(times) * 1000:.0f} ms) | < 1 s: "
              f"{'met' if med < 1 else 'MISSED'} |")
    finally:
        backend.terminate()
        backend.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
