"""The sandbox manager: runs the OpenClaw gateway container and keeps its state model current.

Docker calls are blocking (docker-py) and run in threads. Docker events arrive on a watcher
thread and are handed to the event loop; readiness comes from polling the gateway's /readyz.
Everything the manager learns goes through ``SandboxLifecycle`` and is broadcast to subscribers;
changes of state, notices and memory warnings are also kept in the sandbox's ``EventHistory``.
While the container runs, one stats stream feeds both the memory warning and every /v1/stats
client. Routine work (each /readyz probe, each sample) is logged at debug; changes at info.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import docker
import docker.errors
import httpx
import requests
from docker.models.containers import Container

from moltconsole_backend.sandbox import spec
from moltconsole_backend.sandbox.engine import (
    EngineUnavailable,
    api_error_text,
    connect,
    describe_engine_error,
    engine_address,
    parse_docker_time,
)
from moltconsole_backend.sandbox.history import EventHistory
from moltconsole_backend.sandbox.image import (
    BuildProgress,
    ImageBuilder,
    ImageBuildError,
    image_tag,
)
from moltconsole_backend.sandbox.state import (
    MEMORY_ADVICE,
    MEMORY_CLEAR_PERCENT,
    Desired,
    KeptState,
    RestartPolicy,
    SandboxLifecycle,
    SandboxState,
    SandboxStatus,
    ScheduleRestart,
)
from moltconsole_backend.sandbox.stats import StatsSample, compute_sample
from moltconsole_backend.settings import Settings
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.events import EventKind, EventLevel, SandboxEvent

log = logging.getLogger(__name__)
T = TypeVar("T")

RUNNING_STATES = (SandboxState.STARTING, SandboxState.READY, SandboxState.UNHEALTHY)
SETTLED_STATES = frozenset(
    {
        SandboxState.READY,
        SandboxState.STOPPED,
        SandboxState.ABSENT,
        SandboxState.CRASH_LOOP,
        SandboxState.CONFIG_INVALID,
        SandboxState.FAILED,
        SandboxState.ENGINE_DOWN,
        SandboxState.UNHEALTHY,
    }
)
# States whose reason changes while they last (a failure count): only entering them is news.
ROUTINE_REASONS = frozenset({SandboxState.STARTING, SandboxState.UNHEALTHY})
# How each state reads in the history: trouble stands out from routine.
STATE_LEVELS: dict[SandboxState, EventLevel] = {
    SandboxState.ENGINE_DOWN: "error",
    SandboxState.UNHEALTHY: "warning",
    SandboxState.CRASHED: "error",
    SandboxState.CRASH_LOOP: "error",
    SandboxState.CONFIG_INVALID: "error",
    SandboxState.FAILED: "error",
}


class OperationError(Exception):
    """A user-requested operation could not be done; the message says why and what to do."""


class SandboxManager:
    """Owns one sandbox container: lifecycle, supervision, exec, stats and process list."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[], docker.DockerClient] = connect,
    ) -> None:
        self.settings = settings
        sb = settings.sandbox
        self.lifecycle = SandboxLifecycle(
            RestartPolicy(
                backoff_initial=sb.restart_backoff_initial,
                backoff_max=sb.restart_backoff_max,
                crash_loop_threshold=sb.crash_loop_threshold,
                crash_loop_window=sb.crash_loop_window,
                unhealthy_after=sb.unhealthy_after,
            )
        )
        self.paths = spec.SandboxPaths(settings.sandbox_dir)
        self.model_gateway: str | None = None  # set by the backend once the AI gateway listens
        # Who hands out the agent's gateway token; the backend sets its gateway service here.
        self.model_tokens: spec.ModelTokens = spec.FileModelTokens(settings.paths.data_dir)
        self.name = spec.container_name(settings)
        self._client_factory = client_factory
        self._client: docker.DockerClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._waiters: list[tuple[Callable[[SandboxStatus], bool], asyncio.Future[SandboxStatus]]] = []
        self._op_lock = asyncio.Lock()
        # trust_env=False: a proxy setting must not route the loopback probe elsewhere.
        # A bare transport, not a client: httpx's client logs every request at info, and a
        # probe every few seconds is routine. No proxy either: the probe is for loopback.
        self._probe_transport = httpx.AsyncHTTPTransport(retries=0)
        self._stats_subscribers: set[asyncio.Queue[StatsSample | None]] = set()
        self._stats_task: asyncio.Task[None] | None = None
        self._stats_for = ""
        self._last_sample: StatsSample | None = None  # of the container followed now
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe_task: asyncio.Task[None] | None = None
        self._probe_for = ""
        self._lost_while_running = False
        self._restart_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._events_stream: Any = None
        self._closing = False
        self._removing = False
        self._published = SandboxStatus()
        self.history = EventHistory(self.paths.events)
        # The state the history last recorded; a change from it is the next event.
        last = self.history.latest_state()
        self._recorded: tuple[str, str] | None = (str(last.state), last.message) if last else None
        # What the user last asked for and the restart count survive backend restarts (and
        # host reboots).
        self._kept = self._read_kept()
        self._restore_pending = self._kept.desired == Desired.RUNNING
        self._publish(self.lifecycle.update(desired=self._kept.desired, restarts=self._kept.restarts))

    def _read_kept(self) -> KeptState:
        try:
            return KeptState.from_json(json.loads(self.paths.kept.read_text(encoding="utf-8")))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); assuming the sandbox is wanted stopped", self.paths.kept, exc)
            return KeptState()
        try:  # written by earlier versions: the wanted state alone
            return KeptState(desired=Desired(self.paths.desired.read_text(encoding="utf-8").strip()))
        except (OSError, ValueError):
            return KeptState()

    def _persist_kept(self, kept: KeptState) -> None:
        self._kept = kept
        try:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            tmp = self.paths.kept.with_suffix(".tmp")
            tmp.write_text(json.dumps(kept.to_json()) + "\n", encoding="utf-8")
            tmp.replace(self.paths.kept)
        except OSError as exc:
            log.warning("cannot record the wanted state and restart count in %s: %s", self.paths.kept, exc)

    # --- status and subscriptions ----------------------------------------------------------
    @property
    def status(self) -> SandboxStatus:
        """The current snapshot."""
        return self.lifecycle.status

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every status change and build progress message."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to ``queue``."""
        self._subscribers.discard(queue)

    def _broadcast(self, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A stuck subscriber loses its oldest message rather than stalling the backend.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(message)

    def _publish(self, status: SandboxStatus, *, record: bool = True) -> None:
        """Make ``status`` current: keep what must survive, record what changed, and tell
        everyone, if anything changed.

        ``record=False`` for a transition that is no news (adopting a running container).
        """
        status = self._decorate(status)
        self.lifecycle.status = status
        # Not lifecycle.status: the lifecycle has already moved on when it hands us its status.
        previous = self._published
        if status == previous:
            return  # a probe that changed nothing: nothing to tell (it ran every 50 ms while starting)
        self._published = status
        kept = KeptState.of(status)
        if kept != self._kept:
            self._persist_kept(kept)
        self._broadcast({"type": "status", "status": status.to_json()})
        if record:
            self._record_changes(previous, status)
        self._notify_changed()

    def _record_changes(self, previous: SandboxStatus, status: SandboxStatus) -> None:
        if status.state == previous.state and status.state in ROUTINE_REASONS:
            pass  # a new count in the same reason is no news
        elif status.state != SandboxState.UNKNOWN and (status.state.value, status.reason) != self._recorded:
            self._recorded = (status.state.value, status.reason)
            self._record("state", status.reason, STATE_LEVELS.get(status.state, "info"), status.state.value)
        if status.memory_warning and not previous.memory_warning:
            # The history keeps what happened; the advice is the alert's, while it lasts.
            self._record("memory", status.memory_warning.removesuffix(f" {MEMORY_ADVICE}"), "warning")
        elif previous.memory_warning and not status.memory_warning and status.state in RUNNING_STATES:
            self._record("memory", "memory: the sandbox is back under "
                         f"{MEMORY_CLEAR_PERCENT:.0f}% of its memory limit", "info")

    def _record(
        self, kind: EventKind, message: str, level: EventLevel, state: str | None = None
    ) -> SandboxEvent:
        """Keep an event in the history, log it, and send it to event subscribers."""
        event = self.history.append(kind, message, now=time.time(), level=level, state=state)
        log.log(logging.WARNING if level == "error" else logging.INFO, "sandbox %s", event.describe())
        self._broadcast({"type": "event", "event": event.to_json()})
        return event

    def notice(self, message: str, level: EventLevel = "warning") -> None:
        """A message for the user that is not a change of state: kept, logged and broadcast."""
        self._record("notice", message, level)
        self._broadcast({"type": "notice", "message": message})

    def _decorate(self, status: SandboxStatus) -> SandboxStatus:
        sb = self.settings.sandbox
        del sb
        return dataclasses.replace(
            status,
            gateway_url=self.gateway_url(),
            model_gateway=self.model_gateway,
            state_dir=str(self.paths.state),
            openclaw_version=status.openclaw_version or self.wanted_version(),
        )

    def _notify_changed(self) -> None:
        status = self.status
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(status):
                future.set_result(status)

    async def wait_for(
        self, predicate: Callable[[SandboxStatus], bool], timeout: float | None = None
    ) -> SandboxStatus:
        """Wait until the status satisfies ``predicate``; raise TimeoutError after ``timeout``."""
        if predicate(self.status):
            return self.status
        future: asyncio.Future[SandboxStatus] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Background work must never fail silently: log it and tell subscribers.
            exc = task.exception()
            log.error("background task failed: %r", exc, exc_info=exc)
            self.notice(f"internal error in the backend: {exc!r}; its log has the details", "error")

    @staticmethod
    def _in_own_thread(func: Callable[[], None]) -> asyncio.Future[None]:
        """Run a long-lived blocking pump on a daemon thread of its own.

        Streams (events, exec output, stats) can block for hours; on the shared default
        executor a few abandoned ones would starve every other Docker call.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def finish(exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

        def run() -> None:
            try:
                func()
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):  # loop closed
                    loop.call_soon_threadsafe(finish, exc)
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finish, None)

        threading.Thread(target=run, daemon=True, name="moltconsole-pump").start()
        return future

    # --- startup and shutdown --------------------------------------------------------------
    async def open(self) -> None:
        """Connect to the engine, adopt an existing container, and start watching events."""
        self._loop = asyncio.get_running_loop()
        self._watch_task = self._spawn(self._watch_engine())
        # Let the first look at the engine finish so the first status is not a guess.
        await self.wait_for(lambda s: s.state != SandboxState.UNKNOWN, timeout=60)

    async def close(self) -> None:
        """Stop watching; the container keeps running (the agent outlives the backend)."""
        self._closing = True
        stream = self._events_stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._probe_transport.aclose()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    async def _thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a short blocking Docker call; a lost engine becomes an OperationError."""
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except docker.errors.DockerException:
            raise  # the engine answered (APIError is also a requests error: keep it first)
        except requests.RequestException as exc:
            # docker-py lets the transport's errors through when the engine goes away mid-call.
            self._client = None
            reason = describe_engine_error(engine_address(), exc)
            self._engine_down(reason)
            raise OperationError(reason) from None

    def _engine_is_down(self) -> bool:
        return self.status.state == SandboxState.ENGINE_DOWN

    def _engine_down(self, reason: str) -> None:
        if self.status.desired == Desired.RUNNING:
            self._lost_while_running = True  # look again when the engine is back
        self._publish(self.lifecycle.on_engine_down(reason))

    async def _engine(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = await self._thread(self._client_factory)
            except EngineUnavailable as exc:
                self._engine_down(str(exc))
                raise OperationError(str(exc)) from None
        return self._client

    async def _watch_engine(self) -> None:
        """Follow Docker events for our container; reconnect when the engine comes back."""
        delay = 1.0
        while not self._closing:
            try:
                client = await self._engine()
                since = int(time.time())
                await self._resync()
                delay = 1.0
                await self._in_own_thread(functools.partial(self._pump_events, client, since))
            except OperationError:
                pass
            except (docker.errors.DockerException, requests.RequestException) as exc:
                self._client = None
                self._engine_down(describe_engine_error(engine_address(), exc))
            except Exception as exc:  # the watcher must survive anything the engine throws
                log.warning("event watcher: %s", exc)
                self._client = None
            if self._closing:
                return
            if self.status.state != SandboxState.ENGINE_DOWN:
                self._client = None
                self._engine_down(
                    f"lost the event stream from the Docker engine at {engine_address()}; reconnecting"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _pump_events(self, client: docker.DockerClient, since: int) -> None:
        """Blocking: forward our container's events to the loop until the stream ends."""
        stream = client.events(
            decode=True,
            since=since,
            filters={"type": "container", "label": f"{spec.LABEL_SANDBOX}={self.settings.sandbox.name}"},
        )
        self._events_stream = stream
        if self._closing:  # close() ran before the stream existed
            stream.close()
            return
        loop = self._loop
        assert loop is not None
        try:
            for event in stream:
                loop.call_soon_threadsafe(self._on_event, event)
        finally:
            self._events_stream = None

    def _on_event(self, event: dict[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        if attrs.get("name") and attrs.get("name") != self.name:
            return
        container_id = str(actor.get("ID") or event.get("id") or "")
        log.debug("docker event %s %s", action, container_id[:12])
        if action == "start":
            self._mark_started(container_id, time.time())
        elif action == "die":
            code = attrs.get("exitCode")
            when = float(event.get("timeNano") or 0) / 1e9 or float(event.get("time") or 0) or None
            self._spawn(self._handle_exit(int(code) if code is not None else None, container_id, when))
        elif action == "destroy":
            by_us = self._removing
            self._publish(self.lifecycle.on_removed(by_us, str(self.paths.state)))
        elif action == "oom":
            self.notice(
                f"the sandbox reached its memory limit ({self.settings.sandbox.memory_limit}) and the "
                "kernel killed a process in it. If this repeats, raise sandbox.memory_limit in "
                "config.toml, then destroy and start the sandbox (its state is kept).",
                "error",
            )

    async def _resync(self) -> None:
        """Derive the status from what the engine says now (startup, reconnect)."""
        container = await self._find()
        if container is None:
            keep = self.status.reason if self.status.state == SandboxState.ABSENT else ""
            self._publish(self.lifecycle.on_absent(keep))
            await self._restore_if_wanted()
            return
        self._adopt_attrs(container)
        state = container.attrs.get("State") or {}
        if state.get("Running"):
            if self.status.state not in RUNNING_STATES or self.status.container_id != container.id:
                self.lifecycle.want_running()
                started = parse_docker_time(state.get("StartedAt")) or time.time()
                # Adopting a running container: its readiness, once probed, is the news.
                self._publish(self.lifecycle.on_started(str(container.id), started), record=False)
            self._start_probe(str(container.id))
        elif self.status.desired == Desired.RUNNING and (
            self.status.state in RUNNING_STATES or self._lost_while_running
        ):
            # It died while we were not listening (engine restart): a crash like any other.
            self._lost_while_running = False
            self.lifecycle.update(state=SandboxState.STARTING, container_id=container.id)
            await self._handle_exit(state.get("ExitCode"), str(container.id), None)
        elif self.status.state not in (
            SandboxState.CRASHED,
            SandboxState.CRASH_LOOP,
            SandboxState.CONFIG_INVALID,
            SandboxState.FAILED,
        ):
            self._lost_while_running = False
            finished = parse_docker_time(state.get("FinishedAt"))
            self._publish(
                self.lifecycle.update(
                    state=SandboxState.STOPPED,
                    container_id=container.id,
                    reason="",
                    last_exit_code=state.get("ExitCode") if finished else None,
                )
            )
        await self._restore_if_wanted()

    async def _restore_if_wanted(self) -> None:
        """Bring the sandbox back after a backend or host restart if it was meant to run."""
        if not self._restore_pending:
            return
        self._restore_pending = False
        if self.status.state in (SandboxState.STOPPED, SandboxState.ABSENT):
            log.info("restoring the sandbox: it was running when the backend last stopped")
            self._spawn(self._restore())

    async def _restore(self) -> None:
        try:
            await self.start()
        except Exception as exc:  # reported through the status already; keep the backend up
            log.warning("could not restore the sandbox: %s", exc)

    def _adopt_attrs(self, container: Container) -> None:
        labels = (container.attrs.get("Config") or {}).get("Labels") or {}
        image = (container.attrs.get("Config") or {}).get("Image")
        self.lifecycle.update(
            container_id=container.id,
            image=image,
            openclaw_version=labels.get(spec.LABEL_VERSION),
        )

    async def _find(self) -> Container | None:
        client = await self._engine()
        try:
            return await self._thread(client.containers.get, self.name)
        except docker.errors.NotFound:
            return None

    # --- readiness -------------------------------------------------------------------------
    def _start_probe(self, container_id: str) -> None:
        self._start_stats(container_id)  # the memory warning needs samples, watched or not
        if self._probe_task is not None and not self._probe_task.done():
            if self._probe_for == container_id:
                return
            self._probe_task.cancel()  # still probing a container that is gone
        self._probe_for = container_id
        self._probe_task = self._spawn(self._probe(container_id))

    def gateway_url(self) -> str:
        """The gateway's address on the host (IPv6 literals in brackets)."""
        sb = self.settings.sandbox
        host = f"[{sb.bind_address}]" if ":" in sb.bind_address else sb.bind_address
        return f"http://{host}:{sb.gateway_port}"

    async def _readyz(self) -> tuple[bool, str]:
        request = httpx.Request(
            "GET", self.gateway_url() + "/readyz", extensions={"timeout": httpx.Timeout(2.0).as_dict()}
        )
        try:
            response = await self._probe_transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except Exception as exc:  # any failure is "not ready"; the probe must keep going
            log.debug("GET /readyz: %s", type(exc).__name__)
            return False, type(exc).__name__
        log.debug("GET /readyz %d", response.status_code)
        if response.status_code == 200:
            return True, ""
        return False, f"HTTP {response.status_code}"

    async def _probe(self, container_id: str) -> None:
        """Poll /readyz: quickly until ready, then at the health interval."""
        sb = self.settings.sandbox
        while self.status.container_id == container_id and self.status.state in RUNNING_STATES:
            ok, detail = await self._readyz()
            if self.status.container_id != container_id or self.status.state not in RUNNING_STATES:
                return
            self._publish(self.lifecycle.on_readyz(ok, time.time(), detail))
            status = self.status
            if (
                status.state == SandboxState.STARTING
                and status.started_at is not None
                and time.time() - status.started_at > sb.ready_timeout
            ):
                self._publish(
                    self.lifecycle.update(
                        state=SandboxState.UNHEALTHY,
                        reason=f"the gateway is not ready {sb.ready_timeout:.0f}s after start; "
                        f"look at its logs (docker logs {self.name}) or raise sandbox.ready_timeout",
                    )
                )
            fast = self.status.state == SandboxState.STARTING
            await asyncio.sleep(sb.readyz_interval if fast else sb.health_interval)

    # --- crashes and automatic restarts ----------------------------------------------------
    def _is_stale_exit(self, container_id: str, when: float | None) -> bool:
        status = self.status
        if status.container_id not in (None, container_id):
            return True  # a container we no longer track
        # A death from before the current run started (its event arrived late).
        return when is not None and status.started_at is not None and when < status.started_at

    async def _handle_exit(self, code: int | None, container_id: str, when: float | None) -> None:
        if self._is_stale_exit(container_id, when):
            return
        last = ""
        if self.status.desired == Desired.RUNNING:
            last = await self._last_log_line(container_id)
            if self._is_stale_exit(container_id, when):  # the user started it meanwhile
                return
        status, effect = self.lifecycle.on_exit(code, time.time(), last)
        self._publish(status)
        if isinstance(effect, ScheduleRestart):
            self._restart_task = self._spawn(self._restart_later(effect.delay))

    async def _last_log_line(self, container_id: str) -> str:
        try:
            client = await self._engine()
            raw = await self._thread(
                lambda: bytes(client.api.logs(container_id, tail=5, stdout=True, stderr=True))
            )
        except Exception:
            return ""
        lines = [ln for ln in raw.decode(errors="replace").splitlines() if ln.strip()]
        return sanitize(lines[-1])[:300] if lines else ""

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.status.state != SandboxState.CRASHED or self.status.desired != Desired.RUNNING:
            return
        self._publish(self.lifecycle.on_restarting())
        try:
            async with self._operation("restart the sandbox"):
                await self._start_container()
        except OperationError as exc:
            if self._engine_is_down():
                return  # picked up again when the engine is back
            self._publish(self.lifecycle.on_failed(str(exc)))

    # --- operations ------------------------------------------------------------------------
    def wanted_version(self) -> str:
        """The OpenClaw version for new containers: an explicit rebuild's pin, else the config's."""
        try:
            pinned = self.paths.pin.read_text(encoding="utf-8").strip()
        except OSError:
            pinned = ""
        return pinned or self.settings.sandbox.openclaw_version

    @contextlib.asynccontextmanager
    async def _operation(self, what: str) -> AsyncIterator[None]:
        """Serialise an operation and turn whatever goes wrong into a status and a message."""
        async with self._op_lock:
            try:
                yield
            except OperationError:
                raise
            except docker.errors.APIError as exc:
                raise self._fail(f"Docker could not {what}: {api_error_text(exc)}") from None
            except ImageBuildError as exc:
                raise self._fail(f"could not {what}: {exc}") from None
            except OSError as exc:
                raise self._fail(
                    f"could not {what}: {exc.strerror or exc} ({exc.filename or 'no file'}). "
                    f"Check that {self.paths.root} is writable by you."
                ) from None
            except docker.errors.DockerException as exc:
                raise self._fail(f"could not {what}: {exc}") from None

    async def start(self) -> SandboxStatus:
        """Build the image if needed, create the container if needed, start it."""
        async with self._operation("start the sandbox"):
            self.lifecycle.want_running()
            self._cancel_restart()
            await self._start_container()
        return self.status

    async def _start_container(self) -> None:
        client = await self._engine()
        container = await self._find()
        if container is not None and (container.attrs.get("State") or {}).get("Running"):
            self._resync_soon()
            return
        if container is None:
            container = await self._create(client, self.wanted_version())
        else:
            self._check_port_free()
        # Stamped before the call: a death event older than this belongs to an earlier run.
        started_at = time.time()
        try:
            await self._thread(container.start)
        except docker.errors.APIError as exc:
            raise self._fail(self._describe_start_error(exc)) from None
        # Don't wait for the start event to say what we already know.
        self._mark_started(str(container.id), started_at)

    def _mark_started(self, container_id: str, started_at: float) -> None:
        status = self.status
        if status.container_id == container_id and status.state in RUNNING_STATES:
            return  # already known (the event and our own start both report it)
        self._publish(self.lifecycle.on_started(container_id, started_at))
        self._start_probe(container_id)

    def _resync_soon(self) -> None:
        self._spawn(self._resync())

    def _cancel_restart(self) -> None:
        if self._restart_task is not None and not self._restart_task.done():
            self._restart_task.cancel()
        self._restart_task = None

    def _fail(self, reason: str) -> OperationError:
        self._publish(self.lifecycle.on_failed(reason))
        return OperationError(reason)

    def _check_port_free(self) -> None:
        sb = self.settings.sandbox
        with socket.socket(socket.AF_INET6 if ":" in sb.bind_address else socket.AF_INET) as probe:
            # SO_REUSEADDR: connections lingering in TIME_WAIT are no conflict, a listener is.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((sb.bind_address, sb.gateway_port))
            except OSError as exc:
                raise self._fail(
                    f"port {sb.gateway_port} on {sb.bind_address} is already in use "
                    f"({exc.strerror}). Stop the program using it, or choose another port with "
                    "sandbox.gateway_port in config.toml (or MOLTCONSOLE_SANDBOX__GATEWAY_PORT)."
                ) from None

    def _describe_start_error(self, exc: docker.errors.APIError) -> str:
        text = api_error_text(exc)
        sb = self.settings.sandbox
        if "port is already allocated" in text or "address already in use" in text:
            return (
                f"port {sb.gateway_port} on {sb.bind_address} is already in use. Choose another "
                "with sandbox.gateway_port in config.toml (or MOLTCONSOLE_SANDBOX__GATEWAY_PORT), "
                "then destroy and start the sandbox (the state directory is kept)."
            )
        return f"Docker could not start the sandbox: {text}"

    async def ensure_image(self, version: str, *, force: bool = False) -> str:
        """The image tag for ``version``, built first if missing (or if ``force``).

        While building the state is BUILDING; afterwards it is read back from the engine, so a
        container that kept running through a failed rebuild is still shown as running.
        """
        client = await self._engine()
        sb = self.settings.sandbox
        builder = ImageBuilder(
            client,
            repository=sb.image_repository,
            version=version,
            route=sb.build_route,
            base_image=sb.base_image,
            cache_dir=self.settings.paths.cache_dir,
        )
        tag = image_tag(sb.image_repository, version)
        if not force and await self._thread(builder.exists):
            return tag
        self._publish(self.lifecycle.on_building(f"building {tag}"))
        loop = asyncio.get_running_loop()

        def progress(item: BuildProgress) -> None:
            loop.call_soon_threadsafe(
                self._broadcast, {"type": "progress", "step": item.step, "message": item.message}
            )

        try:
            await self._thread(builder.build, progress)
        except ImageBuildError as exc:
            reason = f"building {tag} failed: {exc}"
            await self._resync()
            if self.status.state in RUNNING_STATES:
                # The old container still serves: report the failure without hiding that.
                self.notice(reason, "error")
                raise OperationError(reason) from None
            raise self._fail(reason) from None
        await self._resync()
        return tag

    async def _create(self, client: docker.DockerClient, version: str) -> Container:
        tag = await self.ensure_image(version)
        self._check_port_free()
        await self._thread(spec.prepare_host_dirs, self.paths)
        gateway_token = spec.read_or_create_token(self.paths.secrets / "gateway-token")
        # Every new container gets a new model token: one removed behind our back (docker rm)
        # leaves no token that still works.
        model_token = self.model_tokens.rotate(self.settings.sandbox.name)
        env = spec.container_env(self.settings, gateway_token, model_token)
        kwargs = spec.create_kwargs(self.settings, tag, version, self.paths, env)
        try:
            container: Container = await self._thread(client.containers.create, **kwargs)
        except docker.errors.APIError as exc:
            raise self._fail(f"Docker could not create the sandbox: {api_error_text(exc)}") from None
        self._adopt_attrs(container)
        self._publish(self.status)
        return container

    async def stop(self) -> SandboxStatus:
        """Stop the container (OpenClaw drains first); nothing is removed."""
        async with self._operation("stop the sandbox"):
            await self._stop()
        return self.status

    async def _stop(self) -> None:
        self.lifecycle.want_stopped()
        self._cancel_restart()
        container = await self._find()
        if container is None:
            self._publish(self.lifecycle.on_absent())
            return
        if not (container.attrs.get("State") or {}).get("Running"):
            self._publish(self.lifecycle.update(state=SandboxState.STOPPED, reason=""))
            return
        self._publish(self.lifecycle.on_stopping())
        try:
            await self._thread(container.stop, timeout=self.settings.sandbox.stop_timeout)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise self._fail(f"Docker could not stop the sandbox: {api_error_text(exc)}") from None
        # The die event moves the state to STOPPED; wait for it so callers see a settled state.
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda s: s.state != SandboxState.STOPPING, timeout=5)
        if self.status.state == SandboxState.STOPPING:
            self._publish(self.lifecycle.update(state=SandboxState.STOPPED))

    async def restart(self) -> SandboxStatus:
        """Stop, then start."""
        async with self._operation("restart the sandbox"):
            await self._stop()
            self.lifecycle.want_running()
            await self._start_container()
        return self.status

    async def destroy(self) -> SandboxStatus:
        """Remove the container. The state and logs directories on the host are kept."""
        async with self._operation("remove the sandbox"):
            await self._destroy()
        return self.status

    async def _destroy(self) -> None:
        await self._stop()
        container = await self._find()
        if container is None:
            self._retire_token()
            return
        self._removing = True
        try:
            await self._thread(container.remove, force=True)
            # The destroy event moves the state to ABSENT; wait for it, briefly.
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda s: s.state == SandboxState.ABSENT, timeout=10)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise self._fail(f"Docker could not remove the sandbox: {api_error_text(exc)}") from None
        finally:
            self._removing = False
        self._retire_token()
        if self.status.state != SandboxState.ABSENT:
            self._publish(self.lifecycle.on_absent())

    def _retire_token(self) -> None:
        """The removed container's model token stops working now (and never passes to the next)."""
        self.model_tokens.rotate(self.settings.sandbox.name)

    async def rebuild(self, version: str | None = None) -> SandboxStatus:
        """Build the image (for ``version`` or the configured one) and recreate the container.

        An explicit version is pinned for this sandbox; no version returns to the config's.
        The state directory is kept, so an upgrade keeps the agent's memory. If the build
        fails, the old container is left as it was.
        """
        async with self._operation("rebuild the sandbox"):
            target = version or self.settings.sandbox.openclaw_version
            was_running = self.status.desired == Desired.RUNNING
            await self.ensure_image(target, force=True)
            if version:
                self.paths.root.mkdir(parents=True, exist_ok=True)
                self.paths.pin.write_text(version + "\n", encoding="utf-8")
            else:
                self.paths.pin.unlink(missing_ok=True)
            await self._destroy()
            if was_running:
                self.lifecycle.want_running()
                await self._start_container()
        return self.status

    async def rotate_token(self) -> SandboxStatus:
        """Replace the agent's gateway token; the old one is refused from this moment.

        A container carries its token in its environment, which cannot change, so the
        container is removed (the state directory is kept, as with destroy) and, if the sandbox
        was wanted running, created and started again with the new token. Otherwise the next
        start creates it with the new token.
        """
        async with self._operation("rotate the gateway token"):
            was_running = self.status.desired == Desired.RUNNING
            await self._destroy()  # rotates the token, even without a container
            if was_running:
                self.lifecycle.want_running()
                await self._start_container()  # creates the container: with another new token
        return self.status

    # --- inside the container --------------------------------------------------------------
    async def _running_container(self) -> Container:
        container = await self._find()
        if container is None or not (container.attrs.get("State") or {}).get("Running"):
            raise OperationError("the sandbox is not running. Start it first (moltconsole start).")
        return container

    async def exec_stream(
        self, cmd: list[str], *, user: str | None = None
    ) -> AsyncGenerator[tuple[str, bytes] | int]:
        """Run ``cmd`` inside the container; yield (stream, chunk) pairs, then the exit code.

        Closing the generator early (the client went away) closes the exec's connection.
        """
        container = await self._running_container()
        client = await self._engine()
        try:
            exec_id = str(
                (
                    await self._thread(
                        client.api.exec_create,
                        container.id,
                        cmd,
                        stdout=True,
                        stderr=True,
                        user=user or "",
                    )
                )["Id"]
            )
            output: Any = await self._thread(client.api.exec_start, exec_id, stream=True, demux=True)
        except docker.errors.APIError as exc:
            raise OperationError(f"exec failed: {api_error_text(exc)}") from None
        queue: asyncio.Queue[tuple[str, bytes] | BaseException | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def put(item: tuple[str, bytes] | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for out, err in output:
                    if out:
                        put(("stdout", out))
                    if err:
                        put(("stderr", err))
            except Exception as exc:
                put(exc)
            finally:
                put(None)

        pumping = self._in_own_thread(pump)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise OperationError(f"exec output stream broke: {item}")
                yield item
        finally:
            if not pumping.done():
                with contextlib.suppress(Exception):
                    output.close()  # unblocks the pump thread
        yield await self._exec_exit_code(client, exec_id)

    async def _exec_exit_code(self, client: docker.DockerClient, exec_id: str) -> int:
        # The output ends when the process closes it; its exit is recorded a moment later.
        for _ in range(100):
            info = await self._thread(client.api.exec_inspect, exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await asyncio.sleep(0.02)
        raise OperationError("the command's output ended but Docker reports no exit code")

    async def exec(self, cmd: list[str], *, user: str | None = None) -> tuple[int, str, str]:
        """Run ``cmd`` to completion; return exit code, stdout and stderr."""
        out: list[bytes] = []
        err: list[bytes] = []
        code = -1
        async for item in self.exec_stream(cmd, user=user):
            if isinstance(item, int):
                code = item
            else:
                (out if item[0] == "stdout" else err).append(item[1])
        return code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")

    async def processes(self) -> dict[str, Any]:
        """The container's processes as ``docker top`` reports them."""
        container = await self._running_container()
        try:
            top: dict[str, Any] = await self._thread(
                lambda: dict(container.top(ps_args="-o pid,ppid,uid,pcpu,rss,etime,args"))
            )
        except docker.errors.APIError:
            try:
                top = await self._thread(lambda: dict(container.top()))
            except docker.errors.APIError as exc:
                raise OperationError(f"cannot list processes: {api_error_text(exc)}") from None
        return {"titles": top.get("Titles") or [], "processes": top.get("Processes") or []}

    async def stats(self) -> AsyncGenerator[StatsSample]:
        """A live stream of resource samples, about one per second, until the sandbox stops."""
        container = await self._running_container()
        # A few samples at most: a reader that falls behind loses the oldest.
        queue: asyncio.Queue[StatsSample | None] = asyncio.Queue(maxsize=10)
        self._stats_subscribers.add(queue)
        self._start_stats(str(container.id))  # normally running since the container started
        if self._last_sample is not None:
            queue.put_nowait(self._last_sample)  # something to show now, not in a second
        try:
            while (sample := await queue.get()) is not None:
                yield sample
        finally:
            self._stats_subscribers.discard(queue)

    def _start_stats(self, container_id: str) -> None:
        if self._stats_task is not None and not self._stats_task.done():
            if self._stats_for == container_id:
                return
            self._stats_task.cancel()  # still following a container that is gone
        self._last_sample = None
        self._stats_for = container_id
        self._stats_task = self._spawn(self._follow_stats(container_id))

    def _running(self, container_id: str) -> bool:
        return self.status.container_id == container_id and self.status.state in RUNNING_STATES

    async def _follow_stats(self, container_id: str) -> None:
        """The container's stats stream, while it runs: the memory warning and every
        /v1/stats reader take their samples from this one stream."""
        try:
            while self._running(container_id):
                await self._stats_stream(container_id)
                if self._running(container_id):
                    await asyncio.sleep(1.0)  # the engine ended the stream early: follow again
        finally:
            self._last_sample = None
            for queue in list(self._stats_subscribers):
                self._offer(queue, None)

    async def _stats_stream(self, container_id: str) -> None:
        try:
            client = await self._engine()
        except OperationError:
            return
        # Unbounded, but only ever a few items: one sample a second, consumed as they come.
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def put(item: dict[str, Any] | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                stream: Iterator[dict[str, Any]] = client.api.stats(container_id, stream=True, decode=True)
                for raw in stream:
                    if stop.is_set():
                        break
                    put(raw)
            except Exception as exc:
                log.debug("stats stream ended: %s", exc)
            finally:
                put(None)

        self._in_own_thread(pump)
        try:
            while (raw := await queue.get()) is not None and self._running(container_id):
                if str(raw.get("read", "")).startswith("0001-"):
                    continue  # the engine's empty sample of a container that is not running
                self._on_sample(compute_sample(raw))
        finally:
            stop.set()

    def _on_sample(self, sample: StatsSample) -> None:
        self._last_sample = sample
        warning = self.status.memory_warning
        status = self.lifecycle.on_memory(sample.memory_bytes, sample.memory_limit)
        if status.memory_warning != warning:
            self._publish(status)
        for queue in list(self._stats_subscribers):
            self._offer(queue, sample)

    @staticmethod
    def _offer(queue: asyncio.Queue[StatsSample | None], item: StatsSample | None) -> None:
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(item)
