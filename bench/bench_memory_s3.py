"""Small-object PUTs and GETs through S3Store against a local SeaweedFS, next to the same
requests made with a bare boto3 client in the same run (the yardstick: what S3Store's checks
and error sorting cost on top of boto3 itself).

Each round: N PUTs of a few hundred bytes (the size of a manifest or a small memory file), then
N GETs of the same keys, one after another and then from 8 threads.

Usage: .venv/bin/python bench/bench_memory_s3.py [--objects N] [--size BYTES]
Starts its own SeaweedFS in a temporary directory and stops it at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moltconsole_backend.memory.s3 import S3Location, s3_store_from
from tests.support.s3_server import S3Server, running_s3_server


def timed(calls: list[Callable[[], object]], threads: int) -> tuple[float, list[float]]:
    """Wall time of all calls, and each call's own time."""
    each: list[float] = []

    def one(call: Callable[[], object]) -> None:
        started = time.perf_counter()
        call()
        each.append(time.perf_counter() - started)

    started = time.perf_counter()
    if threads == 1:
        for call in calls:
            one(call)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, calls))
    return time.perf_counter() - started, each


def line(label: str, wall: float, each: list[float]) -> str:
    ordered = sorted(each)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (
        f"  {label:<28} {wall:6.2f} s  {len(each) / wall:7.0f}/s  "
        f"p50 {statistics.median(each) * 1000:5.1f} ms  p95 {p95 * 1000:5.1f} ms"
    )


def one_round(server: S3Server, raw: Any, data: bytes, objects: int, threads: int) -> None:
    """PUTs then GETs through S3Store, then the same with bare boto3, from ``threads`` threads."""
    env = {"R2_ACCESS_KEY_ID": server.access_key, "R2_SECRET_ACCESS_KEY": server.secret_key}
    prefix = f"bench-{threads}"
    bucket = server.bucket
    location = S3Location(bucket=bucket, prefix=prefix, endpoint_url=server.endpoint_url, path_style=True)
    store = s3_store_from(location, env)
    keys = [f"blobs/{i % 256:02x}/{i:08d}" for i in range(objects)]

    def raw_put(key: str) -> None:
        raw.put_object(Bucket=bucket, Key=f"raw-{prefix}/{key}", Body=data)

    def raw_get(key: str) -> bytes:
        body: bytes = raw.get_object(Bucket=bucket, Key=f"raw-{prefix}/{key}")["Body"].read()
        return body

    # Not timed: the first request of each client opens its connection.
    store.put("warm-up", data)
    raw_put("warm-up")
    print(f"{threads} thread(s):")
    wall, each = timed([partial(store.put, k, data) for k in keys], threads)
    print(line("S3Store.put", wall, each))
    wall, each = timed([partial(raw_put, k) for k in keys], threads)
    print(line("boto3 put_object (yardstick)", wall, each))
    wall, each = timed([partial(store.get, k) for k in keys], threads)
    print(line("S3Store.get", wall, each))
    wall, each = timed([partial(raw_get, k) for k in keys], threads)
    print(line("boto3 get_object (yardstick)", wall, each))
    started = time.perf_counter()
    listed = sum(1 for _ in store.list(""))  # the warm-up object too
    print(f"  S3Store.list of {listed} keys       {time.perf_counter() - started:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    data = (bytes(range(256)) * (args.size // 256 + 1))[: args.size]
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, running_s3_server(Path(tmp)) as server:
        raw = server.client(attempts=2, timeout=30)
        print(f"SeaweedFS at {server.endpoint_url}; {args.objects} objects of {args.size} bytes")
        for threads in (1, 8):
            one_round(server, raw, data, args.objects, threads)


if __name__ == "__main__":
    main()
