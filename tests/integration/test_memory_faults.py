"""Memory under faults, with a real S3 server (SeaweedFS) and a real process killed: a backup
killed part way leaves no snapshot and nothing a snapshot needs missing; the next one completes,
verify finds the repository whole, and prune removes what the killed one left behind."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from moltconsole_backend.memory.capture import Capture
from moltconsole_backend.memory.repo import INDEX, SNAPSHOTS, Repository
from moltconsole_backend.memory.retention import prune
from moltconsole_backend.memory.s3 import S3Location, S3Store, s3_store_from
from moltconsole_backend.memory.verify import verify
from tests.integration import memory_conftest_fixtures
from tests.support.s3_server import S3Server

s3_server = memory_conftest_fixtures.s3_server  # the session's SeaweedFS, shared with other memory tests

FILES = 400
FILE_SIZE = 128 * 1024  # incompressible: the backup writes about six 8 MiB packs

BACKUP = textwrap.dedent("""
    import sys
    from pathlib import Path
    from moltconsole_backend.memory.capture import Capture
    from moltconsole_backend.memory.repo import Repository
    from moltconsole_backend.memory.s3 import S3Location, s3_store_from

    endpoint, bucket, prefix, state = sys.argv[1:5]
    location = S3Location(bucket=bucket, prefix=prefix, endpoint_url=endpoint, path_style=True)
    repo = Repository(s3_store_from(location, dict(__import__("os").environ))).open()
    Capture(repo, "main", Path(state)).take("manual")
    print("finished", flush=True)
""")


def _store(server: S3Server, prefix: str) -> S3Store:
    location = S3Location(
        bucket=server.bucket, prefix=prefix, endpoint_url=server.endpoint_url, path_style=True,
    )
    return s3_store_from(location, _env(server))


def _env(server: S3Server) -> dict[str, str]:
    return {"R2_ACCESS_KEY_ID": server.access_key, "R2_SECRET_ACCESS_KEY": server.secret_key}


def test_a_backup_killed_part_way_leaves_nothing_dangling_and_the_next_completes(
    s3_server: S3Server, tmp_path: Path,
) -> None:
    prefix = "faults-" + secrets.token_hex(4)
    state = tmp_path / "state"
    (state / "workspace" / "memory").mkdir(parents=True)
    for n in range(FILES):
        (state / "workspace" / "memory" / f"note-{n:04}.md").write_bytes(os.urandom(FILE_SIZE))
    store = _store(s3_server, prefix)
    Repository(store).open()  # the repository exists before the backup starts

    child = subprocess.Popen(
        [sys.executable, "-c", BACKUP, s3_server.endpoint_url, s3_server.bucket, prefix, str(state)],
        env={**os.environ, **_env(s3_server)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(1 for _ in store.list(INDEX + "/")) < 2:  # part way: two packs and their indexes
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the backup uploaded nothing in 60 s"
            time.sleep(0.02)  # polling the bucket: S3 sends no event when an object lands
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert list(store.list(SNAPSHOTS + "/")) == []  # no manifest: nothing names a missing blob
    repo = Repository(store).open()
    left = len(repo.catalog().where)  # the blobs of the packs whose index was written
    assert 0 < left < FILES
    report = Capture(repo, "main", state).take("manual")
    assert len(report.snapshot.files) == FILES
    assert report.new_blobs == FILES - left  # what the killed one stored is used, not sent again
    checked = verify(repo)
    assert checked.ok and checked.blobs_checked == FILES
    pruned = prune(repo)
    assert pruned.blobs_removed == 0 and pruned.blobs_kept == FILES
