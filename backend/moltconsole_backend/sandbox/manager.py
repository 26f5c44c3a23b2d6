"""The sandbox manager: runs the OpenClaw gateway container and keeps its state model current.

It composes the parts that each do one job, and owns the operations a user asks for (start,
stop, restart, destroy, rebuild, rotate the token):

- connection.py: the one connection to the container engine (engine.py's ``ContainerEngine``;
  Docker today), calls in threads, a lost engine reported as ENGINE_DOWN;
- watch.py: the engine watch, following the engine's events and reconnecting;
- readiness.py: the readiness probe, polling the gateway's /readyz;
- supervision.py: what a death means, and the restarts after a crash;
- inside.py: commands run inside the container, and its process list;
- stats_feed.py: one stats stream while the container runs, for the memory warning and readers;
- hub.py: the status hub, telling subscribers and waiters and keeping the event history;
- kept.py: the wanted state and restart count, which survive backend restarts.

Every change goes through ``SandboxLifecycle`` (state.py) and then ``publish``. Routine work
(each /readyz probe, each sample) is logged at debug; changes at info.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from moltconsole_backend.sandbox import spec
from moltconsole_backend.sandbox.background import BackgroundTasks, in_own_thread
from moltconsole_backend.sandbox.connection import EngineConnection
from moltconsole_backend.sandbox.engine import (
    ContainerEngine,
    ContainerInfo,
    ContainerNotFound,
    DockerEngine,
    EngineError,
    EngineRefused,
    connect_engine,
)
from moltconsole_backend.sandbox.errors import OperationError as OperationError
from moltconsole_backend.sandbox.history import EventHistory
from moltconsole_backend.sandbox.hub import RUNNING_STATES as RUNNING_STATES
from moltconsole_backend.sandbox.hub import StatusHub
from moltconsole_backend.sandbox.image import BuildProgress, ImageBuildError, image_tag
from moltconsole_backend.sandbox.inside import ContainerCommands
from moltconsole_backend.sandbox.kept import KeptStateFile
from moltconsole_backend.sandbox.readiness import ReadinessProbe
from moltconsole_backend.sandbox.state import (
    Desired,
    KeptState,
    RestartPolicy,
    SandboxLifecycle,
    SandboxState,
    SandboxStatus,
)
from moltconsole_backend.sandbox.stats import StatsSample
from moltconsole_backend.sandbox.stats_feed import StatsFeed
from moltconsole_backend.sandbox.supervision import Supervisor
from moltconsole_backend.sandbox.watch import EngineWatch
from moltconsole_backend.settings import Settings
from moltconsole_shared.wire.events import EventLevel
from moltconsole_shared.wire.sandbox import EVENT_STREAM, ProgressMessage

T = TypeVar("T")

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)


class MemoryHooks(Protocol):
    """What the manager asks of the sandbox's memory keeper."""

    async def after_stop(self, operation: str) -> None: ...

    async def before_start(self) -> object: ...


class SandboxManager:
    """Owns one sandbox container: lifecycle, supervision, exec, stats and process list.

    ``engine_factory`` connects to the engine that runs the container (blocking; called from a
    thread). ``client_factory`` is the same for a docker-py client (tests pass a stand-in).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[], docker.DockerClient] | None = None,
        engine_factory: Callable[[], ContainerEngine] = connect_engine,
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
        # Where this sandbox's settings live ("sandbox" or "sandboxes.NAME"), for messages.
        self.config_key = "sandbox"
        self.port_hint: str | None = None  # how to give it another port, where not config_key's
        # The sandbox's memory keeper (memory/keeper.py): a snapshot after each stop, and a
        # restore into an empty state directory before a start.
        self.memory: MemoryHooks | None = None
        # Asked before a start: why the sandbox may not start now (the fleet's memory check).
        self.admission: Callable[[SandboxManager], str | None] | None = None
        if client_factory is not None:
            make_client = client_factory
            engine_factory = lambda: DockerEngine(make_client())  # noqa: E731
        self.connection = EngineConnection(engine_factory, self._engine_down)
        self.tasks = BackgroundTasks(self._task_failed)
        self.hub = StatusHub(EventHistory(self.paths.events))
        self.history = self.hub.history
        self.watch = EngineWatch(self)
        self.readiness = ReadinessProbe(self)
        self.supervision = Supervisor(self)
        self.commands = ContainerCommands(self)
        self.stats_feed = StatsFeed(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._op_lock = asyncio.Lock()
        self._lost_while_running = False
        self._removing = False
        # What the user last asked for and the restart count survive backend restarts (and
        # host reboots).
        self._kept_file = KeptStateFile(self.paths)
        self._kept = self._kept_file.read()
        self._restore_pending = self._kept.desired == Desired.RUNNING
        kept = self._kept
        self.publish(self.lifecycle.update(
            desired=kept.desired, restarts=kept.restarts, last_exit_code=kept.last_exit_code,
        ))

    # --- status and subscriptions ----------------------------------------------------------
    @property
    def status(self) -> SandboxStatus:
        """The current snapshot."""
        return self.lifecycle.status

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the manager was opened on (for threads handing work back)."""
        assert self._loop is not None, "open() the manager first"
        return self._loop

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every status change, event, notice and build progress message."""
        return self.hub.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to ``queue``."""
        self.hub.unsubscribe(queue)

    def publish(self, status: SandboxStatus, *, record: bool = True) -> None:
        """Make ``status`` current: keep what must survive, record what changed, and tell
        everyone, if anything changed.

        ``record=False`` for a transition that is no news (adopting a running container).
        """
        status = self._decorate(status)
        self.lifecycle.status = status
        # Not lifecycle.status: the lifecycle has already moved on when it hands us its status.
        if status == self.hub.published:
            return  # a probe that changed nothing: nothing to tell (it ran every 50 ms while starting)
        kept = KeptState.of(status)
        if kept != self._kept:
            self._kept = kept
            self._kept_file.write(kept)
        self.hub.announce(status, record=record)

    def notice(self, message: str, level: EventLevel = "warning") -> None:
        """A message for the user that is not a change of state: kept, logged and broadcast."""
        self.hub.notice(message, level)

    def _decorate(self, status: SandboxStatus) -> SandboxStatus:
        return dataclasses.replace(
            status,
            gateway_url=self.gateway_url(),
            model_gateway=self.model_gateway,
            state_dir=str(self.paths.state),
            openclaw_version=status.openclaw_version or self.wanted_version(),
        )

    async def wait_for(
        self, predicate: Callable[[SandboxStatus], bool], timeout: float | None = None
    ) -> SandboxStatus:
        """Wait until the status satisfies ``predicate``; raise TimeoutError after ``timeout``."""
        return await self.hub.wait_for(lambda: self.status, predicate, timeout)

    def is_running(self, container_id: str) -> bool:
        """Whether ``container_id`` is the container running now."""
        return self.status.container_id == container_id and self.status.state in RUNNING_STATES

    def on_memory(self, sample: StatsSample) -> None:
        """A new resource sample: the memory warning follows it."""
        warning = self.status.memory_warning
        status = self.lifecycle.on_memory(sample.memory_bytes, sample.memory_limit)
        if status.memory_warning != warning:
            self.publish(status)

    def _task_failed(self, exc: BaseException) -> None:
        # Background work must never fail silently: log it and tell subscribers.
        log.error("background task failed: %r", exc, exc_info=exc)
        self.notice(f"internal error in the backend: {exc!r}; its log has the details", "error")

    # Kept for the log collector, which pumps its streams the same way.
    _in_own_thread = staticmethod(in_own_thread)

    # --- startup and shutdown --------------------------------------------------------------
    async def open(self) -> None:
        """Connect to the engine, adopt an existing container, and start watching events."""
        self._loop = asyncio.get_running_loop()
        self.tasks.spawn(self.watch.run())
        # Let the first look at the engine finish so the first status is not a guess.
        await self.wait_for(lambda s: s.state != SandboxState.UNKNOWN, timeout=60)

    async def close(self) -> None:
        """Stop watching; the container keeps running (the agent outlives the backend)."""
        self.watch.close()
        await self.tasks.cancel_all()
        await self.readiness.aclose()
        self.connection.close()

    def _engine_down(self, reason: str) -> None:
        if self.status.desired == Desired.RUNNING:
            self._lost_while_running = True  # look again when the engine is back
        self.publish(self.lifecycle.on_engine_down(reason))

    async def find(self) -> ContainerInfo | None:
        """The sandbox's container as the engine describes it now; None if there is none."""
        engine = await self.connection.get()
        return await self.connection.call(engine.inspect, self.name)

    async def resync(self) -> None:
        """Derive the status from what the engine says now (startup, reconnect)."""
        container = await self.find()
        if container is None:
            keep = self.status.reason if self.status.state == SandboxState.ABSENT else ""
            self.publish(self.lifecycle.on_absent(keep))
            await self._restore_if_wanted()
            return
        self._adopt(container)
        if container.running:
            if self.status.state not in RUNNING_STATES or self.status.container_id != container.id:
                self.lifecycle.want_running()
                started = container.started_at or time.time()
                # Adopting a running container: its readiness, once probed, is the news.
                self.publish(self.lifecycle.on_started(container.id, started), record=False)
            self._follow(container.id)
        elif self.status.desired == Desired.RUNNING and (
            self.status.state in RUNNING_STATES or self._lost_while_running
        ):
            # It died while we were not listening (engine restart): a crash like any other.
            self._lost_while_running = False
            self.lifecycle.update(state=SandboxState.STARTING, container_id=container.id)
            await self.supervision.handle_exit(container.exit_code, container.id, None)
        elif self.status.state not in (
            SandboxState.CRASHED,
            SandboxState.CRASH_LOOP,
            SandboxState.CONFIG_INVALID,
            SandboxState.FAILED,
        ):
            self._lost_while_running = False
            self.publish(
                self.lifecycle.update(
                    state=SandboxState.STOPPED,
                    container_id=container.id,
                    reason="",
                    last_exit_code=container.exit_code if container.finished_at else None,
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
            self.tasks.spawn(self._restore())

    async def _restore(self) -> None:
        try:
            await self.start()
        except Exception as exc:  # reported through the status already; keep the backend up
            log.warning("could not restore the sandbox: %s", exc)

    def _adopt(self, container: ContainerInfo) -> None:
        self.lifecycle.update(
            container_id=container.id,
            image=container.image,
            openclaw_version=container.labels.get(spec.LABEL_VERSION),
        )

    def _follow(self, container_id: str) -> None:
        """Probe the running container's readiness and follow its stats."""
        self.stats_feed.follow(container_id)  # the memory warning needs samples, watched or not
        self.readiness.follow(container_id)

    def mark_started(self, container_id: str, started_at: float) -> None:
        """The container runs (our own start, or its start event)."""
        status = self.status
        if status.container_id == container_id and status.state in RUNNING_STATES:
            return  # already known (the event and our own start both report it)
        self.publish(self.lifecycle.on_started(container_id, started_at))
        self._follow(container_id)

    def on_removed(self) -> None:
        """The container was removed (by us, or behind our back)."""
        self.publish(self.lifecycle.on_removed(self._removing, str(self.paths.state)))

    def gateway_url(self) -> str:
        """The gateway's address on the host (IPv6 literals in brackets)."""
        sb = self.settings.sandbox
        host = f"[{sb.bind_address}]" if ":" in sb.bind_address else sb.bind_address
        return f"http://{host}:{sb.gateway_port}"

    # --- operations ------------------------------------------------------------------------
    def wanted_version(self) -> str:
        """The OpenClaw version for new containers: an explicit rebuild's pin, else the config's."""
        try:
            pinned = self.paths.pin.read_text(encoding="utf-8").strip()
        except OSError:
            pinned = ""
        return pinned or self.settings.sandbox.openclaw_version

    @contextlib.asynccontextmanager
    async def operation(self, what: str) -> AsyncIterator[None]:
        """Serialise an operation and turn whatever goes wrong into a status and a message."""
        async with self._op_lock:
            try:
                yield
            except OperationError:
                raise
            except EngineRefused as exc:
                raise self._fail(f"Docker could not {what}: {exc}") from None
            except ImageBuildError as exc:
                raise self._fail(f"could not {what}: {exc}") from None
            except OSError as exc:
                raise self._fail(
                    f"could not {what}: {exc.strerror or exc} ({exc.filename or 'no file'}). "
                    f"Check that {self.paths.root} is writable by you."
                ) from None
            except EngineError as exc:
                raise self._fail(f"could not {what}: {exc}") from None

    async def start(self) -> SandboxStatus:
        """Build the image if needed, create the container if needed, start it."""
        async with self.operation("start the sandbox"):
            refusal = None if self.status.running or self.admission is None else self.admission(self)
            if refusal is not None:
                self.notice(refusal)
                raise OperationError(refusal)
            restored = None
            if self.memory is not None and not self.status.running:
                restored = await self.memory.before_start()
            if restored is not None:
                await self.give_state_to_sandbox()
            self.lifecycle.want_running()
            self.supervision.cancel_restart()
            await self.start_container()
        return self.status

    async def start_container(self) -> None:
        """Start the container, creating it (and its image) first if need be."""
        engine = await self.connection.get()
        container = await self.find()
        if container is not None and container.running:
            self.tasks.spawn(self.resync())
            return
        if container is None:
            container = await self._create(engine, self.wanted_version())
        else:
            self._check_port_free()
        # Stamped before the call: a death event older than this belongs to an earlier run.
        started_at = time.time()
        try:
            await self.connection.call(engine.start, container.id)
        except EngineRefused as exc:
            raise self._fail(self._describe_start_error(str(exc))) from None
        # Don't wait for the start event to say what we already know.
        self.mark_started(container.id, started_at)

    def _fail(self, reason: str) -> OperationError:
        self.publish(self.lifecycle.on_failed(reason))
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
                    f"{self._port_setting()}."
                ) from None

    def _port_setting(self) -> str:
        """Where the user sets this sandbox's gateway port."""
        if self.port_hint is not None:
            return self.port_hint
        if self.config_key == "sandbox":
            return "sandbox.gateway_port in config.toml (or MOLTCONSOLE_SANDBOX__GATEWAY_PORT)"
        return f"{self.config_key}.gateway_port in config.toml"

    def _describe_start_error(self, text: str) -> str:
        sb = self.settings.sandbox
        if "port is already allocated" in text or "address already in use" in text:
            return (
                f"port {sb.gateway_port} on {sb.bind_address} is already in use. Choose another "
                f"with {self._port_setting()}, then destroy and start the sandbox (the state "
                "directory is kept)."
            )
        return f"Docker could not start the sandbox: {text}"

    async def ensure_image(self, version: str, *, force: bool = False) -> str:
        """The image tag for ``version``, built first if missing (or if ``force``).

        While building the state is BUILDING; afterwards it is read back from the engine, so a
        container that kept running through a failed rebuild is still shown as running.
        """
        engine = await self.connection.get()
        sb = self.settings.sandbox
        image = engine.image(
            repository=sb.image_repository,
            version=version,
            route=sb.build_route,
            base_image=sb.base_image,
            cache_dir=self.settings.paths.cache_dir,
        )
        tag = image_tag(sb.image_repository, version)
        if not force and await self.connection.call(image.exists):
            return tag
        self.publish(self.lifecycle.on_building(f"building {tag}"))
        loop = asyncio.get_running_loop()

        def progress(item: BuildProgress) -> None:
            loop.call_soon_threadsafe(
                self.hub.broadcast, EVENT_STREAM.dump(ProgressMessage(item.step, item.message))
            )

        try:
            await self.connection.call(image.build, progress)
        except ImageBuildError as exc:
            reason = f"building {tag} failed: {exc}"
            await self.resync()
            if self.status.state in RUNNING_STATES:
                # The old container still serves: report the failure without hiding that.
                self.notice(reason, "error")
                raise OperationError(reason) from None
            raise self._fail(reason) from None
        await self.resync()
        return tag

    async def _create(self, engine: ContainerEngine, version: str) -> ContainerInfo:
        tag = await self.ensure_image(version)
        self._check_port_free()
        await asyncio.to_thread(spec.prepare_host_dirs, self.paths)
        gateway_token = spec.read_or_create_token(self.paths.secrets / "gateway-token")
        # Every new container gets a new model token: one removed behind our back (docker rm)
        # leaves no token that still works.
        model_token = self.model_tokens.rotate(self.settings.sandbox.name)
        env = spec.container_env(self.settings, gateway_token, model_token)
        kwargs = spec.create_kwargs(self.settings, tag, version, self.paths, env)
        try:
            container = await self.connection.call(engine.create, kwargs)
        except EngineRefused as exc:
            raise self._fail(f"Docker could not create the sandbox: {exc}") from None
        self._adopt(container)
        self.publish(self.status)
        return container

    async def stop(self) -> SandboxStatus:
        """Stop the container (OpenClaw drains first); nothing is removed."""
        async with self.operation("stop the sandbox"):
            await self._stop()
        return self.status

    async def _stop(self, operation: str = "stop") -> None:
        """Stop the container; once it has stopped, the memory snapshot ``operation`` waits for."""
        self.lifecycle.want_stopped()
        self.supervision.cancel_restart()
        container = await self.find()
        if container is None:
            self.publish(self.lifecycle.on_absent())
            return
        if not container.running:
            self.publish(self.lifecycle.update(state=SandboxState.STOPPED, reason=""))
            return
        self.publish(self.lifecycle.on_stopping())
        engine = await self.connection.get()
        try:
            await self.connection.call(engine.stop, container.id, self.settings.sandbox.stop_timeout)
        except ContainerNotFound:
            pass
        except EngineRefused as exc:
            raise self._fail(f"Docker could not stop the sandbox: {exc}") from None
        # The die event moves the state to STOPPED; wait for it so callers see a settled state.
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda s: s.state != SandboxState.STOPPING, timeout=5)
        if self.status.state == SandboxState.STOPPING:
            self.publish(self.lifecycle.update(state=SandboxState.STOPPED))
        if self.memory is not None:
            await self.memory.after_stop(operation)

    async def give_state_to_sandbox(self) -> None:
        """Files the backend wrote into the state directory (a restore) become the container
        user's, as at creation (a backend running as root would otherwise leave them root's)."""
        await asyncio.to_thread(spec.prepare_host_dirs, self.paths)

    async def while_stopped(self, what: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Stop the sandbox if it runs (its memory snapshot taken), do ``work`` with nothing
        else allowed to start it, and start it again if it ran; ``work``'s result, and whether
        the sandbox was stopped for it. A failing ``work`` still starts the sandbox again."""
        async with self.operation(what):
            was_running = self.status.running
            if was_running:
                await self._stop("restore")
            try:
                result = await work()
            finally:
                await self.give_state_to_sandbox()
                if was_running:
                    self.lifecycle.want_running()
                    await self.start_container()
        return result, was_running

    async def restart(self) -> SandboxStatus:
        """Stop, then start."""
        async with self.operation("restart the sandbox"):
            await self._stop("restart")
            self.lifecycle.want_running()
            await self.start_container()
        return self.status

    async def destroy(self) -> SandboxStatus:
        """Remove the container. The state and logs directories on the host are kept."""
        async with self.operation("remove the sandbox"):
            await self._destroy()
        return self.status

    async def _destroy(self, operation: str = "destroy") -> None:
        await self._stop(operation)
        container = await self.find()
        if container is None:
            self._retire_token()
            return
        engine = await self.connection.get()
        self._removing = True
        try:
            await self.connection.call(engine.remove, container.id)
            # The destroy event moves the state to ABSENT; wait for it, briefly.
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda s: s.state == SandboxState.ABSENT, timeout=10)
        except ContainerNotFound:
            pass
        except EngineRefused as exc:
            raise self._fail(f"Docker could not remove the sandbox: {exc}") from None
        finally:
            self._removing = False
        self._retire_token()
        if self.status.state != SandboxState.ABSENT:
            self.publish(self.lifecycle.on_absent())

    def _retire_token(self) -> None:
        """The removed container's model token stops working now (and never passes to the next)."""
        self.model_tokens.rotate(self.settings.sandbox.name)

    async def rebuild(self, version: str | None = None) -> SandboxStatus:
        """Build the image (for ``version`` or the configured one) and recreate the container.

        An explicit version is pinned for this sandbox; no version returns to the config's.
        The state directory is kept, so an upgrade keeps the agent's memory. If the build
        fails, the old container is left as it was.
        """
        async with self.operation("rebuild the sandbox"):
            target = version or self.settings.sandbox.openclaw_version
            was_running = self.status.desired == Desired.RUNNING
            await self.ensure_image(target, force=True)
            if version:
                self.paths.root.mkdir(parents=True, exist_ok=True)
                self.paths.pin.write_text(version + "\n", encoding="utf-8")
            else:
                self.paths.pin.unlink(missing_ok=True)
            await self._destroy("rebuild")
            if was_running:
                self.lifecycle.want_running()
                await self.start_container()
        return self.status

    async def rotate_token(self) -> SandboxStatus:
        """Replace the agent's gateway token; the old one is refused from this moment.

        A container carries its token in its environment, which cannot change, so the
        container is removed (the state directory is kept, as with destroy) and, if the sandbox
        was wanted running, created and started again with the new token. Otherwise the next
        start creates it with the new token.
        """
        async with self.operation("rotate the gateway token"):
            was_running = self.status.desired == Desired.RUNNING
            await self._destroy("rotate-token")  # rotates the token, even without a container
            if was_running:
                self.lifecycle.want_running()
                await self.start_container()  # creates the container: with another new token
        return self.status

    # --- inside the container --------------------------------------------------------------
    def exec_stream(
        self, cmd: list[str], *, user: str | None = None
    ) -> AsyncGenerator[tuple[str, bytes] | int]:
        """Run ``cmd`` inside the container; yield (stream, chunk) pairs, then the exit code.

        Closing the generator early (the client went away) closes the exec's connection.
        """
        return self.commands.exec_stream(cmd, user=user)

    async def exec(self, cmd: list[str], *, user: str | None = None) -> tuple[int, str, str]:
        """Run ``cmd`` to completion; return exit code, stdout and stderr."""
        return await self.commands.exec(cmd, user=user)

    async def processes(self) -> dict[str, Any]:
        """The container's processes as ``docker top`` reports them."""
        return await self.commands.processes()

    async def stats(self) -> AsyncGenerator[StatsSample]:
        """A live stream of resource samples, about one per second, until the sandbox stops."""
        container = await self.commands.running_container()
        async for sample in self.stats_feed.read(container.id):
            yield sample
