"""The sandbox state model: a pure state machine fed by Docker events, /readyz and user intent.

No I/O happens here. The manager feeds observations in (``on_*`` methods) and carries out the
effects that come back (restart after a delay), which keeps the rules unit-testable. What must
survive a backend restart (the wanted state, the restart count) is a ``KeptState``, which the
manager writes to disk whenever it changes.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

# The state names and the status are wire messages, shared with the console.
from moltconsole_shared.wire.sandbox import Desired as Desired
from moltconsole_shared.wire.sandbox import SandboxState as SandboxState
from moltconsole_shared.wire.sandbox import SandboxStatus as SandboxStatus

EXIT_CONFIG_INVALID = 78  # OpenClaw's exit code (EX_CONFIG) when openclaw.json is invalid.
MEMORY_WARN_PERCENT = 90.0  # of the memory limit, working set only: warn from here
MEMORY_CLEAR_PERCENT = 85.0  # ... until it falls below this (no flapping around the threshold)
MIB = 2**20
# Two lines at 80 columns with the figures before it (destroy keeps the state directory).
MEMORY_ADVICE = "and is killed at the limit. Raise sandbox.memory_limit, then destroy and start it."


@dataclass(frozen=True)
class KeptState:
    """What outlives the backend: whether the user wants the sandbox running, how many times
    moltconsole restarted it after a crash (shown as ``restarts``), and the exit code of its
    last run (the container that had it may be gone)."""

    desired: Desired = Desired.STOPPED
    restarts: int = 0
    last_exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "desired": self.desired.value, "restarts": self.restarts, "last_exit_code": self.last_exit_code,
        }

    @classmethod
    def from_json(cls, data: Any) -> KeptState:
        """The inverse of to_json; a missing or bad field reads as its default."""
        if not isinstance(data, dict):
            return cls()
        try:
            desired = Desired(data.get("desired", Desired.STOPPED.value))
        except ValueError:
            desired = Desired.STOPPED
        restarts = data.get("restarts", 0)
        if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 0:
            restarts = 0
        code = data.get("last_exit_code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = None
        return cls(desired=desired, restarts=restarts, last_exit_code=code)

    @classmethod
    def of(cls, status: SandboxStatus) -> KeptState:
        """The part of ``status`` that is kept."""
        return cls(desired=status.desired, restarts=status.restarts, last_exit_code=status.last_exit_code)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff and crash-loop limits."""

    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    crash_loop_threshold: int = 5
    crash_loop_window: float = 300.0
    unhealthy_after: int = 3


@dataclass(frozen=True)
class ScheduleRestart:
    """Effect: start the container again after ``delay`` seconds."""

    delay: float


class SandboxLifecycle:
    """Rules that turn observations into the next status and the effects to carry out."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.status = SandboxStatus()
        self._crashes: deque[float] = deque()
        self._readyz_failures = 0
        self._expect_exit = False

    def update(self, **changes: Any) -> SandboxStatus:
        """Replace fields of the current status (for facts read straight from the engine)."""
        self.status = dataclasses.replace(self.status, **changes)
        return self.status

    # --- user intent -------------------------------------------------------------------
    def want_running(self) -> SandboxStatus:
        """The user asked to start: forget earlier crashes, clear a crash loop."""
        self._crashes.clear()
        self._expect_exit = False
        return self.update(desired=Desired.RUNNING, restart_at=None)

    def want_stopped(self) -> SandboxStatus:
        """The user asked to stop: an exit that follows is not a crash."""
        self._expect_exit = True
        return self.update(desired=Desired.STOPPED, restart_at=None)

    # --- observations ------------------------------------------------------------------
    def on_engine_down(self, reason: str) -> SandboxStatus:
        """The Docker engine is unreachable."""
        return self.update(state=SandboxState.ENGINE_DOWN, reason=reason)

    def on_absent(self, reason: str = "") -> SandboxStatus:
        """There is no container."""
        return self.update(
            state=SandboxState.ABSENT,
            reason=reason,
            container_id=None,
            started_at=None,
            ready_at=None,
            restart_at=None,
        )

    def on_building(self, message: str) -> SandboxStatus:
        """An image build is in progress."""
        return self.update(state=SandboxState.BUILDING, reason=message)

    def on_failed(self, reason: str) -> SandboxStatus:
        """An operation failed; the reason names the cause and the fix."""
        return self.update(state=SandboxState.FAILED, reason=reason, restart_at=None)

    def on_stopping(self) -> SandboxStatus:
        """A stop is under way."""
        self._expect_exit = True
        return self.update(state=SandboxState.STOPPING, reason="")

    def on_started(self, container_id: str, started_at: float) -> SandboxStatus:
        """The container process started (Docker ``start`` event or inspect)."""
        self._readyz_failures = 0
        self._expect_exit = False
        return self.update(
            state=SandboxState.STARTING,
            reason="waiting for the gateway's /readyz",
            container_id=container_id,
            started_at=started_at,
            ready_at=None,
            restart_at=None,
            memory_warning=None,
        )

    def on_readyz(self, ok: bool, now: float, detail: str = "") -> SandboxStatus:
        """A /readyz probe answered (ok) or failed."""
        state = self.status.state
        if state not in (SandboxState.STARTING, SandboxState.READY, SandboxState.UNHEALTHY):
            return self.status
        if ok:
            self._readyz_failures = 0
            if state != SandboxState.READY:
                return self.update(state=SandboxState.READY, reason="", ready_at=now)
            return self.status
        self._readyz_failures += 1
        if state != SandboxState.STARTING and self._readyz_failures >= self.policy.unhealthy_after:
            return self.update(
                state=SandboxState.UNHEALTHY,
                reason=f"/readyz failed {self._readyz_failures} times in a row: {detail}".rstrip(": "),
            )
        return self.status

    def on_exit(
        self, exit_code: int | None, now: float, last_log: str = ""
    ) -> tuple[SandboxStatus, ScheduleRestart | None]:
        """The container's main process exited (Docker ``die`` event)."""
        tail = f" Last log line: {last_log}" if last_log else ""
        base: dict[str, Any] = {
            "last_exit_code": exit_code, "ready_at": None, "started_at": None, "memory_warning": None,
        }
        if self._expect_exit or self.status.desired == Desired.STOPPED:
            self._expect_exit = False
            return self.update(state=SandboxState.STOPPED, reason="", **base), None
        if exit_code == EXIT_CONFIG_INVALID:
            return self.update(
                state=SandboxState.CONFIG_INVALID,
                reason=(
                    "OpenClaw rejected its configuration (exit code 78)."
                    f"{tail} Fix openclaw.json in the state directory "
                    "(or remove the offending key), then start the sandbox again."
                ),
                restart_at=None,
                **base,
            ), None
        window = self.policy.crash_loop_window
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > window:
            self._crashes.popleft()
        crashes = len(self._crashes)
        if crashes >= self.policy.crash_loop_threshold:
            return self.update(
                state=SandboxState.CRASH_LOOP,
                reason=(
                    f"the gateway exited {crashes} times within {window:.0f}s "
                    f"(last exit code {exit_code}); automatic restarts stopped.{tail} "
                    "Look at the logs, fix the cause, then start the sandbox again."
                ),
                restart_at=None,
                **base,
            ), None
        delay = min(self.policy.backoff_max, self.policy.backoff_initial * (2 ** (crashes - 1)))
        return self.update(
            state=SandboxState.CRASHED,
            reason=f"the gateway exited with code {exit_code}; restarting in {delay:.1f}s.{tail}",
            restart_at=now + delay,
            **base,
        ), ScheduleRestart(delay)

    def on_memory(self, working_set: int, limit: int) -> SandboxStatus:
        """A memory sample: warn once the working set reaches MEMORY_WARN_PERCENT of the limit,
        and stop warning once it is back under MEMORY_CLEAR_PERCENT.

        The working set leaves out the page cache, which the kernel drops before it kills
        anything; without swap, what remains is what the limit can kill the gateway for.
        """
        if limit <= 0 or self.status.state not in (
            SandboxState.STARTING, SandboxState.READY, SandboxState.UNHEALTHY
        ):
            return self.status
        percent = working_set / limit * 100.0
        if self.status.memory_warning is None:
            if percent < MEMORY_WARN_PERCENT:
                return self.status
            # The figures of the moment it crossed; the live ones are on the Dashboard.
            return self.update(memory_warning=(
                f"memory: the sandbox reached {working_set / MIB:,.0f} of {limit / MIB:,.0f} MiB "
                f"({percent:.0f}%, cache not counted) {MEMORY_ADVICE}"
            ))
        if percent < MEMORY_CLEAR_PERCENT:
            return self.update(memory_warning=None)
        return self.status

    def on_restarting(self) -> SandboxStatus:
        """An automatic restart is being carried out."""
        return self.update(restarts=self.status.restarts + 1, restart_at=None)

    def on_removed(self, by_us: bool, state_dir: str) -> SandboxStatus:
        """The container was removed, by moltconsole or behind its back."""
        reason = (
            ""
            if by_us
            else f"the container was removed outside moltconsole; the state directory {state_dir} "
            "is kept. Start the sandbox to create it again."
        )
        self.update(desired=Desired.STOPPED if not by_us else self.status.desired)
        return self.on_absent(reason)
