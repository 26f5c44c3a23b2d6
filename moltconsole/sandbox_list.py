"""The backend's sandboxes as the console reads them: the list, or why there is none in words.

The sandbox picker, the Dashboard's table of all sandboxes and the app (which needs the default
sandbox's name for its header) all ask through :func:`list_sandboxes`, so the three say the
same thing when it fails: no backend answers, or the backend is older than this console and has
no ``/v1/sandboxes`` (it answers 404 there; a newer one answers 404 only for a sandbox name it
does not know). No widgets here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from moltconsole.client import BackendError
from moltconsole_shared.wire.sandboxes import SandboxList, SandboxSummary


class SandboxSource(Protocol):
    """What listing the sandboxes needs from :class:`moltconsole.client.BackendClient`."""

    async def sandboxes(self) -> SandboxList: ...

    async def health(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class SandboxListing:
    """One answer to "which sandboxes are there": the list, or ``problem`` saying why not.

    ``old_backend`` is set when the backend has no sandbox list at all (it must be restarted).
    """

    sandboxes: tuple[SandboxSummary, ...] = ()
    default: str | None = None
    problem: str | None = None
    old_backend: bool = False

    def named(self, name: str) -> SandboxSummary | None:
        """The sandbox called ``name``, if the list has it."""
        return next((s for s in self.sandboxes if s.name == name), None)


async def list_sandboxes(client: SandboxSource) -> SandboxListing:
    """Every sandbox the backend supervises, or why it could not be listed."""
    try:
        found = await client.sandboxes()
    except BackendError as exc:
        if exc.status == 404:
            return SandboxListing(problem=await old_backend_problem(client), old_backend=True)
        return SandboxListing(problem=f"cannot list the sandboxes: {exc}")
    return SandboxListing(tuple(found.sandboxes), found.default)


async def old_backend_problem(client: SandboxSource) -> str:
    """What to do about a backend without ``/v1/sandboxes``, naming its process if it says."""
    try:
        pid = (await client.health()).get("pid")
    except BackendError:
        pid = None
    stop = f"stop it (kill {pid})" if isinstance(pid, int) else "stop it ('moltconsole serve')"
    return (
        "this backend is older than the console and cannot list sandboxes (GET /v1/sandboxes "
        f"answered 404). Restart it to use several sandboxes: {stop}, then run 'moltconsole' "
        "again, which starts the new one. Its sandboxes keep running."
    )
