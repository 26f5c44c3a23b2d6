"""Run an action that ends in a started sandbox and follow it: ``start``, ``restart``,
``rebuild`` and ``rotate-token``.

The CLI subscribes to the backend's events before it asks for the action, so no progress line
or state change is missed; it prints them as they come, waits on the next event and on the
action's answer together, then follows the state until it is an outcome (ready, or why not).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from moltconsole.cli.choice import command_for
from moltconsole.cli.status import format_status
from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.sandbox import Desired, SandboxState

# States a start passes through on its way to an outcome; every other state is an outcome.
# (A start returns once the container runs; the gateway becomes ready later.)
START_IN_PROGRESS = frozenset({
    SandboxState.UNKNOWN, SandboxState.BUILDING, SandboxState.STARTING, SandboxState.STOPPING,
    SandboxState.CRASHED,
})
# How long to wait for the action's answer once the event stream has ended: a backend that
# shuts down cleanly still answers requests in flight for a moment.
STREAM_END_GRACE = 5.0


class _Progress:
    """Prints the backend's progress lines and state changes as they arrive."""

    def __init__(self, state: str) -> None:
        self.state = state

    def show(self, message: dict[str, Any]) -> None:
        """Print one event-stream message, if it says something new."""
        kind = message.get("type")
        if kind == "progress":
            print(f"  [{sanitize(str(message.get('step')))}] {sanitize(str(message.get('message')))}",
                  flush=True)
        elif kind == "notice":
            print(f"  ! {sanitize(str(message.get('message')))}", flush=True)
        elif kind == "status":
            status = message["status"]
            if status["state"] != self.state:
                self.state = status["state"]
                reason = status.get("reason")
                print(f"  {self.state}" + (f": {sanitize(reason)}" if reason else ""), flush=True)


async def _next_message(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The event stream's next message, or None once the backend has closed it."""
    return await anext(events, None)


def _backend_gone(action: str, sandbox: str | None) -> BackendUnreachable:
    return BackendUnreachable(
        f"the backend closed its event stream during '{action}', so it has probably stopped or "
        f"crashed; its log says why. Check with '{command_for('status', sandbox)}', then run "
        f"'{command_for(action, sandbox)}' again."
    )


async def start_like(client: BackendClient, action: str, *, wait: bool, **body: Any) -> int:
    """Run an action that ends in a started sandbox, printing progress until it settles."""
    if not wait:
        print(format_status(await client.action(action, wait=False, **body)))
        return EXIT_OK
    started = time.monotonic()
    events = client.events()
    try:
        first = await _next_message(events)  # subscribed before the action, so nothing is missed
        if first is None:
            raise _backend_gone(action, client.sandbox)
        status, error = await _act_and_follow(
            client, events, action, body, _Progress(first["status"]["state"])
        )
    finally:
        await events.aclose()
    print(format_status(status))
    if error is not None:
        print(f"moltconsole: {action} failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if action == "rotate-token":
        print("gateway token replaced: the previous one is refused from now on")
    if status["state"] == SandboxState.READY:
        if action == "rotate-token":
            print("the sandbox was re-created with the new token (its state is kept)")
        print(f"ready in {time.monotonic() - started:.1f}s")
        return EXIT_OK
    idle = status["state"] in (SandboxState.ABSENT, SandboxState.STOPPED)
    if action in ("rebuild", "rotate-token") and idle and status.get("desired") == Desired.STOPPED:
        print("image rebuilt; the sandbox was not running, so it was not started. "
              f"Start it with: {command_for('start', client.sandbox)}" if action == "rebuild" else
              "the sandbox was not running; its next start creates it with the new token")
        return EXIT_OK
    reason = status.get("reason")
    container = status.get("container_id")
    where = f"'docker logs {container[:12]}' shows the gateway's output" if container else \
        "the backend's log says more"
    print(f"moltconsole: the sandbox is {status['state']}, not ready"
          + (f": {sanitize(reason)}" if reason else "")
          + f". {where}; fix the cause and run '{command_for(action, client.sandbox)}' again.",
          file=sys.stderr)
    return EXIT_FAILED


async def _act_and_follow(
    client: BackendClient, events: AsyncIterator[dict[str, Any]], action: str,
    body: dict[str, Any], progress: _Progress,
) -> tuple[dict[str, Any], BackendError | None]:
    """Run ``action`` while printing events; the status it settled in, and its error if any.

    Waits on the next event and on the action's answer together, so neither can be missed:
    the answer often arrives after the last event, with nothing more to come.
    """
    result = asyncio.ensure_future(client.action(action, wait=True, **body))
    message_task: asyncio.Task[dict[str, Any] | None] | None = asyncio.create_task(
        _next_message(events)
    )
    try:
        while not result.done():
            if message_task is None:  # the stream ended: the backend is going away
                done, _ = await asyncio.wait({result}, timeout=STREAM_END_GRACE)
                if not done:
                    raise _backend_gone(action, client.sandbox)
                break
            await asyncio.wait({result, message_task}, return_when=asyncio.FIRST_COMPLETED)
            if message_task.done():
                message = message_task.result()
                message_task = None
                if message is not None:
                    progress.show(message)
                    message_task = asyncio.create_task(_next_message(events))
        try:
            status = result.result()
        except BackendUnreachable:
            raise
        except BackendError as exc:
            return await client.status(), exc
        # The answer may be older than events already printed (a start answers "starting"
        # and the gateway may be ready by now): take a fresh snapshot, then follow changes.
        if status["state"] in START_IN_PROGRESS:
            status = await client.status()
        while status["state"] in START_IN_PROGRESS:
            if message_task is None:
                raise _backend_gone(action, client.sandbox)
            message = await message_task
            message_task = None
            if message is None:
                continue
            progress.show(message)
            message_task = asyncio.create_task(_next_message(events))
            if message.get("type") == "status":
                # Re-read rather than trust the event: it may predate the snapshot.
                status = await client.status()
        return status, None
    finally:
        pending = [t for t in (result, message_task) if t is not None]
        for task in pending:
            task.cancel()
        # Collect them, so no "exception was never retrieved" warning is left behind.
        await asyncio.gather(*pending, return_exceptions=True)

