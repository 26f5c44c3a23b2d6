"""Starting the backend as ``moltconsole`` does: real ``moltconsole serve`` processes, no container.

Two consoles that find no backend at the same moment both start one; the backend's lock lets
one through, and the console whose backend gave way attaches to the winner.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from moltconsole.client import BackendUnreachable
from moltconsole.launcher import BackendLaunch, lock_holder, process_alive, start_backend
from moltconsole.settings import Settings, load_settings


@pytest.fixture
def settings() -> Iterator[Settings]:
    """A config of its own (short paths for the socket), with nothing that needs a container."""
    root = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    config = root / "config.toml"
    config.write_text(
        '[sandbox]\nname = "launcher"\n'
        f'[paths]\ndata_dir = "{root}/data"\nruntime_dir = "{root}/run"\n'
        "[gateway]\nenabled = false\n"
    )
    yield load_settings(config, env={})
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def holding_the_lock(settings: Settings) -> Iterator[None]:
    """Hold the backend's lock with this process's pid in it, as a starting backend does."""
    settings.paths.runtime_dir.mkdir(mode=0o700)
    with open(settings.paths.runtime_dir / "backend.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


async def stop_spawned(pid: int) -> None:
    """Stop a backend the launcher started (our child) and reap it."""
    os.kill(pid, signal.SIGTERM)
    await asyncio.to_thread(os.waitpid, pid, 0)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every backend process the launcher starts, as it starts them."""
    from moltconsole import launcher

    processes: list[subprocess.Popen[bytes]] = []
    real_spawn = launcher.spawn_detached

    def spawn(settings: Settings) -> subprocess.Popen[bytes]:
        processes.append(real_spawn(settings))
        return processes[-1]

    monkeypatch.setattr(launcher, "spawn_detached", spawn)
    return processes


async def test_two_consoles_starting_a_backend_at_once_end_up_on_the_same_one(
    settings: Settings, spawned: list[subprocess.Popen[bytes]],
) -> None:
    # Neither finds a backend, so both start one: the loser's exits at once (the lock).
    first, second = await asyncio.gather(start_backend(settings), start_backend(settings))
    try:
        assert len(spawned) == 2
        loser = next(p for p in spawned if p.pid != first.pid)
        # It may still be starting when the winner answers; it gives way once it gets there.
        assert await asyncio.to_thread(loser.wait) == 1
        assert first.pid is not None and first.pid == second.pid
        assert sorted([first.how, second.how]) == ["joined", "started"]
        assert lock_holder(settings) == first.pid
        joined = first if first.how == "joined" else second
        assert joined.describe() == (
            f"another console started a backend at the same moment (pid {first.pid}); attached to it"
        )
        third = await start_backend(settings)
        assert (third.how, third.pid) == ("found", first.pid)
    finally:
        if first.pid is not None:
            await stop_spawned(first.pid)


async def test_a_backend_that_gives_way_to_a_slower_winner_waits_for_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backend started here exits (the lock is taken) before the winner answers."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from moltconsole import launcher
    from tests.unit.test_client import serve_asgi

    spawned: list[subprocess.Popen[bytes]] = []
    started = asyncio.Event()

    def spawn(settings: Settings) -> subprocess.Popen[bytes]:
        spawned.append(real_spawn(settings))
        started.set()
        return spawned[-1]

    real_spawn = launcher.spawn_detached
    monkeypatch.setattr(launcher, "spawn_detached", spawn)
    # This test is the winner: it holds the backend's lock, as a backend starting up does.
    with holding_the_lock(settings):
        launching = asyncio.create_task(start_backend(settings))
        await asyncio.wait_for(started.wait(), 30)
        assert await asyncio.to_thread(spawned[0].wait) == 1  # it gave way

        async def health(_: Request) -> Response:
            return JSONResponse({"backend": "moltconsole", "pid": os.getpid()})

        async with serve_asgi(Starlette(routes=[Route("/v1/health", health)]), settings.socket_path):
            launch = await asyncio.wait_for(launching, 30)
    assert (launch.how, launch.pid) == ("joined", os.getpid())


async def test_a_backend_that_cannot_start_says_why_and_where_to_look(settings: Settings) -> None:
    # A runtime directory the backend refuses (a symbolic link) makes it exit at startup.
    target = settings.paths.runtime_dir.with_name("elsewhere")
    target.mkdir()
    settings.paths.runtime_dir.symlink_to(target)
    with pytest.raises(BackendUnreachable) as caught:
        await start_backend(settings)
    log = settings.paths.data_dir / "backend.log"
    said = str(caught.value)
    assert said.startswith("the backend exited at startup (code 1): ")
    assert "is a symbolic link" in said  # its own words, not only where to look
    assert said.endswith(f"; see {log} for the whole log.")
    assert "is a symbolic link" in log.read_text()


def test_a_dead_pid_in_the_lock_file_is_no_holder(settings: Settings) -> None:
    settings.paths.runtime_dir.mkdir(parents=True)
    lock = settings.paths.runtime_dir / "backend.lock"
    lock.write_text(str(os.getpid()))
    assert lock_holder(settings) == os.getpid()
    child = os.fork()
    if child == 0:
        os._exit(0)
    # Exited but not reaped: a zombie, which holds no lock.
    os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    lock.write_text(str(child))
    assert not process_alive(child) and lock_holder(settings) is None
    os.waitpid(child, 0)
    assert lock_holder(settings) is None
    lock.write_text("")
    assert lock_holder(settings) is None


def test_what_a_launch_says() -> None:
    assert BackendLaunch("started", {"pid": 42}).describe() == "started a new backend (pid 42)"
    assert BackendLaunch("found", {"pid": 42}).describe() == "a backend answers again (pid 42)"
    assert BackendLaunch("started", {}).pid is None
