"""One sandbox's memory: its sync status, snapshots, files now and then, versions and diffs,
search, and the operations (back up, restore, verify, prune).

Paths in the sandbox's own app (``/v1/memory...``; by_sandbox.py serves them as
``/v1/sandboxes/NAME/memory...``); the messages are ``moltconsole_shared.wire.memory``'s.
Everything a request names is untrusted: paths are checked before they touch a file, snapshot
ids before they name an object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from moltconsole_backend.api.answers import answer, error, guarded, json_body
from moltconsole_backend.fleet import Sandbox
from moltconsole_backend.memory import browse, sqlite_view, transcripts
from moltconsole_backend.memory.keeper import KeeperError, MemoryKeeper
from moltconsole_backend.memory.moltworker import (
    MoltworkerBucket,
    MoltworkerError,
    TooLarge,
    UnsafeKey,
    shown_key,
)
from moltconsole_backend.memory.repo import Snapshot
from moltconsole_backend.memory.restore import UnsafePath, safe_parts
from moltconsole_backend.memory.retention import Policy
from moltconsole_backend.memory.service import MemoryService, moltworker_store
from moltconsole_backend.memory.store import ObjectMissing, StoreError, StoreUnreachable
from moltconsole_backend.memory.transcripts import SnapshotFiles, state_path
from moltconsole_backend.memory.verify import BlobProblem, VerifyReport
from moltconsole_shared.wire import memory as wire
from moltconsole_shared.wire import memory_db as db_wire
from moltconsole_shared.wire.schema import WireFormatError

SEARCH_LIMIT_MAX = 1000
# A file list this long goes compressed to a client that takes gzip: 15 times smaller, so it
# crosses in a couple of reads instead of a dozen (each a turn of the console's busy loop).
GZIP_FROM = 64 * 1024
EDIT_MAX = 16 * 2**20  # a workspace file edited by hand
MOLTWORKER_READ_MAX = 8 * 2**20  # a bucket's file read to be shown (the console shows up to this)
_KEEP = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


def summary(snap: Snapshot) -> wire.SnapshotSummary:
    return wire.SnapshotSummary(
        id=snap.id, time=snap.time, reason=snap.reason, files=len(snap.files), size=snap.size,
        parent=snap.parent,
    )


def memory_status(keeper: MemoryKeeper | None, service: MemoryService | None) -> wire.MemoryStatus:
    """What the sync status line shows for one sandbox."""
    if keeper is None:
        return wire.MemoryStatus(enabled=False, problem=service.problem if service is not None else "")
    bucket = None
    if keeper.bucket.where is not None:
        b = keeper.bucket
        bucket = wire.BucketStatus(
            where=b.where or "", reachable=b.reachable, unreachable_since=b.unreachable_since,
            last_error=b.last_error, last_push=b.last_push,
        )
    running = keeper.running
    operation = None
    if running is not None:
        operation = wire.Operation(kind=running.kind, started=running.started, done=running.done,
                                   total=running.total)
    return wire.MemoryStatus(
        enabled=True, repository=keeper.repo.store.where, encrypted=keeper.repo.encrypted, bucket=bucket,
        last_snapshot=summary(keeper.last) if keeper.last is not None else None,
        pending=keeper.pending, watching=keeper.watching, last_error=keeper.last_error,
        operation=operation,
    )


def memory_routes(sandbox: Sandbox, service: MemoryService | None) -> list[BaseRoute]:
    """The memory routes of ``sandbox`` (its keeper, when memory is on)."""

    def with_keeper(call: Callable[[MemoryKeeper, Request], Awaitable[Response]]) -> Handler:
        async def handler(request: Request) -> Response:
            keeper = sandbox.memory
            if keeper is None:
                why = service.problem if service is not None and service.problem else (
                    "memory is off in the config; set [memory] enabled = true and restart the backend"
                )
                return error("operation", f"sandbox {sandbox.name}: {why}", 409)

            async def run() -> Response:
                try:
                    return await call(keeper, request)
                except KeeperError as exc:
                    return error("operation", str(exc), 409)
                except UnsafePath as exc:
                    return error("request", str(exc), 400)
                except StoreError as exc:
                    return error("operation", f"the memory repository could not be read: {exc}", 503)

            return await guarded(run)

        return handler

    async def status(_: Request) -> Response:
        return answer(wire.MEMORY_STATUS, memory_status(sandbox.memory, service))

    async def snapshots(keeper: MemoryKeeper, _: Request) -> Response:
        snaps = await keeper.snapshots()
        return answer(wire.SNAPSHOT_LIST, wire.SnapshotList([summary(s) for s in reversed(snaps)]))

    # The answer for the files now, encoded (and compressed), while the keeper's listing stays
    # the same version: a 10,000-file list is a megabyte of JSON, built once, not at each
    # request. Versions are unique across keepers, so one kept answer never passes for another's.
    now_answer: list[tuple[int, bytes, bytes]] = []

    async def files(keeper: MemoryKeeper, request: Request) -> Response:
        snapshot_id = request.query_params.get("snapshot") or None
        if snapshot_id is None:
            version, found = await asyncio.to_thread(keeper.listing.current)
            if version is not None and now_answer and now_answer[0][0] == version:
                body, packed = now_answer[0][1], now_answer[0][2]
            else:
                listed = [wire.FileInfo(path=p, size=st.st_size, mode=st.st_mode & 0o777,
                                        mtime=st.st_mtime_ns / 1e9) for p, st in found]
                body = wire.FILE_LIST.dump_json(wire.FileList(snapshot=None, files=listed))
                packed = await asyncio.to_thread(gzip.compress, body, 1) if len(body) >= GZIP_FROM else b""
                if version is not None:
                    now_answer[:] = [(version, body, packed)]
            return _json_answer(request, body, packed)
        else:
            snap = await keeper.snapshot(snapshot_id)
            listed = [wire.FileInfo(path=f.path, size=f.size, mode=f.mode, mtime=f.mtime_ns / 1e9)
                      for f in sorted(snap.files, key=lambda f: f.path)]
        return answer(wire.FILE_LIST, wire.FileList(snapshot=snapshot_id, files=listed))

    async def file(keeper: MemoryKeeper, request: Request) -> Response:
        path = _path(request)
        content = await keeper.read(path, request.query_params.get("snapshot") or None)
        return Response(content, media_type="application/octet-stream")

    async def write(keeper: MemoryKeeper, request: Request) -> Response:
        path = _path(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > EDIT_MAX:
            return error("request", f"an edited file may be at most {EDIT_MAX // 2**20} MiB", 413)
        content = bytearray()
        async for chunk in request.stream():
            content += chunk
            if len(content) > EDIT_MAX:
                return error("request", f"an edited file may be at most {EDIT_MAX // 2**20} MiB", 413)
        before = await keeper.write(path, bytes(content))
        await sandbox.manager.give_state_to_sandbox()
        return answer(wire.BACKUP_RESULT, wire.BackupResult(snapshot=summary(before)))

    async def log(keeper: MemoryKeeper, request: Request) -> Response:
        path = _path(request)
        versions = browse.history(await keeper.snapshots(), path)
        return answer(wire.FILE_HISTORY, wire.FileHistory(path=path, versions=[
            wire.FileVersion(snapshot=v.snapshot.id, time=v.snapshot.time, reason=v.snapshot.reason,
                             change=v.change, size=v.size)  # type: ignore[arg-type]
            for v in versions
        ]))

    async def diff(keeper: MemoryKeeper, request: Request) -> Response:
        path = _path(request)
        old = request.query_params.get("from") or "now"
        new = request.query_params.get("to") or "now"
        before = await _version(keeper, path, old)
        after = await _version(keeper, path, new)
        if before is None and after is None:
            raise KeeperError(f"{path} is in neither {old} nor {new}")
        result = browse.diff(path, before, after, old, new)
        return answer(wire.FILE_DIFF, wire.FileDiff(
            path=path, old=old, new=new, text=result.text, binary=result.binary, same=result.same,
        ))

    async def search(keeper: MemoryKeeper, request: Request) -> Response:
        query = request.query_params.get("q", "")
        if not query.strip():
            return error("request", "say what to search for: ?q=TEXT", 400)
        try:
            limit = max(1, min(int(request.query_params.get("limit", "200")), SEARCH_LIMIT_MAX))
        except ValueError:
            return error("request", "limit must be a whole number", 400)
        snapshot_id = request.query_params.get("snapshot") or None
        matches, searched, truncated = await _search(keeper, query, snapshot_id, limit)
        return answer(wire.SEARCH_RESULT, wire.SearchResult(
            query=query, snapshot=snapshot_id, files_searched=searched, truncated=truncated,
            matches=[wire.SearchMatch(path=m.path, line=m.line, text=m.text) for m in matches],
        ))

    async def backup(keeper: MemoryKeeper, _: Request) -> Response:
        report = await keeper.backup("manual")
        return answer(wire.BACKUP_RESULT, wire.BackupResult(
            snapshot=summary(report.snapshot), read_files=report.read_files, new_blobs=report.new_blobs,
            stored_bytes=report.uploaded_bytes, seconds=report.seconds,
        ))

    async def restore(keeper: MemoryKeeper, request: Request) -> Response:
        request_body = await _read(request, wire.RESTORE_REQUEST)
        if isinstance(request_body, Response):
            return request_body
        snapshot_id, path = request_body.snapshot, request_body.path
        if path:
            safe_parts(path.rstrip("/"))
            safety, written = await keeper.restore_path(path, snapshot_id)
            await sandbox.manager.give_state_to_sandbox()
            return answer(wire.RESTORE_RESULT, wire.RestoreResult(
                snapshot=snapshot_id, path=path, files=len(written), bytes=sum(e.size for e in written),
                safety=summary(safety),
            ))
        snap = await keeper.snapshot(snapshot_id)  # refuse an unknown one before stopping anything
        restored: tuple[Snapshot | None, bool] = await sandbox.manager.while_stopped(
            "restore the sandbox's memory", lambda: keeper.restore_all(snap.id)
        )
        before, restarted = restored
        sandbox.manager.notice(
            f"memory of sandbox {sandbox.name} restored to snapshot {snap.id}"
            + (f"; what was there before is in snapshot {before.id}" if before is not None else ""),
            "info",
        )
        return answer(wire.RESTORE_RESULT, wire.RestoreResult(
            snapshot=snap.id, path=None, files=len(snap.files), bytes=snap.size,
            safety=summary(before) if before is not None else None, restarted=restarted,
        ))

    async def verify(keeper: MemoryKeeper, request: Request) -> Response:
        asked = await _read(request, wire.VERIFY_REQUEST)
        if isinstance(asked, Response):
            return asked
        if asked.sample is not None and not 0 < asked.sample <= 1:
            return error("request", "sample is a fraction of the blobs to read: more than 0, at most 1", 400)
        report = await keeper.verify(asked.sample)
        damaged = [
            wire.DamagedBlob(
                blob=b.blob, problem=kind, snapshots=[ref.id for ref in b.snapshots], paths=b.paths,
            )
            for kind, problems in _problems(report)
            for b in problems
        ]
        return answer(wire.VERIFY_RESULT, wire.VerifyResult(
            ok=report.ok, snapshots=report.manifests, blobs_checked=report.blobs_checked,
            bytes_read=report.bytes_read, damaged=damaged,
            bad_manifests=[f"{bad.key}: {bad.reason}" for bad in report.bad_manifests],
            seconds=report.seconds,
        ))

    async def prune(keeper: MemoryKeeper, request: Request) -> Response:
        asked = await _read(request, wire.PRUNE_REQUEST)
        if isinstance(asked, Response):
            return asked
        configured = Policy.from_settings(keeper.settings)
        try:
            policy = dataclasses.replace(configured, **{
                name: value for name in _KEEP if (value := getattr(asked, name)) is not None
            })
        except ValueError as exc:
            return error("request", f"{exc}", 400)
        forgotten, pruned = await keeper.prune(policy, asked.dry_run)
        return answer(wire.PRUNE_RESULT, wire.PruneResult(
            dry_run=asked.dry_run, kept=[s.id for s in forgotten.keep],
            forgotten=[s.id for s in forgotten.forget], blobs_removed=pruned.blobs_removed,
            bytes_freed=pruned.bytes_removed, blobs_kept=pruned.blobs_kept,
        ))

    def bucket(asked: wire.MoltworkerRequest) -> MoltworkerBucket:
        env = service.env if service is not None else {}
        settings = service.settings if service is not None else sandbox.settings
        try:
            store = moltworker_store(settings, env, asked.location, asked.endpoint_url or "")
        except ValueError as exc:
            raise KeeperError(f"cannot read the Moltworker bucket {asked.location!r}: {exc}") from None
        return MoltworkerBucket(store, settings.memory.excludes)

    def asked_bucket(request: Request) -> wire.MoltworkerRequest | Response:
        asked = wire.MoltworkerRequest(
            location=request.query_params.get("location", ""),
            endpoint_url=request.query_params.get("endpoint_url") or None,
        )
        if not asked.location:
            return error("request", "say which bucket: ?location=r2://BUCKET or s3://BUCKET/PREFIX", 400)
        return asked

    async def moltworker(keeper: MemoryKeeper, request: Request) -> Response:
        asked = asked_bucket(request)
        if isinstance(asked, Response):
            return asked
        try:
            scan = await asyncio.to_thread(bucket(asked).scan)
        except MoltworkerError as exc:
            raise KeeperError(str(exc)) from None
        except StoreError as exc:
            return _bucket_error(asked.location, exc)
        layout = scan.layout
        return answer(wire.MOLTWORKER_LISTING, wire.MoltworkerListing(
            location=asked.location,
            layout=(layout.config_prefix or "no config") + (" (legacy)" if layout.legacy else ""),
            files=[wire.FileInfo(path=f.path, size=f.size or 0, mtime=(f.mtime_ns or 0) / 1e9)
                   for f in scan.files],
            skipped=[f"{o.key}: {o.reason}" for o in scan.left_out],
            keys={f.path: f.key for f in scan.files},
            notes=list(layout.notes),
        ))

    async def moltworker_file(keeper: MemoryKeeper, request: Request) -> Response:
        asked = asked_bucket(request)
        if isinstance(asked, Response):
            return asked
        key = request.query_params.get("key", "")
        if not key:
            return error("request", "say which file: ?key=workspace/MEMORY.md (a key the listing gives)", 400)
        try:
            content = await asyncio.to_thread(bucket(asked).read, key, MOLTWORKER_READ_MAX)
        except UnsafeKey as exc:
            return error("request", str(exc), 400)
        except TooLarge as exc:
            return error("request", (
                f"{exc}: the bucket is read here up to {_amount(MOLTWORKER_READ_MAX)} a file; import "
                "it ('moltconsole memory import-moltworker', or i on the Memory screen) and read the "
                "file in the snapshot it becomes"
            ), 413)
        except ObjectMissing:
            return error("not_found", (
                f"{shown_key(key)} is no longer in {asked.location} (Moltworker may have synced since "
                "it was listed); list the bucket again"
            ), 404)
        except StoreError as exc:
            return _bucket_error(asked.location, exc)
        return Response(content, media_type="application/octet-stream")

    async def import_moltworker(keeper: MemoryKeeper, request: Request) -> Response:
        asked = await _read(request, wire.MOLTWORKER_REQUEST)
        if isinstance(asked, Response):
            return asked
        try:
            report, restored = await keeper.import_moltworker(bucket(asked), asked.restore)
        except StoreError as exc:  # the bucket, or the repository, failed part way: nothing kept
            status = 503 if isinstance(exc, StoreUnreachable) else 409
            return error("operation", (
                f"importing the Moltworker bucket {asked.location} failed and nothing was imported: {exc}"
            ), status)
        if restored:
            await sandbox.manager.give_state_to_sandbox()
            message = f"imported and restored into the empty state directory of sandbox {sandbox.name}"
        elif not asked.restore:
            message = (
                f"imported as snapshot {report.snapshot.id}, not restored (as asked): 'moltconsole -s "
                f"{sandbox.name} memory restore {report.snapshot.id}' puts it in place"
            )
        else:
            message = (
                f"imported as snapshot {report.snapshot.id}; the state directory of sandbox {sandbox.name} "
                f"is not empty, so nothing in it changed: 'moltconsole -s {sandbox.name} memory restore "
                f"{report.snapshot.id}' puts it in place (the sandbox is stopped and started again, and "
                "what is there now is kept in a safety snapshot)"
            )
        return answer(wire.IMPORT_RESULT, wire.ImportResult(
            snapshot=summary(report.snapshot),
            skipped=[f"{o.key}: {o.reason}" for o in report.left_out] + report.warnings,
            restored=restored, message=message,
        ))

    async def db_source(keeper: MemoryKeeper, request: Request) -> tuple[Path | bytes, str]:
        """The database a request names: the live file (read in place, never written), or a
        snapshot's copy."""
        path = _path(request)
        snapshot_id = request.query_params.get("snapshot") or None
        if snapshot_id is None:
            try:
                return state_path(keeper.state_dir, path), path
            except ValueError as exc:
                raise UnsafePath(str(exc)) from None
        return await keeper.read(path, snapshot_id), f"{path} in snapshot {snapshot_id}"

    def snapshot_files(keeper: MemoryKeeper, snap: Snapshot) -> SnapshotFiles:
        return SnapshotFiles({e.path: functools.partial(keeper.repo.read_file, e) for e in snap.files})

    async def db_tables(keeper: MemoryKeeper, request: Request) -> Response:
        source, label = await db_source(keeper, request)
        found = await _viewed(asyncio.to_thread(sqlite_view.tables, source, label=label))
        if isinstance(found, Response):
            return found
        return answer(db_wire.TABLE_LIST, db_wire.TableList(tables=found))

    async def db_rows(keeper: MemoryKeeper, request: Request) -> Response:
        table = request.query_params.get("table", "")
        if not table:
            return error("request", "say which table: ?table=NAME (GET memory/db/tables lists them)", 400)
        try:
            offset = int(request.query_params.get("offset", "0"))
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return error("request", "offset and limit must be whole numbers", 400)
        source, label = await db_source(keeper, request)
        page = await _viewed(asyncio.to_thread(sqlite_view.rows, source, table, offset, limit, label=label))
        if isinstance(page, Response):
            return page
        return answer(db_wire.ROWS_PAGE, page)

    async def sessions(keeper: MemoryKeeper, request: Request) -> Response:
        snapshot_id = request.query_params.get("snapshot") or None
        if snapshot_id is None:
            found = await _viewed(asyncio.to_thread(transcripts.sessions, keeper.state_dir))
        else:
            snap = await keeper.snapshot(snapshot_id)
            found = await _viewed(asyncio.to_thread(transcripts.sessions, snapshot_files(keeper, snap)))
        if isinstance(found, Response):
            return found
        return answer(db_wire.SESSION_LIST, found)

    async def conversation(keeper: MemoryKeeper, request: Request) -> Response:
        ref = request.query_params.get("session", "")
        if not ref:
            return error("request", "say which session: ?session=REF (GET memory/sessions lists them)", 400)
        internal = request.query_params.get("internal", "") in ("1", "true", "yes")
        snapshot_id = request.query_params.get("snapshot") or None
        source: Path | SnapshotFiles = keeper.state_dir
        if snapshot_id is not None:
            source = snapshot_files(keeper, await keeper.snapshot(snapshot_id))
        found = await _viewed(asyncio.to_thread(transcripts.conversation, source, ref, internal=internal))
        if isinstance(found, Response):
            return found
        return answer(db_wire.CONVERSATION, found)

    return [
        Route("/v1/memory", status),
        Route("/v1/memory/db/tables", with_keeper(db_tables)),
        Route("/v1/memory/db/rows", with_keeper(db_rows)),
        Route("/v1/memory/sessions", with_keeper(sessions)),
        Route("/v1/memory/conversation", with_keeper(conversation)),
        Route("/v1/memory/moltworker", with_keeper(moltworker)),
        Route("/v1/memory/moltworker/file", with_keeper(moltworker_file)),
        Route("/v1/memory/import-moltworker", with_keeper(import_moltworker), methods=["POST"]),
        Route("/v1/memory/verify", with_keeper(verify), methods=["POST"]),
        Route("/v1/memory/prune", with_keeper(prune), methods=["POST"]),
        Route("/v1/memory/snapshots", with_keeper(snapshots)),
        Route("/v1/memory/files", with_keeper(files)),
        Route("/v1/memory/file", with_keeper(file)),
        Route("/v1/memory/file", with_keeper(write), methods=["PUT"]),
        Route("/v1/memory/log", with_keeper(log)),
        Route("/v1/memory/diff", with_keeper(diff)),
        Route("/v1/memory/search", with_keeper(search)),
        Route("/v1/memory/backup", with_keeper(backup), methods=["POST"]),
        Route("/v1/memory/restore", with_keeper(restore), methods=["POST"]),
    ]


def _amount(size: int) -> str:
    """``size`` bytes in words: whole MiB, or bytes below one."""
    return f"{size // 2**20:,} MiB" if size >= 2**20 else f"{size:,} bytes"


def _bucket_error(location: str, exc: StoreError) -> Response:
    """A Moltworker bucket that failed: unreachable (503, worth trying again) or refusing (the
    credentials, the bucket's name: 409); the store's words say which and what to set."""
    if isinstance(exc, StoreUnreachable):
        return error("operation", f"the Moltworker bucket {location} cannot be read now: {exc}", 503)
    return error("operation", f"the Moltworker bucket {location} cannot be read: {exc}", 409)


def _json_answer(request: Request, body: bytes, packed: bytes) -> Response:
    """``body`` (JSON), sent as ``packed`` (its gzip) when there is one and the client takes it."""
    headers = {"Vary": "Accept-Encoding"}
    if packed and "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="application/json", headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def _viewed(work: Awaitable[T]) -> T | Response:
    """The result of reading a database or a transcript, or the error answer to send."""
    try:
        return await work
    except (sqlite_view.NoSuchTable, transcripts.NoSuchSession) as exc:
        return error("not_found", str(exc), 404)
    except ValueError as exc:
        return error("request", str(exc), 400)
    except (sqlite_view.SqliteViewError, transcripts.TranscriptError) as exc:
        return error("operation", str(exc), 409)


def _problems(report: VerifyReport) -> list[tuple[Literal["missing", "damaged"], list[BlobProblem]]]:
    return [("missing", report.missing), ("damaged", report.damaged)]


def _path(request: Request) -> str:
    path = request.query_params.get("path", "")
    if not path:
        raise UnsafePath("say which file: ?path=workspace/MEMORY.md (a path in the state directory)")
    safe_parts(path)
    return path


async def _version(keeper: MemoryKeeper, path: str, which: str) -> bytes | None:
    """``path`` now or in snapshot ``which``; None where it is not there."""
    try:
        return await keeper.read(path, None if which == "now" else which)
    except KeeperError:
        if which != "now":
            await keeper.snapshot(which)  # an unknown snapshot is an error, a missing file is not
        return None


async def _search(
    keeper: MemoryKeeper, query: str, snapshot_id: str | None, limit: int,
) -> tuple[list[browse.Match], int, bool]:
    if snapshot_id is None:
        root = keeper.state_dir
        paths = [p for p, st in await asyncio.to_thread(keeper.files_now) if st.st_size <= browse.MAX_TEXT]

        def read_now(path: str) -> bytes | None:
            try:
                return root.joinpath(*path.split("/")).read_bytes()
            except OSError:
                return None

        return await asyncio.to_thread(browse.search, paths, read_now, query, limit)
    snap = await keeper.snapshot(snapshot_id)
    entries = {f.path: f for f in snap.files}

    def read_then(path: str) -> bytes | None:
        if snap_sizes[path] > browse.MAX_TEXT:
            return None
        try:
            return keeper.repo.read_file(entries[path])
        except (StoreError, ValueError):
            return None

    snap_sizes = {f.path: f.size for f in snap.files}
    return await asyncio.to_thread(browse.search, list(entries), read_then, query, limit)


async def _read(request: Request, schema: Any) -> Any:
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    try:
        return schema.read(body)
    except WireFormatError as exc:
        return error("request", str(exc), 400)

