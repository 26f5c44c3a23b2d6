"""A sandbox's memory: its state directory kept in a repository with history (issue 11).

Every resource is per sandbox, under ``/v1/sandboxes/{name}/memory`` (and ``/v1/memory`` for
the default sandbox):

    GET  memory                      MemoryStatus: on or off, the repository, the bucket, the last
                                     snapshot, what is pending, what runs now (with progress)
    GET  memory/snapshots            SnapshotList, newest first
    GET  memory/files?snapshot=ID    FileList: the state directory now (no ``snapshot``) or then
    GET  memory/file?path=P&snapshot=ID   the file's bytes (application/octet-stream)
    GET  memory/log?path=P           FileHistory: the versions of one file across snapshots
    GET  memory/diff?path=P&from=A&to=B   FileDiff between two versions ("now" or a snapshot id)
    GET  memory/search?q=TEXT&snapshot=ID SearchResult: lines holding TEXT (case-insensitive)
    POST memory/backup               BackupResult: a snapshot taken now
    POST memory/restore              RestoreRequest -> RestoreResult (one path, or the whole
                                     sandbox: stopped, a safety snapshot, restored, started again)
    POST memory/verify               VerifyRequest -> VerifyResult
    POST memory/prune                PruneRequest -> PruneResult (forget by the retention policy,
                                     then remove blobs no snapshot needs)
    GET  memory/db/tables?path=P&snapshot=ID       memory_db.TableList: a SQLite database's tables
    GET  memory/db/rows?path=P&table=T&offset=&limit=   memory_db.RowsPage, values safe to show
    GET  memory/sessions?snapshot=ID     memory_db.SessionList: OpenClaw's sessions, newest first
    GET  memory/conversation?session=REF&snapshot=ID   memory_db.Conversation: one transcript
    GET  memory/moltworker?location=r2://bucket   MoltworkerListing: a Moltworker bucket, read-only
    GET  memory/moltworker/file?location=L&key=K  one of its files' bytes, as the bucket holds
                                     them (``key`` from the listing's ``keys``; at most 8 MiB)
    POST memory/import-moltworker    MoltworkerRequest -> ImportResult: it becomes a snapshot

Times are Unix seconds (float); sizes are bytes of the files as they are in the state directory
(before compression). Paths are '/'-separated and relative to the state directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from moltconsole_shared.wire.schema import WireSchema


@dataclass(frozen=True)
class SnapshotSummary:
    """One snapshot: when, why (change, schedule, manual, before-stop, safety, import...), how
    many files and bytes, and the snapshot it followed."""

    id: StrictStr
    time: StrictFloat
    reason: StrictStr
    files: StrictInt
    size: StrictInt
    parent: StrictStr | None = None


@dataclass(frozen=True)
class BucketStatus:
    """The bucket the repository is copied to."""

    where: StrictStr
    reachable: StrictBool | None = None  # None: not tried yet
    unreachable_since: StrictFloat | None = None
    last_error: StrictStr = ""
    last_push: StrictFloat | None = None


@dataclass(frozen=True)
class Operation:
    """A long memory operation running now (backup, restore, verify, prune, import), with its
    progress in bytes (``total`` 0 while not known yet)."""

    kind: StrictStr
    started: StrictFloat
    done: StrictInt = 0
    total: StrictInt = 0


@dataclass(frozen=True)
class MemoryStatus:
    """``GET memory``: what the console's sync status line shows.

    ``enabled`` False with an empty ``problem``: memory is off in the config; with a ``problem``:
    it should be on but could not start (the text says why and what to do).
    """

    enabled: StrictBool
    problem: StrictStr = ""
    repository: StrictStr = ""  # where the local repository is
    encrypted: StrictBool = False
    bucket: BucketStatus | None = None
    last_snapshot: SnapshotSummary | None = None
    pending: StrictInt = 0  # snapshots not in the bucket yet
    watching: StrictBool = False  # changes are being watched (the state directory exists)
    last_error: StrictStr = ""
    operation: Operation | None = None


@dataclass(frozen=True)
class SnapshotList:
    """``GET memory/snapshots``: newest first."""

    snapshots: list[SnapshotSummary] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file of the state directory (now or in a snapshot). Slotted: a listing holds tens of
    thousands, and each one's dict would be another object for the garbage collector to walk."""

    path: StrictStr
    size: StrictInt
    mode: StrictInt = 0o600
    mtime: StrictFloat = 0.0


@dataclass(frozen=True)
class FileList:
    """``GET memory/files``: every file, sorted by path; ``snapshot`` None for now."""

    snapshot: StrictStr | None = None
    files: list[FileInfo] = field(default_factory=list)


@dataclass(frozen=True)
class FileVersion:
    """A version of a file: the first snapshot that has it so (``change`` added or changed), or
    the first one without it (``removed``, size 0)."""

    snapshot: StrictStr
    time: StrictFloat
    reason: StrictStr
    change: Literal["added", "changed", "removed"]
    size: StrictInt = 0


@dataclass(frozen=True)
class FileHistory:
    """``GET memory/log``: the versions of one file, oldest first."""

    path: StrictStr
    versions: list[FileVersion] = field(default_factory=list)


@dataclass(frozen=True)
class FileDiff:
    """``GET memory/diff``: a unified diff from ``old`` to ``new`` (each "now" or a snapshot id);
    ``binary`` when either side is not text (``text`` then says how they differ)."""

    path: StrictStr
    old: StrictStr
    new: StrictStr
    text: StrictStr
    binary: StrictBool = False
    same: StrictBool = False


@dataclass(frozen=True)
class SearchMatch:
    path: StrictStr
    line: StrictInt  # 1-based
    text: StrictStr  # the line, cut to 300 characters


@dataclass(frozen=True)
class SearchResult:
    """``GET memory/search``: matching lines in text files (binary files and SQLite databases
    are passed over), at most ``limit``; ``truncated`` when there were more."""

    query: StrictStr
    snapshot: StrictStr | None = None
    matches: list[SearchMatch] = field(default_factory=list)
    files_searched: StrictInt = 0
    truncated: StrictBool = False


@dataclass(frozen=True)
class BackupResult:
    """``POST memory/backup``: the snapshot taken, and what it cost."""

    snapshot: SnapshotSummary
    read_files: StrictInt = 0  # files read (the others were unchanged)
    new_blobs: StrictInt = 0
    stored_bytes: StrictInt = 0
    seconds: StrictFloat = 0.0


@dataclass(frozen=True)
class RestoreRequest:
    """``POST memory/restore``: ``path`` (a file or a folder) as it was in ``snapshot``, or with
    no path the whole sandbox."""

    snapshot: StrictStr
    path: StrictStr | None = None


@dataclass(frozen=True)
class RestoreResult:
    """What was restored, and the safety snapshot of what was there before (None when the state
    directory was empty)."""

    snapshot: StrictStr
    path: StrictStr | None
    files: StrictInt
    bytes: StrictInt
    safety: SnapshotSummary | None = None
    restarted: StrictBool = False  # the sandbox was stopped for it and started again


@dataclass(frozen=True)
class VerifyRequest:
    """``POST memory/verify``: read back every blob (``sample`` None) or a fraction (0-1]."""

    sample: StrictFloat | None = None


@dataclass(frozen=True)
class DamagedBlob:
    blob: StrictStr
    problem: Literal["missing", "damaged"]
    snapshots: list[StrictStr] = field(default_factory=list)  # the snapshots it hurts
    paths: list[StrictStr] = field(default_factory=list)  # the files it holds in them


@dataclass(frozen=True)
class VerifyResult:
    """``POST memory/verify``: ``ok`` when every manifest read and every blob checked is whole."""

    ok: StrictBool
    snapshots: StrictInt
    blobs_checked: StrictInt
    bytes_read: StrictInt
    damaged: list[DamagedBlob] = field(default_factory=list)
    bad_manifests: list[StrictStr] = field(default_factory=list)  # "key: why"
    seconds: StrictFloat = 0.0


@dataclass(frozen=True)
class PruneRequest:
    """``POST memory/prune``: forget this sandbox's snapshots the policy does not keep (the
    config's ``memory.keep_*`` where a field is None), then remove unused blobs."""

    dry_run: StrictBool = False
    keep_last: StrictInt | None = None
    keep_hourly: StrictInt | None = None
    keep_daily: StrictInt | None = None
    keep_weekly: StrictInt | None = None
    keep_monthly: StrictInt | None = None


@dataclass(frozen=True)
class PruneResult:
    dry_run: StrictBool
    kept: list[StrictStr] = field(default_factory=list)
    forgotten: list[StrictStr] = field(default_factory=list)
    blobs_removed: StrictInt = 0
    bytes_freed: StrictInt = 0
    blobs_kept: StrictInt = 0


@dataclass(frozen=True)
class MoltworkerRequest:
    """``GET memory/moltworker`` (query ``location``) and ``POST memory/import-moltworker``: a
    Moltworker bucket, ``r2://bucket`` or ``s3://bucket/prefix`` (credentials from the
    backend's keys file or environment: R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, CF_ACCOUNT_ID,
    or the AWS_* names). ``restore`` puts the import into the sandbox's state directory at once
    (only into an empty one; else it is kept as a snapshot to restore by hand)."""

    location: StrictStr
    endpoint_url: StrictStr | None = None
    restore: StrictBool = True


@dataclass(frozen=True)
class MoltworkerListing:
    """The files of a Moltworker bucket, read-only, at the paths they would have in the state
    directory; ``keys`` gives each path's key in the bucket (what ``memory/moltworker/file``
    reads); ``skipped`` lists keys left out and why; ``notes`` say how the layout was read."""

    location: StrictStr
    layout: StrictStr  # e.g. "openclaw" or "clawdbot (legacy)"
    files: list[FileInfo] = field(default_factory=list)
    skipped: list[StrictStr] = field(default_factory=list)
    keys: dict[StrictStr, StrictStr] = field(default_factory=dict)
    notes: list[StrictStr] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    snapshot: SnapshotSummary
    skipped: list[StrictStr] = field(default_factory=list)
    restored: StrictBool = False
    message: StrictStr = ""


MEMORY_STATUS: WireSchema[MemoryStatus] = WireSchema(MemoryStatus, "memory status")
SNAPSHOT_LIST: WireSchema[SnapshotList] = WireSchema(SnapshotList, "snapshot list")
FILE_LIST: WireSchema[FileList] = WireSchema(FileList, "file list")
FILE_HISTORY: WireSchema[FileHistory] = WireSchema(FileHistory, "file history")
FILE_DIFF: WireSchema[FileDiff] = WireSchema(FileDiff, "diff")
SEARCH_RESULT: WireSchema[SearchResult] = WireSchema(SearchResult, "search result")
BACKUP_RESULT: WireSchema[BackupResult] = WireSchema(BackupResult, "backup result")
RESTORE_REQUEST: WireSchema[RestoreRequest] = WireSchema(RestoreRequest, "restore request")
RESTORE_RESULT: WireSchema[RestoreResult] = WireSchema(RestoreResult, "restore result")
VERIFY_REQUEST: WireSchema[VerifyRequest] = WireSchema(VerifyRequest, "verify request")
VERIFY_RESULT: WireSchema[VerifyResult] = WireSchema(VerifyResult, "verify result")
PRUNE_REQUEST: WireSchema[PruneRequest] = WireSchema(PruneRequest, "prune request")
PRUNE_RESULT: WireSchema[PruneResult] = WireSchema(PruneResult, "prune result")
MOLTWORKER_REQUEST: WireSchema[MoltworkerRequest] = WireSchema(MoltworkerRequest, "moltworker request")
MOLTWORKER_LISTING: WireSchema[MoltworkerListing] = WireSchema(MoltworkerListing, "moltworker listing")
IMPORT_RESULT: WireSchema[ImportResult] = WireSchema(ImportResult, "import result")
