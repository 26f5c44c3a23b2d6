"""What the sandbox manager asks of a container engine, and the Docker engine that answers it.

``ContainerEngine`` is the whole of it: find, create, start, stop and remove one container,
follow its events and resource samples, run a command in it, read the end of its log, and build
its image. The manager and its parts speak only to this protocol and catch only the errors
below; docker-py is imported here and by the image builder (sandbox/image.py) that ``image``
wraps.
A driver for a remote Docker host or for Kubernetes would be another class with these methods;
README.md ("Where a sandbox can live") says what else would change.

All methods block: callers run them in threads. Streams (events, stats, exec output) are
iterators with a ``close`` that unblocks a reader waiting on them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import docker
import docker.errors
import requests

from moltconsole_backend.sandbox.stats import StatsSample, compute_sample

if TYPE_CHECKING:
    from moltconsole_backend.sandbox.image import ProgressCallback, Route

P = ParamSpec("P")
R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)


class EngineUnavailable(Exception):
    """The engine cannot be reached (or went away mid-call); the message names the cause and the fix."""


class EngineError(Exception):
    """The engine could not do what was asked, for a reason other than an answer (a bad argument)."""


class EngineRefused(EngineError):
    """The engine answered with an error; the message is its explanation."""


class ContainerNotFound(EngineRefused):
    """No container by that name or id."""


@dataclass(frozen=True)
class ContainerInfo:
    """One container as the engine describes it now."""

    id: str
    running: bool
    exit_code: int | None = None  # of its last run (0 if it never ran: see finished_at)
    started_at: float | None = None  # epoch seconds; None if it never ran
    finished_at: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None


@dataclass(frozen=True)
class ContainerEvent:
    """A change in a container's life: ``action`` is start, die, oom or destroy (others pass by)."""

    action: str
    container_id: str
    name: str | None = None
    exit_code: int | None = None  # of a die
    time: float | None = None  # epoch seconds, when the engine says


class Stream(Protocol[T_co]):
    """A blocking iterator whose ``close`` ends it from another thread."""

    def __iter__(self) -> Iterator[T_co]: ...

    def close(self) -> None: ...


class SandboxImage(Protocol):
    """The sandbox image for one OpenClaw version, on one engine."""

    def exists(self) -> bool:
        """Whether the engine has it."""

    def build(self, progress: ProgressCallback) -> str:
        """Build it, reporting steps to ``progress``; raises ImageBuildError."""


class ContainerEngine(Protocol):
    """What the sandbox manager asks of the engine that runs its container. Every call blocks."""

    def inspect(self, name: str) -> ContainerInfo | None:
        """The container called (or with the id) ``name``; None if there is none."""

    def create(self, spec: Mapping[str, Any]) -> ContainerInfo:
        """Create a container from ``spec`` (sandbox/spec.py's ``create_kwargs``)."""

    def start(self, container_id: str) -> None:
        """Start the container."""

    def stop(self, container_id: str, timeout: float) -> None:
        """Stop it: a polite signal, then a kill after ``timeout`` seconds."""

    def remove(self, container_id: str) -> None:
        """Remove it, running or not."""

    def events(self, label: str, since: int) -> Stream[ContainerEvent]:
        """Events of containers labelled ``label`` (key=value) from ``since`` (epoch seconds) on."""

    def stats(self, container_id: str) -> Stream[StatsSample]:
        """Resource samples of a running container, about one a second."""

    def exec_create(self, container_id: str, cmd: list[str], user: str) -> str:
        """Prepare ``cmd`` to run in the container; the exec's id."""

    def exec_start(self, exec_id: str) -> Stream[tuple[bytes | None, bytes | None]]:
        """Run a prepared exec; its output as (stdout, stderr) chunk pairs."""

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code; None while it still runs."""

    def top(self, container_id: str, ps_args: str | None) -> dict[str, Any]:
        """Its processes: {"Titles": [...], "Processes": [[...], ...]}."""

    def logs_tail(self, container_id: str, lines: int) -> bytes:
        """The last ``lines`` lines of its stdout and stderr."""

    def image(
        self, *, repository: str, version: str, route: Route, base_image: str, cache_dir: Path
    ) -> SandboxImage:
        """The sandbox image for OpenClaw ``version`` on this engine (built or not)."""

    def close(self) -> None:
        """Let go of the connection."""


def engine_address() -> str:
    """The engine address docker-py will use."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def connect() -> docker.DockerClient:
    """A client for the local engine, verified with a ping. Blocking: call from a thread."""
    address = engine_address()
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(describe_engine_error(address, exc)) from None
    return client


def _translated(func: Callable[P, R]) -> Callable[P, R]:
    """docker-py's and its transport's errors as this module's."""

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise ContainerNotFound(api_error_text(exc)) from None
        except docker.errors.APIError as exc:
            raise EngineRefused(api_error_text(exc)) from None
        except docker.errors.DockerException as exc:
            raise EngineError(str(exc)) from None
        except requests.RequestException as exc:
            # docker-py lets the transport's errors through when the engine goes away mid-call.
            raise EngineUnavailable(describe_engine_error(engine_address(), exc)) from None

    return call


class _TranslatedStream:
    """A docker-py stream whose items are converted (None: skipped) and whose errors, raised
    while iterating, are this module's."""

    def __init__(self, inner: Any, convert: Callable[[Any], Any] = lambda item: item) -> None:
        self._inner = inner
        self._convert = convert

    def __iter__(self) -> Iterator[Any]:
        items = iter(self._inner)
        next_item = _translated(functools.partial(next, items, _END))
        while (item := next_item()) is not _END:
            converted = self._convert(item)
            if converted is not None:
                yield converted

    def close(self) -> None:
        closer = getattr(self._inner, "close", None)
        if closer is not None:
            closer()


_END = object()


def _container_info(container: Any) -> ContainerInfo:
    attrs = container.attrs
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    finished = parse_docker_time(state.get("FinishedAt"))
    code = state.get("ExitCode")
    return ContainerInfo(
        id=str(container.id),
        running=bool(state.get("Running")),
        exit_code=int(code) if code is not None else None,  # 0 for one that never ran
        started_at=parse_docker_time(state.get("StartedAt")),
        finished_at=finished,
        labels=dict(config.get("Labels") or {}),
        image=config.get("Image"),
    )


def _container_event(event: dict[str, Any]) -> ContainerEvent:
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    code = attrs.get("exitCode")
    return ContainerEvent(
        action=str(event.get("Action") or event.get("status") or ""),
        container_id=str(actor.get("ID") or event.get("id") or ""),
        name=attrs.get("name"),
        exit_code=int(code) if code is not None else None,
        time=float(event.get("timeNano") or 0) / 1e9 or float(event.get("time") or 0) or None,
    )


def _stats_sample(raw: dict[str, Any]) -> StatsSample | None:
    if str(raw.get("read", "")).startswith("0001-"):
        return None  # the engine's empty sample of a container that is not running
    return compute_sample(raw)


class _DockerImage:
    """The image builder with docker-py's errors translated."""

    def __init__(self, builder: Any) -> None:
        self._builder = builder

    def exists(self) -> bool:
        return bool(_translated(self._builder.exists)())

    def build(self, progress: ProgressCallback) -> str:
        return str(_translated(self._builder.build)(progress))


class DockerEngine:
    """``ContainerEngine`` on a Docker engine, through docker-py."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    @_translated
    def inspect(self, name: str) -> ContainerInfo | None:
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        return _container_info(container)

    @_translated
    def create(self, spec: Mapping[str, Any]) -> ContainerInfo:
        return _container_info(self.client.containers.create(**spec))

    @_translated
    def start(self, container_id: str) -> None:
        self.client.containers.get(container_id).start()

    @_translated
    def stop(self, container_id: str, timeout: float) -> None:
        self.client.containers.get(container_id).stop(timeout=timeout)

    @_translated
    def remove(self, container_id: str) -> None:
        self.client.containers.get(container_id).remove(force=True)

    @_translated
    def events(self, label: str, since: int) -> Stream[ContainerEvent]:
        stream = self.client.events(decode=True, since=since, filters={"type": "container", "label": label})
        return _TranslatedStream(stream, _container_event)

    @_translated
    def stats(self, container_id: str) -> Stream[StatsSample]:
        stream = self.client.api.stats(container_id, stream=True, decode=True)
        return _TranslatedStream(stream, _stats_sample)

    @_translated
    def exec_create(self, container_id: str, cmd: list[str], user: str) -> str:
        created = self.client.api.exec_create(container_id, cmd, stdout=True, stderr=True, user=user)
        return str(created["Id"])

    @_translated
    def exec_start(self, exec_id: str) -> Stream[tuple[bytes | None, bytes | None]]:
        return _TranslatedStream(self.client.api.exec_start(exec_id, stream=True, demux=True))

    @_translated
    def exec_exit_code(self, exec_id: str) -> int | None:
        info = self.client.api.exec_inspect(exec_id)
        if info.get("Running") or info.get("ExitCode") is None:
            return None
        return int(info["ExitCode"])

    @_translated
    def top(self, container_id: str, ps_args: str | None) -> dict[str, Any]:
        container = self.client.containers.get(container_id)
        return dict(container.top(ps_args=ps_args) if ps_args else container.top())

    @_translated
    def logs_tail(self, container_id: str, lines: int) -> bytes:
        return bytes(self.client.api.logs(container_id, tail=lines, stdout=True, stderr=True))

    def image(
        self, *, repository: str, version: str, route: Route, base_image: str, cache_dir: Path
    ) -> SandboxImage:
        from moltconsole_backend.sandbox.image import ImageBuilder

        builder = ImageBuilder(
            self.client,
            repository=repository,
            version=version,
            route=route,
            base_image=base_image,
            cache_dir=cache_dir,
        )
        return _DockerImage(builder)

    def close(self) -> None:
        self.client.close()


def connect_engine() -> ContainerEngine:
    """The local Docker engine, verified with a ping. Blocking: call from a thread."""
    return DockerEngine(connect())


def describe_engine_error(address: str, exc: BaseException) -> str:
    """A one-paragraph explanation of why the engine at ``address`` is unreachable."""
    text = str(exc)
    if "No such file or directory" in text or "FileNotFoundError" in text:
        cause = "its socket does not exist, so the engine is not installed or not running"
    elif "Permission denied" in text or "PermissionError" in text:
        cause = "permission denied on its socket"
        return (
            f"Docker engine at {address}: {cause}. Add your user to the 'docker' group "
            "(sudo usermod -aG docker $USER, then log in again) or run moltconsole as root."
        )
    elif "Connection refused" in text:
        cause = "the connection was refused"
    else:
        cause = text.splitlines()[0] if text else type(exc).__name__
    return (
        f"Docker engine not reachable at {address}: {cause}. Start it "
        "(sudo systemctl start docker, or scripts/setup.sh on a fresh machine) "
        "or point DOCKER_HOST at a running engine."
    )


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 timestamps (nanoseconds, 'Z') as epoch seconds; None for zero times."""
    if not value or value.startswith("0001-"):
        return None
    main, _, frac = value.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(main + "+00:00")
    return stamp.timestamp() + (float("0." + frac[:6]) if frac else 0.0)


def api_error_text(exc: docker.errors.APIError) -> str:
    """The engine's explanation from an APIError, without docker-py's HTTP preamble."""
    explanation: Any = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)
