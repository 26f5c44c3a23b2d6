"""Container resource figures computed from Docker's stats payload.

CPU is computed the way the Docker CLI does. Memory is split in two: the working set (what the
processes hold: anonymous memory, tmpfs, kernel memory) and the page cache (file pages the
kernel drops before it kills anything). The limit kills for the first only: the container has
no swap, so the working set is the figure to watch, and the one the warning is about.

Measured on the real sandbox (bench/bench_sandbox_memory.py, cgroup v1, OpenClaw 2026.9.6):
the page cache stayed between 65 and 130 MiB through idle, agent turns and pairing-list calls,
and shrank under 25 MiB as a 1 GiB limit was reached; everything else was anonymous memory of
the Node processes (the gateway alone 0.7 GiB idle, 1.2 GiB in a turn).
"""

from __future__ import annotations

from typing import Any

# The sample is a wire message, shared with the console.
from moltconsole_shared.wire.sandbox import StatsSample as StatsSample


def page_cache(stats: dict[str, Any]) -> int:
    """The reclaimable file pages in a ``memory_stats.stats`` block (0 if it says nothing).

    cgroup v2 and v1 name them ``active_file`` + ``inactive_file`` (v1 also with a ``total_``
    prefix, which counts child cgroups too and is preferred). An engine that reports only the
    inactive list gets that, which is what the Docker CLI subtracts.
    """
    for prefix in ("total_", ""):
        active = stats.get(f"{prefix}active_file")
        inactive = stats.get(f"{prefix}inactive_file")
        if isinstance(inactive, int):
            return inactive + (active if isinstance(active, int) else 0)
    return 0


def compute_sample(raw: dict[str, Any]) -> StatsSample:
    """Turn one ``/containers/{id}/stats`` document into a sample.

    CPU: (container usage delta / system usage delta) x online CPUs x 100, from the current
    and the previous reading that the engine puts in the same document.
    Memory: usage minus the page cache (``page_cache``) is the working set.
    """
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_usage = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_usage = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0) or 0
    pre_system = pre.get("system_cpu_usage", 0) or 0
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_delta = cpu_usage - pre_usage
    system_delta = system - pre_system
    cpu_percent = 0.0
    if cpu_delta > 0 and system_delta > 0:
        cpu_percent = cpu_delta / system_delta * online * 100.0

    mem = raw.get("memory_stats") or {}
    usage = int(mem.get("usage", 0) or 0)
    cache = min(page_cache(mem.get("stats") or {}), usage)
    working_set = usage - cache
    limit = int(mem.get("limit", 0) or 0)
    mem_percent = working_set / limit * 100.0 if limit else 0.0
    pids = int((raw.get("pids_stats") or {}).get("current", 0) or 0)
    return StatsSample(
        time=str(raw.get("read", "")),
        cpu_percent=round(cpu_percent, 2),
        memory_bytes=working_set,
        memory_limit=limit,
        memory_percent=round(mem_percent, 2),
        pids=pids,
        cache_bytes=cache,
    )
