"""One sandbox's memory, kept: snapshots when its state changes, on a schedule, on demand and
after every stop; their copy to the bucket; and restores.

- **Change**: the state directory is watched (inotify, through watchfiles, in batches of at
  most half a second); a snapshot is taken once it has been quiet for ``memory.debounce``
  seconds, or after ``max_delay`` while changes go on, then pushed to the bucket at once. The
  same batches keep the listing of the files now up to date (listing.py), so a request for it
  does not walk the directory.
- **Stop**: the sandbox manager calls ``after_stop`` once the container has stopped, before a
  restart, rebuild or destroy goes on; the operation waits for the snapshot (at most
  ``stop_timeout``), which is local and so does not need the bucket.
- **Bucket down**: the push fails, the keeper says since when, and tries again with a growing
  pause (up to 10 s); the local repository holds the snapshots meanwhile (replicate.py).
- **Start**: ``before_start`` restores the newest snapshot into an empty state directory (a new
  server), and says so.

One lock per keeper serialises its snapshots and restores; keepers of different sandboxes
run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moltconsole_backend.memory.browse import under
from moltconsole_backend.memory.capture import Capture, CaptureReport, excluded, read_state_file
from moltconsole_backend.memory.listing import StateListing
from moltconsole_backend.memory.moltworker import (
    ImportReport,
    MoltworkerBucket,
    MoltworkerError,
    import_snapshot,
)
from moltconsole_backend.memory.replicate import Replica
from moltconsole_backend.memory.repo import FileEntry, Repository, RepositoryError, Snapshot
from moltconsole_backend.memory.restore import (
    UnsafePath,
    restore_files,
    restore_snapshot,
    safe_parts,
    write_file,
)
from moltconsole_backend.memory.retention import ForgetReport, Policy, PruneReport, forget, prune
from moltconsole_backend.memory.store import StoreError
from moltconsole_backend.memory.verify import VerifyReport, verify
from moltconsole_backend.settings import MemorySettings
from moltconsole_shared.wire.events import EventLevel

log = logging.getLogger(__name__)
PUSH_BACKOFF_MAX = 10.0  # a bucket that is back is noticed within this
# The watcher hands over a batch once the directory has been quiet this long, or at the latest
# after WATCH_BATCH_MS while changes go on: the listing of the files now lags by no more.
WATCH_STEP_MS = 50
WATCH_BATCH_MS = 500
WATCH_READY_MS = 1000  # the watcher answers at least this often, changes or not

Notify = Callable[[str, EventLevel], None]  # (message, level) for the sandbox's event history


class KeeperError(Exception):
    """A memory operation could not be done; the message says why and what to do."""


@dataclass
class Running:
    """A long operation running now, with its progress in bytes (updated from worker threads)."""

    kind: str
    started: float
    done: int = 0
    total: int = 0

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total


@dataclass
class BucketState:
    """What the keeper knows of its bucket."""

    where: str | None = None  # None: local repository only
    reachable: bool | None = None  # None: not tried yet
    unreachable_since: float | None = None
    last_error: str = ""
    last_push: float | None = None


class MemoryKeeper:
    """Keeps ``state_dir`` (sandbox ``name``) in ``repo``, copied by ``replica`` if any."""

    def __init__(
        self, name: str, state_dir: Path, repo: Repository, replica: Replica | None,
        settings: MemorySettings, notify: Notify | None = None,
    ) -> None:
        self.name = name
        self.state_dir = state_dir
        self.repo = repo
        self.replica = replica
        self.settings = settings
        self.capture = Capture(repo, name, state_dir, settings.excludes)
        self.bucket = BucketState(where=replica.where if replica is not None else None)
        self.last: Snapshot | None = None
        self.last_report: CaptureReport | None = None
        self.last_error = ""
        self.pending = 0  # snapshots not in the bucket yet
        self._notify = notify or (lambda message, level: None)
        self._lock = asyncio.Lock()
        self._push_wanted = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._changed = asyncio.Condition()  # notified after each snapshot and push attempt, and
        # once the watcher is on (its listing walked)
        self.watching = False
        self.running: Running | None = None  # the long operation under way, for progress bars
        self._manifests: dict[str, Snapshot] = {}  # read once: a manifest never changes
        self.listing = StateListing(state_dir, settings.excludes)
        self._changes = asyncio.Event()  # set by the watcher, taken by the change snapshots
        self._last_change = 0.0
        self._watch_session: asyncio.Event | None = None  # set: the watcher starts over

    # --- life -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Remember the newest snapshot, then watch, schedule and push."""
        self.last = await asyncio.to_thread(self.repo.latest, self.name)
        if self.last is not None:
            await asyncio.to_thread(self.capture.remember, self.last)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._snapshot_changes())]
        if self.settings.interval > 0:
            self._tasks.append(loop.create_task(self._schedule()))
        if self.replica is not None:
            self._tasks.append(loop.create_task(self._pusher()))
            self._push_wanted.set()  # whatever was queued before the backend stopped
        if self.last is None:
            self._tasks.append(loop.create_task(self._first()))

    async def _first(self) -> None:
        """A state directory with files and no snapshot yet (memory just turned on, or a
        sandbox that ran before it was): keep it now, not at its first change."""
        if await asyncio.to_thread(lambda: bool(self.listing.files())):
            with contextlib.suppress(KeeperError):
                await self.backup("first")

    async def close(self) -> None:
        self._stop.set()
        self._push_wanted.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _tell(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, predicate: Callable[[MemoryKeeper], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds after a snapshot or a push (TimeoutError)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

    # --- snapshots --------------------------------------------------------------------------
    async def backup(self, reason: str) -> CaptureReport:
        """Take a snapshot now (then push it)."""
        async with self._lock:
            if reason == "manual":
                # Asked for by a person, who may have written a file a moment ago: the listing
                # is walked again rather than wait for the watcher's batch.
                self.listing.forget()
            return await self._backup(reason)

    async def _backup(self, reason: str) -> CaptureReport:
        if self.running is None:
            with self._running("backup"):
                return await self._backup_now(reason)
        return await self._backup_now(reason)

    async def _backup_now(self, reason: str) -> CaptureReport:
        if not self.state_dir.is_dir():
            raise KeeperError(
                f"sandbox {self.name} has no state directory yet ({self.state_dir}); start it once first"
            )
        parent = self.last.id if self.last is not None else None
        try:
            report = await asyncio.to_thread(self.capture.take, reason, parent)
        except (OSError, StoreError) as exc:
            self.last_error = f"snapshot failed: {exc}"
            raise KeeperError(f"the memory snapshot of sandbox {self.name} failed: {exc}") from None
        self.last, self.last_report, self.last_error = report.snapshot, report, ""
        self._manifests[report.snapshot.id] = report.snapshot
        if report.unchanged:
            log.debug("memory of %s unchanged since snapshot %s", self.name, report.snapshot.id)
            await self._tell()
            return report
        log.info(
            "memory snapshot %s of %s (%s): %d files, %d read, %d new blobs, %d bytes stored, %.2fs",
            report.snapshot.id, self.name, reason, len(report.snapshot.files), report.read_files,
            report.new_blobs, report.uploaded_bytes, report.seconds,
        )
        self._push_wanted.set()
        await self._tell()
        return report

    async def after_stop(self, operation: str) -> None:
        """The container has stopped (``operation``: stop, restart, rebuild, destroy): take
        the snapshot the operation waits for."""
        if not self.state_dir.is_dir():
            return
        try:
            await asyncio.wait_for(self.backup(f"before-{operation}"), self.settings.stop_timeout)
        except TimeoutError:
            self._notify(
                f"the memory snapshot before {operation} took longer than memory.stop_timeout "
                f"({self.settings.stop_timeout:g} s) and was left; the state directory is kept", "warning",
            )
            return
        except KeeperError as exc:
            self._notify(f"{exc}; the state directory is kept", "error")
            return
        if self.bucket.where is not None and self.bucket.reachable is False:
            since = time.strftime("%H:%M:%S", time.localtime(self.bucket.unreachable_since or time.time()))
            self._notify(
                f"memory snapshot before {operation} kept locally; the bucket {self.bucket.where} is "
                f"unreachable since {since}, and it goes up when the bucket is back", "warning",
            )

    # --- watching and schedule --------------------------------------------------------------
    def _interesting(self, _change: Any, path: str) -> bool:
        try:
            rel = Path(path).relative_to(self.state_dir).as_posix()
        except ValueError:
            return False
        return not excluded(rel, self.settings.excludes)

    async def _watch(self) -> None:
        """Hand each batch of changes to the listing, and tell the change snapshots."""
        import watchfiles

        while not self._stop.is_set():
            if not self.state_dir.is_dir():
                # Made by the sandbox's first start; there is no event to await for it here.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 2.0)
                continue
            session = self._watch_session = asyncio.Event()
            self.watching = True
            ready = False
            try:
                async for changes in watchfiles.awatch(
                    self.state_dir, watch_filter=self._interesting, stop_event=_AnyOf(self._stop, session),
                    debounce=WATCH_BATCH_MS, step=WATCH_STEP_MS, rust_timeout=WATCH_READY_MS,
                    yield_on_timeout=True, recursive=True, ignore_permission_denied=True,
                ):
                    if not ready:
                        # The first answer means inotify is on: from here no change is missed,
                        # so a listing walked now can be kept (and is, before anyone asks).
                        ready = True
                        self.listing.watched(True)
                        await asyncio.to_thread(self.listing.files)
                        await self._tell()
                    if not changes:
                        continue
                    await asyncio.to_thread(self.listing.changed, [path for _, path in changes])
                    self._last_change = time.monotonic()
                    self._changes.set()
            except (FileNotFoundError, RuntimeError, OSError) as exc:  # the directory went away
                log.info("memory watch on %s ended: %s", self.state_dir, exc)
            finally:
                self.watching = False
                self.listing.watched(False)

    def _watch_again(self) -> None:
        """The state directory was swapped (a whole restore): watch the new one."""
        if self._watch_session is not None:
            self._watch_session.set()

    async def _snapshot_changes(self) -> None:
        """A snapshot once the changes have been quiet for ``debounce``, or ``max_delay`` after
        the first of them while they go on."""
        while not self._stop.is_set():
            await self._changes.wait()
            first = time.monotonic()
            while True:
                self._changes.clear()
                deadline = min(self._last_change + self.settings.debounce, first + self.settings.max_delay)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changes.wait(), left)
                except TimeoutError:
                    break
            if self._stop.is_set():
                return
            with contextlib.suppress(KeeperError):
                await self.backup("change")

    async def _schedule(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.interval)
            if not self._stop.is_set():
                with contextlib.suppress(KeeperError):
                    await self.backup("schedule")

    # --- the bucket -------------------------------------------------------------------------
    async def _pusher(self) -> None:
        assert self.replica is not None
        pause = 1.0
        while not self._stop.is_set():
            await self._push_wanted.wait()
            self._push_wanted.clear()
            if self._stop.is_set():
                return
            try:
                await asyncio.to_thread(self.replica.push)
                self.pending = len(await asyncio.to_thread(self.replica.pending))
            except StoreError as exc:
                with contextlib.suppress(Exception):  # from what the bucket had when last listed
                    self.pending = len(await asyncio.to_thread(self.replica.pending, False))
                self.replica.forget_listing()
                if self.bucket.reachable is not False:
                    self.bucket.unreachable_since = time.time()
                    log.warning("memory bucket %s: %s", self.bucket.where, exc)
                self.bucket.reachable, self.bucket.last_error = False, str(exc)
                await self._tell()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                pause = min(pause * 2, PUSH_BACKOFF_MAX)
                self._push_wanted.set()
                continue
            if self.bucket.reachable is False:
                log.info("memory bucket %s is reachable again", self.bucket.where)
            self.bucket.reachable, self.bucket.unreachable_since, self.bucket.last_error = True, None, ""
            self.bucket.last_push = time.time()
            pause = 1.0
            await self._tell()

    # --- reading and restoring --------------------------------------------------------------
    async def snapshots(self) -> list[Snapshot]:
        """This sandbox's snapshots, oldest first (each manifest read once)."""
        return await asyncio.to_thread(self._snapshots)

    def _snapshots(self) -> list[Snapshot]:
        ids = {i for _, i in self.repo.snapshot_ids(self.name)}
        for gone in set(self._manifests) - ids:  # forgotten by a prune
            del self._manifests[gone]
        for snapshot_id in ids - set(self._manifests):
            self._manifests[snapshot_id] = self.repo.read_snapshot(self.name, snapshot_id)
        return sorted(self._manifests.values(), key=lambda snap: (snap.time, snap.id))

    async def snapshot(self, snapshot_id: str) -> Snapshot:
        known = self._manifests.get(snapshot_id)
        if known is not None:
            return known
        try:
            snap = await asyncio.to_thread(self.repo.read_snapshot, self.name, snapshot_id)
        except (StoreError, ValueError) as exc:
            raise KeeperError(
                f"sandbox {self.name} has no snapshot {snapshot_id!r} ({exc}); "
                "'moltconsole memory snapshots' lists them"
            ) from None
        self._manifests[snapshot_id] = snap
        return snap

    def files_now(self) -> list[tuple[str, os.stat_result]]:
        """(path, lstat) of each file the next snapshot would keep, by path (call in a thread):
        the listing kept from the watcher's changes, walked only when it is not kept."""
        return self.listing.files()

    async def read(self, path: str, snapshot_id: str | None = None) -> bytes:
        """A file as it is now (a live SQLite database as a consistent copy), or as it was in a
        snapshot."""
        try:
            parts = safe_parts(path)
        except UnsafePath as exc:
            raise KeeperError(str(exc)) from None
        if snapshot_id is None:
            try:
                return await asyncio.to_thread(read_state_file, self.state_dir, "/".join(parts))
            except OSError as exc:
                raise KeeperError(
                    f"cannot read {path} in sandbox {self.name}: {exc.strerror or exc}"
                ) from None
        snap = await self.snapshot(snapshot_id)
        entry = _entry(snap, path)
        return await asyncio.to_thread(self.repo.read_file, entry)

    @contextlib.contextmanager
    def _running(self, kind: str) -> Iterator[Running]:
        self.running = Running(kind, time.time())
        try:
            yield self.running
        finally:
            self.running = None

    async def restore_path(self, path: str, snapshot_id: str) -> tuple[Snapshot, list[FileEntry]]:
        """Put one file, or every file of a folder, back as it was in a snapshot (files of the
        folder the snapshot did not have are kept); a safety snapshot first. Returns it and the
        entries written."""
        async with self._lock:
            snap = await self.snapshot(snapshot_id)
            wanted = set(under((e.path for e in snap.files), path))
            chosen = [e for e in snap.files if e.path in wanted]
            if not chosen:
                raise KeeperError(
                    f"{path} is not in snapshot {snapshot_id} of sandbox {self.name}; "
                    f"'moltconsole memory log {path}' lists the snapshots that have it"
                )
            safety = (await self._backup("safety")).snapshot
            with self._running("restore") as running:
                try:
                    await asyncio.to_thread(
                        restore_files, self.repo, chosen, self.state_dir, running.progress
                    )
                except (UnsafePath, StoreError, OSError) as exc:
                    self.listing.forget()
                    raise KeeperError(
                        f"restoring {path} of sandbox {self.name} failed part way: {exc}. What was "
                        f"there before is in the safety snapshot {safety.id}."
                    ) from None
            self.listing.forget()
            return safety, chosen

    async def restore_all(self, snapshot_id: str) -> Snapshot | None:
        """Make the state directory hold exactly a snapshot (the sandbox must be stopped); a
        safety snapshot of what was there first (returned, None for an empty directory)."""
        async with self._lock:
            snap = await self.snapshot(snapshot_id)
            safety = None
            if self.state_dir.is_dir() and any(self.state_dir.iterdir()):
                safety = (await self._backup("safety")).snapshot
            try:
                with self._running("restore") as running:
                    previous = await asyncio.to_thread(
                        restore_snapshot, self.repo, snap, self.state_dir, running.progress
                    )
            except (UnsafePath, StoreError, OSError) as exc:
                raise KeeperError(
                    f"restoring sandbox {self.name} to {snapshot_id} failed, its state directory is "
                    f"as it was: {exc}"
                ) from None
            finally:
                self.listing.forget()
            self._watch_again()  # the watcher may be watching the directory that was swapped out
            if previous is not None:
                await asyncio.to_thread(shutil.rmtree, previous, True)  # the safety snapshot has it
            await asyncio.to_thread(self.capture.remember, snap)
            return safety

    async def write(self, path: str, content: bytes) -> Snapshot:
        """Replace a workspace file (an edit by the operator); a snapshot of what was there is
        taken first and returned."""
        parts = safe_parts(path)
        if parts[0] != "workspace" or len(parts) < 2:
            raise KeeperError(f"only files of the workspace can be edited, not {path}")
        if excluded(path, self.settings.excludes):
            raise KeeperError(f"{path} is left out of memory (memory.excludes), so it is not edited here")
        async with self._lock:
            before = (await self._backup("before-edit")).snapshot
            target = self.state_dir.joinpath(*parts)
            mode = 0o600
            with contextlib.suppress(OSError):
                mode = target.stat().st_mode & 0o777
            entry = FileEntry(path=path, blob="", size=len(content), mode=mode, mtime_ns=time.time_ns())
            try:
                await asyncio.to_thread(write_file, self.state_dir, entry, content)
            except (UnsafePath, OSError) as exc:
                raise KeeperError(f"cannot write {path}: {exc}") from None
            finally:
                self.listing.forget()
            return before

    async def verify(self, sample: float | None = None) -> VerifyReport:
        """Read back this sandbox's snapshots' blobs (all, or a fraction) and check them."""
        with self._running("verify") as running:
            try:
                return await asyncio.to_thread(verify, self.repo, self.name, sample, running.progress)
            except ValueError as exc:
                raise KeeperError(f"cannot verify: {exc}") from None

    async def prune(self, policy: Policy, dry_run: bool = False) -> tuple[ForgetReport, PruneReport]:
        """Forget this sandbox's snapshots ``policy`` does not keep, then remove the blobs no
        snapshot of any sandbox names (safe beside backups: the repository's lock)."""
        with self._running("prune") as running:
            try:
                forgotten = await asyncio.to_thread(forget, self.repo, self.name, policy, dry_run)
                pruned = await asyncio.to_thread(
                    prune, self.repo, dry_run, running.progress, forgotten.forget if dry_run else (),
                )
            except RepositoryError as exc:
                raise KeeperError(str(exc)) from None
        for snap in forgotten.forget if not dry_run else ():
            self._manifests.pop(snap.id, None)
        return forgotten, pruned

    async def import_moltworker(self, bucket: MoltworkerBucket, restore: bool) -> tuple[ImportReport, bool]:
        """A Moltworker bucket read into this sandbox's newest snapshot; with ``restore`` and an
        empty state directory, restored into it. Returns the report and whether it was restored."""
        async with self._lock:
            with self._running("import") as running:
                try:
                    report = await asyncio.to_thread(
                        import_snapshot, self.repo, self.name, bucket, running.progress, allow_existing=True,
                    )
                except MoltworkerError as exc:
                    raise KeeperError(str(exc)) from None
        self._manifests[report.snapshot.id] = report.snapshot
        empty = not self.state_dir.is_dir() or not any(self.state_dir.iterdir())
        if restore and empty:
            await self.restore_all(report.snapshot.id)
            return report, True
        return report, False

    async def before_start(self) -> Snapshot | None:
        """An empty state directory and a snapshot to restore (a new server): restore the
        newest, say so, and return it."""
        if self.state_dir.is_dir() and any(self.state_dir.iterdir()):
            return None
        latest = await asyncio.to_thread(self.repo.latest, self.name)
        if latest is None:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(latest.time))
        self._notify(
            f"the state directory is empty: restoring the memory of sandbox {self.name} from "
            f"snapshot {latest.id} taken {when} ({len(latest.files)} files)", "info",
        )
        await self.restore_all(latest.id)
        return latest


def _entry(snapshot: Snapshot, path: str) -> FileEntry:
    for entry in snapshot.files:
        if entry.path == path:
            return entry
    raise KeeperError(
        f"{path} is not in snapshot {snapshot.id}; 'moltconsole memory log {path}' lists the "
        "snapshots that have it"
    )


class _AnyOf:
    """Set when either event is (the stop event watchfiles polls); setting it sets the second."""

    def __init__(self, first: asyncio.Event, second: asyncio.Event) -> None:
        self._first, self._second = first, second

    def is_set(self) -> bool:
        return self._first.is_set() or self._second.is_set()

    def set(self) -> None:
        self._second.set()
