"""The memory keeper: a change is snapshotted by itself, the bucket gets a copy, a bucket that
is down queues the snapshots locally and gets them when it is back, and an empty state
directory is restored from the bucket (a new server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from moltconsole_backend.memory.keeper import MemoryKeeper
from moltconsole_backend.memory.replicate import Replica
from moltconsole_backend.memory.repo import Repository
from moltconsole_backend.memory.store import LocalFirst, LocalStore, StoreUnreachable
from moltconsole_backend.settings import MemorySettings


class Bucket(LocalStore):
    """A bucket that can be cut off."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnreachable("the bucket is down")

    def put(self, key: str, data: bytes) -> None:
        self._check()
        super().put(key, data)

    def get(self, key: str) -> bytes:
        self._check()
        return super().get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._check()
        return super().get_range(key, start, length)

    def list(self, prefix: str) -> Iterator[str]:
        self._check()
        return super().list(prefix)


def _keeper(tmp: Path, bucket: Bucket, state: Path) -> MemoryKeeper:
    local = LocalStore(tmp / "local")
    Replica.adopt(local, bucket)
    repo = Repository(LocalFirst(local, bucket)).open()
    settings = MemorySettings(enabled=True, debounce=0.1, max_delay=0.5, interval=0)
    return MemoryKeeper("main", state, repo, Replica(repo, bucket), settings)


async def test_a_change_is_kept_and_copied_and_a_down_bucket_gets_it_later(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "workspace").mkdir(parents=True)
    bucket = Bucket(tmp_path / "bucket")
    keeper = _keeper(tmp_path, bucket, state)
    await keeper.start()
    try:
        await keeper.wait(lambda k: k.watching, 5)
        (state / "workspace" / "MEMORY.md").write_text("The user likes tea.\n")
        await keeper.wait(lambda k: k.last is not None and k.bucket.reachable is True and k.pending == 0, 10)
        assert keeper.last is not None and keeper.last.reason == "change"
        assert [f.path for f in keeper.last.files] == ["workspace/MEMORY.md"]
        bucket.down = True
        (state / "workspace" / "MEMORY.md").write_text("The user likes green tea.\n")
        await keeper.wait(lambda k: k.bucket.reachable is False, 10)
        assert keeper.bucket.unreachable_since is not None and "down" in keeper.bucket.last_error
        queued = keeper.last
        in_bucket = set(LocalStore(tmp_path / "bucket").list("snapshots/"))
        assert queued is not None and queued.key not in in_bucket
        bucket.down = False
        await keeper.wait(lambda k: k.bucket.reachable is True and k.pending == 0, 10)
        assert queued.key in set(LocalStore(tmp_path / "bucket").list("snapshots/"))
        final = keeper.last
    finally:
        await keeper.close()

    # A new server: nothing local, an empty state directory; the bucket brings it back.
    fresh = tmp_path / "new-server"
    new_state = fresh / "state"
    keeper = _keeper(fresh, Bucket(tmp_path / "bucket"), new_state)
    restored = await keeper.before_start()
    assert restored is not None and restored.id == final.id
    assert (new_state / "workspace" / "MEMORY.md").read_text() == "The user likes green tea.\n"


async def test_a_state_directory_without_a_snapshot_is_kept_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "workspace").mkdir(parents=True)
    (state / "workspace" / "MEMORY.md").write_text("from before memory was on\n")
    keeper = _keeper(tmp_path, Bucket(tmp_path / "bucket"), state)
    await keeper.start()
    try:
        await keeper.wait(lambda k: k.last is not None, 10)
        assert keeper.last is not None and keeper.last.reason == "first"
        assert [f.path for f in keeper.last.files] == ["workspace/MEMORY.md"]
    finally:
        await keeper.close()
    again = _keeper(tmp_path, Bucket(tmp_path / "bucket"), state)  # a snapshot there: none taken
    await again.start()
    try:
        assert again.last is not None and again.last.reason == "first"
        assert len(await again.snapshots()) == 1
    finally:
        await again.close()
