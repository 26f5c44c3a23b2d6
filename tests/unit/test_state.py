"""The sandbox state model's rules, without Docker."""

from moltconsole_backend.sandbox.state import (
    Desired,
    KeptState,
    RestartPolicy,
    SandboxLifecycle,
    SandboxState,
    SandboxStatus,
    ScheduleRestart,
)


def running(policy: RestartPolicy | None = None) -> SandboxLifecycle:
    life = SandboxLifecycle(policy or RestartPolicy(backoff_initial=1, backoff_max=8,
                                                     crash_loop_threshold=4, crash_loop_window=60))
    life.want_running()
    life.on_started("c1", 100.0)
    return life


def test_started_container_is_starting_until_readyz_answers() -> None:
    life = running()
    assert life.status.state == SandboxState.STARTING
    life.on_readyz(False, 101.0, "ConnectError")
    assert life.status.state == SandboxState.STARTING  # failures while starting are expected
    life.on_readyz(True, 102.0)
    assert life.status.state == SandboxState.READY
    assert life.status.ready_at == 102.0


def test_ready_becomes_unhealthy_after_repeated_failures_and_recovers() -> None:
    life = running(RestartPolicy(unhealthy_after=3))
    life.on_readyz(True, 1.0)
    life.on_readyz(False, 2.0, "HTTP 503")
    life.on_readyz(False, 3.0, "HTTP 503")
    assert life.status.state == SandboxState.READY
    life.on_readyz(False, 4.0, "HTTP 503")
    assert life.status.state == SandboxState.UNHEALTHY
    assert "3 times" in life.status.reason and "HTTP 503" in life.status.reason
    life.on_readyz(True, 5.0)
    assert life.status.state == SandboxState.READY
    assert life.status.reason == ""


def test_exit_after_user_stop_is_not_a_crash() -> None:
    life = running()
    life.want_stopped()
    life.on_stopping()
    status, effect = life.on_exit(143, 110.0)
    assert status.state == SandboxState.STOPPED
    assert effect is None
    assert status.last_exit_code == 143


def test_crash_schedules_restart_with_exponential_backoff() -> None:
    life = running()
    delays = []
    for i in range(3):
        status, effect = life.on_exit(137, 100.0 + i)
        assert status.state == SandboxState.CRASHED
        assert isinstance(effect, ScheduleRestart)
        delays.append(effect.delay)
        life.on_restarting()
        life.on_started("c1", 100.5 + i)
    assert delays == [1, 2, 4]
    assert life.status.restarts == 3


def test_backoff_is_capped() -> None:
    life = running(RestartPolicy(backoff_initial=1, backoff_max=3, crash_loop_threshold=10))
    delays = []
    for i in range(5):
        _, effect = life.on_exit(1, 100.0 + i)
        assert effect is not None
        delays.append(effect.delay)
    assert delays == [1, 2, 3, 3, 3]


def test_crash_loop_stops_restarting_and_says_why() -> None:
    life = running()
    effects = [life.on_exit(134, 100.0 + i, last_log="FATAL heap limit")[1] for i in range(4)]
    assert effects[:3] == [ScheduleRestart(1), ScheduleRestart(2), ScheduleRestart(4)]
    assert effects[3] is None
    status = life.status
    assert status.state == SandboxState.CRASH_LOOP
    assert "4 times" in status.reason
    assert "134" in status.reason
    assert "FATAL heap limit" in status.reason
    assert status.restart_at is None


def test_crashes_outside_the_window_do_not_count() -> None:
    life = running()
    for t in (0.0, 100.0, 200.0, 300.0, 400.0):
        status, effect = life.on_exit(1, t)
        assert status.state == SandboxState.CRASHED
        assert effect == ScheduleRestart(1)


def test_user_start_clears_a_crash_loop() -> None:
    life = running(RestartPolicy(crash_loop_threshold=1))
    life.on_exit(1, 1.0)
    assert life.status.state == SandboxState.CRASH_LOOP
    life.want_running()
    life.on_started("c2", 2.0)
    _, effect = life.on_exit(1, 3.0)
    assert life.status.state == SandboxState.CRASH_LOOP  # threshold 1: one crash is a loop again
    assert effect is None
    life2 = running(RestartPolicy(crash_loop_threshold=2))
    life2.on_exit(1, 1.0)
    life2.want_running()
    _, effect = life2.on_exit(1, 2.0)
    assert isinstance(effect, ScheduleRestart)  # the earlier crash was forgotten


def test_exit_78_is_invalid_config_and_not_restarted() -> None:
    life = running()
    status, effect = life.on_exit(78, 101.0, last_log="Invalid config: unknown key foo")
    assert status.state == SandboxState.CONFIG_INVALID
    assert effect is None
    assert "openclaw.json" in status.reason
    assert "unknown key foo" in status.reason


def test_removal_behind_our_back_keeps_state_dir_in_reason() -> None:
    life = running()
    status = life.on_removed(by_us=False, state_dir="/srv/molt/state")
    assert status.state == SandboxState.ABSENT
    assert "/srv/molt/state" in status.reason and "outside moltconsole" in status.reason
    assert status.desired == Desired.STOPPED
    assert status.container_id is None


def test_removal_by_us_is_silent() -> None:
    life = running()
    assert life.on_removed(by_us=True, state_dir="/x").reason == ""


def test_readyz_ignored_when_not_running() -> None:
    life = SandboxLifecycle()
    life.on_absent()
    assert life.on_readyz(True, 1.0).state == SandboxState.ABSENT


def test_status_json_round_trip_ignores_unknown_keys() -> None:
    life = running()
    data = life.status.to_json()
    assert data["state"] == "starting"
    data["future_field"] = 1
    assert SandboxStatus.from_json(data) == life.status


MIB = 2**20
LIMIT = 2048 * MIB


def test_memory_warning_at_90_percent_of_the_limit_until_back_under_85() -> None:
    life = running()
    life.on_readyz(True, 101.0)
    assert life.on_memory(1800 * MIB, LIMIT).memory_warning is None  # 87.9 %
    warning = life.on_memory(1850 * MIB, LIMIT).memory_warning  # 90.3 %
    assert warning is not None
    assert warning == (
        "memory: the sandbox reached 1,850 of 2,048 MiB (90%, cache not counted) and is killed at "
        "the limit. Raise sandbox.memory_limit, then destroy and start it."
    )
    # Between the two thresholds it stays, with the figures of the moment it crossed.
    assert life.on_memory(1780 * MIB, LIMIT).memory_warning == warning
    assert life.on_memory(1900 * MIB, LIMIT).memory_warning == warning
    assert life.on_memory(1700 * MIB, LIMIT).memory_warning is None  # 83 %


def test_memory_warning_ends_with_the_run_and_needs_a_limit() -> None:
    life = running()
    assert life.on_memory(3000 * MIB, 0).memory_warning is None  # no limit: nothing to warn about
    life.on_memory(1900 * MIB, LIMIT)
    status, _ = life.on_exit(137, 110.0)
    assert status.memory_warning is None
    assert life.on_memory(1900 * MIB, LIMIT).memory_warning is None  # crashed: not running
    life.on_started("c1", 111.0)
    assert life.on_memory(1000 * MIB, LIMIT).memory_warning is None


def test_kept_state_round_trips_and_reads_bad_fields_as_defaults() -> None:
    kept = KeptState(desired=Desired.RUNNING, restarts=4)
    assert KeptState.from_json(kept.to_json()) == kept
    assert KeptState.of(SandboxStatus(desired=Desired.RUNNING, restarts=4)) == kept
    assert KeptState.from_json({"desired": "sideways", "restarts": -1}) == KeptState()
    assert KeptState.from_json({"restarts": True}) == KeptState()
    assert KeptState.from_json(["running"]) == KeptState()
