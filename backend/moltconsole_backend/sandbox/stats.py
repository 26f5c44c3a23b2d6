"""Container resource figures computed from Docker's stats payload the way the Docker CLI does."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StatsSample:
    """One sample: CPU as a percentage of one core (the CLI's convention), memory in bytes."""

    time: str
    cpu_percent: float
    memory_bytes: int
    memory_limit: int
    memory_percent: float
    pids: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def compute_sample(raw: dict[str, Any]) -> StatsSample:
    """Turn one ``/containers/{id}/stats`` document into a sample.

    CPU: (container usage delta / system usage delta) x online CPUs x 100, from the current
    and the previous reading that the engine puts in the same document.
    Memory: usage minus the page cache, which the CLI subtracts (``inactive_file`` on cgroup
    v2, ``total_inactive_file`` on cgroup v1).
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
    details = mem.get("stats") or {}
    if "total_inactive_file" in details and details["total_inactive_file"] < usage:
        usage -= int(details["total_inactive_file"])
    elif "inactive_file" in details and details["inactive_file"] < usage:
        usage -= int(details["inactive_file"])
    limit = int(mem.get("limit", 0) or 0)
    mem_percent = usage / limit * 100.0 if limit else 0.0
    pids = int((raw.get("pids_stats") or {}).get("current", 0) or 0)
    return StatsSample(
        time=str(raw.get("read", "")),
        cpu_percent=round(cpu_percent, 2),
        memory_bytes=usage,
        memory_limit=limit,
        memory_percent=round(mem_percent, 2),
        pids=pids,
    )
