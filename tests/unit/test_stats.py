"""CPU as the Docker CLI computes it; memory as the working set, with the page cache apart."""

from moltconsole_backend.sandbox.stats import compute_sample


def test_cpu_percent_and_memory_minus_inactive_cache_cgroup_v1() -> None:
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


MIB = 2**20


def test_the_working_set_leaves_out_active_page_cache_too() -> None:
    # Figures of the real sandbox after ten agent turns (bench/bench_sandbox_memory.py, cgroup v1):
    # the Docker CLI subtracts only inactive_file; the active file pages are cache all the same.
    raw = {
        "memory_stats": {"usage": 1_092_804_608, "limit": 2 * 2**30, "stats": {
            "total_active_file": 48_164_864, "total_inactive_file": 52_142_080,
            "active_file": 1, "inactive_file": 1,  # this cgroup alone; total_ counts children too
            "total_rss": 934_260_736, "total_cache": 116_740_096,
        }},
    }
    sample = compute_sample(raw)
    assert sample.cache_bytes == 48_164_864 + 52_142_080
    assert sample.memory_bytes == 1_092_804_608 - 48_164_864 - 52_142_080  # 946 MiB, not the CLI's 992
    assert sample.memory_percent == round(sample.memory_bytes / (2 * 2**30) * 100, 2)
    assert sample.to_json()["cache_bytes"] == sample.cache_bytes


def test_cgroup_v2_active_and_inactive_file() -> None:
    raw = {"memory_stats": {"usage": 1500 * MIB, "limit": 2048 * MIB, "stats": {
        "anon": 1200 * MIB, "file": 290 * MIB, "active_file": 90 * MIB, "inactive_file": 200 * MIB,
        "shmem": 10 * MIB,  # tmpfs: not on the file lists, and not freeable without swap
    }}}
    sample = compute_sample(raw)
    assert (sample.memory_bytes, sample.cache_bytes) == (1210 * MIB, 290 * MIB)


def test_no_memory_details_means_no_cache_subtracted() -> None:
    sample = compute_sample({"memory_stats": {"usage": 500, "limit": 1000}})
    assert (sample.memory_bytes, sample.cache_bytes, sample.memory_percent) == (500, 0, 50.0)
