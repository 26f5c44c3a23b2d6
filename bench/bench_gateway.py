"""Benchmark: the AI gateway's added latency, side by side with LiteLLM's proxy, same fake upstream.

    .venv/bin/python bench/bench_gateway.py [--requests 3000] [--concurrency 100]
    .venv/bin/python bench/bench_gateway.py --arrivals saturate [--clients 20] [--requests 4000]

Three processes share the machine's cores: the fake provider (tests/support/fake_llm.py, real
HTTP, Anthropic and OpenAI SSE), the proxy under test (the real `moltconsole serve`, or LiteLLM's
proxy from PyPI in its own venv), and this load generator. The load generator is a minimal
HTTP/1.1 client on asyncio streams with keep-alive, so its own cost is small and identical for
every target. For each target it runs the same streams and reports time to first byte and to
the last byte; "added" is the target's percentile minus the direct run's.

Each stream is paced like a model generating: the fake sends its SSE events on a fixed schedule
(every --chunk-delay seconds from the request). With 100 connections there are two arrival
patterns, both reported:

- spread: connection i starts i/100 of a stream's length in, so requests and events arrive
  evenly, as they do from independent agents;
- lockstep: all 100 start at once and, every stream being the same length, stay in step, so
  every request and every SSE event arrives in a burst of 100 within a millisecond. The stress
  case: the last event of a burst waits for the 99 before it in every process on the path.

A third pattern, ``--arrivals saturate``, is a closed loop that saturates the machine instead of
pacing: --clients connections (20) each send their next request as soon as the previous answer
is complete, the fake answers at once (no --chunk-delay) and closes its connection after each
response, so every proxied request also pays a TCP connect to the provider (the direct run
reconnects too, and its connect is counted). It runs a non-streamed and a streamed Anthropic
request; what it shows is the tail under CPU contention, beside the median. In a closed loop the
latency is the clients over the throughput, so the "added" time there is mostly waiting for a
core: the run also prints the CPU time the backend and the fake spent per request (from /proc),
which is what a proxied request adds to the machine.

LiteLLM is looked for in $LITELLM_BIN, then /tmp/litellm-venv/bin/litellm; install it with
`python -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-bench-upstream-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Run:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the run


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux; 0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def one_connection(
    host: str, port: int, request: bytes, count: int, run: Run, start_after: float = 0.0
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    if start_after:
        await asyncio.sleep(start_after)
    closed = False
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            if closed:  # the server closes after each answer: connect again, inside the timing
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            t_first_byte = time.perf_counter()
            status = int(head.split(b" ", 2)[1])
            headers = head.lower()
            if status != 200:
                run.errors += 1
            if b"transfer-encoding: chunked" in headers:
                # Read chunks until the terminating zero-size chunk.
                first_body = None
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.strip().split(b";")[0], 16)
                    data = await reader.readexactly(size + 2)
                    if first_body is None and size:
                        first_body = time.perf_counter()
                    if size == 0:
                        break
            else:
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                data = await reader.readexactly(length)
                first_body = time.perf_counter()
                del data
            t_end = time.perf_counter()
            run.ttfb.append(((first_body or t_first_byte) - t0) * 1000)
            run.total.append((t_end - t0) * 1000)
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"x-moltconsole-overhead-ms:"):
                    run.overhead.append(float(line.split(b":")[1]))
            closed = b"\r\nconnection: close\r\n" in headers
    finally:
        writer.close()


def build_request(host: str, port: int, path: str, body: dict[str, object], auth: tuple[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        f"{auth[0]}: {auth[1]}",
        "anthropic-version: 2023-06-01",
        "Connection: keep-alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def load(
    host: str, port: int, request: bytes, total: int, concurrency: int, spread: float = 0.0
) -> Run:
    """``total`` requests over ``concurrency`` keep-alive connections, each running its streams
    back to back; connection i starts ``i * spread / concurrency`` seconds in."""
    run = Run()
    per = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            one_connection(host, port, request, n, run, i * spread / concurrency)
            for i, n in enumerate(per)
            if n
        )
    )
    run.wall = time.perf_counter() - t0
    return run


def wait_http(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f} s")


def start_fake(chunks: int, delay: float, close: bool = False) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.fake_llm",
            "--port",
            "0",
            "--chunks",
            str(chunks),
            "--chunk-delay",
            str(delay),
            *(["--close"] if close else []),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        raise SystemExit("the fake provider did not start")
    return process, url


def start_moltconsole(root: Path, fake_url: str) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    config = root / "config.toml"
    config.write_text(
        f'[sandbox]\nname = "benchgw"\ngateway_port = {free_port()}\n'
        f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n'
        f'[gateway]\nbind_address = "127.0.0.1"\nport = {port}\n'
        f'[gateway.providers.anthropic]\napi = "anthropic"\nbase_url = "{fake_url}"\n'
        'api_key_env = "BENCH_KEY"\n'
        f'[gateway.providers.openai]\napi = "openai"\nbase_url = "{fake_url}"\napi_key_env = "BENCH_KEY"\n'
    )
    env = {**os.environ, "BENCH_KEY": FAKE_KEY}
    log = open(root / "backend.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "moltconsole", "--config", str(config), "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    wait_http(port)
    token = (root / "data/sandboxes/benchgw/secrets/model-token").read_text().strip()
    return process, port, token


def litellm_bin() -> str | None:
    for candidate in (
        os.environ.get("LITELLM_BIN"),
        "/tmp/litellm-venv/bin/litellm",
        shutil.which("litellm"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def start_litellm(binary: str, root: Path, fake_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = root / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        f"    litellm_params: {{model: openai/gpt-4o-mini, api_base: '{fake_url}/v1', api_key: {FAKE_KEY}}}\n"
        "  - model_name: claude-sonnet-4-6\n"
        "    litellm_params: {model: anthropic/claude-sonnet-4-6, "
        f"api_base: '{fake_url}', api_key: {FAKE_KEY}}}\n"
        "litellm_settings: {drop_params: true, telemetry: false}\n"
        "general_settings: {master_key: sk-litellm-master}\n"
    )
    log = open(root / "litellm.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        stdout=log,
        stderr=log,
        env={**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
    )
    wait_http(port, timeout=180)
    return process, port


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=16, help="content deltas per streamed reply")
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.025,
        help="seconds between SSE events, as a model generates (0: as fast as possible, a saturation test)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--arrivals",
        choices=("both", "spread", "lockstep", "saturate"),
        default="both",
        help="spread: the streams' starts are spread evenly over one stream's length, as independent "
        "agents' would be; lockstep: all start together, so every request and every SSE event "
        "arrives in bursts of `concurrency` (the stress case); saturate: a closed loop of --clients "
        "connections against a fake that answers at once and closes after each response",
    )
    parser.add_argument("--clients", type=int, default=20, help="closed-loop clients for --arrivals saturate")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparison")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mc-benchgw-", dir="/tmp"))
    processes: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
    try:
        saturate = args.arrivals == "saturate"
        fake, fake_url = start_fake(args.chunks, 0.0 if saturate else args.chunk_delay, close=saturate)
        processes.append(fake)
        fake_port = int(fake_url.rsplit(":", 1)[1])
        gw, gw_port, token = start_moltconsole(root, fake_url)
        processes.append(gw)
        watched: dict[str, subprocess.Popen[bytes] | subprocess.Popen[str]] = {
            "moltconsole": gw,
            "fake provider": fake,
        }
        targets: dict[str, tuple[int, tuple[str, str], tuple[str, str]]] = {
            "direct": (fake_port, ("x-api-key", FAKE_KEY), ("Authorization", f"Bearer {FAKE_KEY}")),
            "moltconsole": (gw_port, ("x-api-key", token), ("Authorization", f"Bearer {token}")),
        }
        binary = None if args.no_litellm else litellm_bin()
        if binary:
            print("starting LiteLLM's proxy (takes a while) ...", flush=True)
            ll, ll_port = start_litellm(binary, root, fake_url)
            processes.append(ll)
            targets["litellm"] = (
                ll_port,
                ("x-api-key", "sk-litellm-master"),
                ("Authorization", "Bearer sk-litellm-master"),
            )
        elif args.no_litellm:
            print("LiteLLM skipped (--no-litellm): comparing with the direct run only")
        else:
            print("LiteLLM not found: comparing with the direct run only (see the docstring)")

        anthropic_body = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Say hello."}],
        }
        saturate_workloads = {
            "anthropic /v1/messages": ("/v1/messages", anthropic_body, 0),
            "anthropic /v1/messages stream": ("/v1/messages", {**anthropic_body, "stream": True}, 0),
        }
        paced_workloads = {
            "anthropic /v1/messages stream": ("/v1/messages", {**anthropic_body, "stream": True}, 0),
            "openai /v1/chat/completions stream": (
                "/v1/chat/completions",
                {
                    "model": "gpt-4o-mini",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "Say hello."}],
                },
                1,
            ),
        }
        workloads = saturate_workloads if saturate else paced_workloads
        stream_s = (args.chunks + 4) * args.chunk_delay  # deltas plus the framing events
        modes = {
            "both": ("spread", "lockstep"),
            "spread": ("spread",),
            "lockstep": ("lockstep",),
            "saturate": ("closed",),
        }
        parallel = args.clients if saturate else args.concurrency
        cases = [(1, "-")] + [(parallel, mode) for mode in modes[args.arrivals]]
        results: dict[tuple[str, str, int, str], Run] = {}
        for concurrency, arrivals in cases:
            total = args.requests if concurrency > 1 else max(40, args.requests // 50)
            spread = stream_s if arrivals == "spread" else 0.0
            for name, (path, body, auth_index) in workloads.items():
                for round_no in range(args.rounds):
                    for target, (port, *auths) in targets.items():
                        request = build_request("127.0.0.1", port, path, body, auths[auth_index])
                        warm = min(2 * concurrency, total)
                        asyncio.run(load("127.0.0.1", port, request, warm, concurrency, spread))
                        before = {who: cpu_seconds(p.pid) for who, p in watched.items()}
                        run = asyncio.run(load("127.0.0.1", port, request, total, concurrency, spread))
                        run.cpu = {
                            who: cpu_seconds(p.pid) - before[who] for who, p in watched.items()
                        }
                        key = (name, target, concurrency, arrivals)
                        merged = results.setdefault(key, Run())
                        merged.ttfb += run.ttfb
                        merged.total += run.total
                        merged.overhead += run.overhead
                        merged.errors += run.errors
                        merged.wall += run.wall
                        for who, seconds in run.cpu.items():
                            merged.cpu[who] = merged.cpu.get(who, 0.0) + seconds
                        print(
                            f"  {name} · {target} · c={concurrency} {arrivals} · round {round_no + 1}: "
                            f"{len(run.total) / run.wall:,.0f} req/s, {run.errors} errors",
                            flush=True,
                        )

        print()
        header = (
            f"{'workload':36} {'c':>3} {'arrivals':8} {'target':12} {'req/s':>7} {'ttfb p50':>9} {'p99':>7} "
            f"{'total p50':>9} {'p95':>7} {'p99':>7} {'added p50':>9} {'p95':>7} {'p99':>7} {'err':>4}"
        )
        print(header)
        print("-" * len(header))
        for (name, target, concurrency, arrivals), run in results.items():
            direct = results[(name, "direct", concurrency, arrivals)]
            added = [pct(run.total, p) - pct(direct.total, p) for p in (50, 95, 99)]
            print(
                f"{name:36} {concurrency:>3} {arrivals:8} {target:12} {len(run.total) / run.wall:>7,.0f} "
                f"{pct(run.ttfb, 50):>9.2f} {pct(run.ttfb, 99):>7.2f} {pct(run.total, 50):>9.2f} "
                f"{pct(run.total, 95):>7.2f} {pct(run.total, 99):>7.2f} {added[0]:>9.2f} {added[1]:>7.2f} "
                f"{added[2]:>7.2f} {run.errors:>4}"
            )
        for (name, _target, concurrency, arrivals), run in results.items():
            if run.overhead:
                print(
                    f"moltconsole's own overhead header ({name}, c={concurrency} {arrivals}): p50 "
                    f"{statistics.median(run.overhead):.3f} ms, p99 {pct(run.overhead, 99):.3f} ms"
                )
        # Where a saturated run's time goes: the CPU each process spent per request of the target.
        for (name, target, concurrency, arrivals), run in results.items():
            if concurrency > 1 and run.total and any(run.cpu.values()):
                spent = ", ".join(
                    f"{who} {seconds / len(run.total) * 1000:.3f} ms" for who, seconds in run.cpu.items()
                )
                print(f"CPU per request via {target} ({name}, c={concurrency} {arrivals}): {spent}")
        if saturate:
            print(
                f"\nclosed loop: {args.clients} clients, each sending its next request when the last "
                "answer is complete; the fake answers at once and closes after each response"
            )
        else:
            print("\ntargets: added p50 < 1 ms and p99 < 5 ms at c=100; TTFB within 2 ms of direct")
        print("times in ms; 'added' = target percentile minus the direct run's percentile")
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
