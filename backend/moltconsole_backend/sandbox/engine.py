"""Reaching the Docker engine, and turning its errors into messages that say what to do."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import docker
import docker.errors


class EngineUnavailable(Exception):
    """The Docker engine cannot be reached; the message names the cause and the fix."""


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
