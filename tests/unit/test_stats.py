"""CPU and memory figures computed as the Docker CLI computes them."""

from moltconsole_backend.sandbox.stats import compute_sample


def test_cpu_percent_and_memory_minus_cache_cgroup_v1() -> None:
    raw = {
        "read": "2026-11-25T12:00:01Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000}, "system_cpu_usage": 20_000_000_000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000}, "system_cpu_usage": 18_000_000_000},
        "memory_stats": {"usage": 800 * 2**20, "limit": 2 * 2**30,
                         "stats": {"total_inactive_file": 50 * 2**20}},
        "pids_stats": {"current": 23},
    }
    sample = compute_sample(raw)
    # 0.5e9 / 2e9 * 2 cpus * 100 = 50 %
    assert sample.cpu_percent == 50.0
    assert sample.memory_bytes == 750 * 2**20
    assert sample.memory_percent == round(750 / 2048 * 100, 2)
    assert sample.pids == 23


def test_cgroup_v2_inactive_file_and_first_sample_without_previous() -> None:
    raw = {
        "cpu_stats": {"cpu_usage": {"total_usage": 10}, "system_cpu_usage": 100, "online_cpus": 4},
        "precpu_stats": {},
        "memory_stats": {"usage": 1000, "limit": 0, "stats": {"inactive_file": 200}},
    }
    sample = compute_sample(raw)
    assert sample.cpu_percent == 10 / 100 * 4 * 100
    assert sample.memory_bytes == 800
    assert sample.memory_percent == 0.0
