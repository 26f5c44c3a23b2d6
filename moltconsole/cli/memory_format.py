"""What ``moltconsole memory`` prints: the memory messages (``moltconsole_shared.wire.memory``)
as plain text, in local time, every string that came from the sandbox made inert.

Pure functions of a message and the time now, so tests pin their output; :mod:`.memory` asks
the backend and picks one.
"""

from __future__ import annotations

import time

from moltconsole.formatting import duration
from moltconsole_shared.table import format_table
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire import memory as wire

SQLITE_MAGIC = b"SQLite format 3\x00"
# ANSI colours of a diff on a terminal (NO_COLOR turns them off).
RED, GREEN, CYAN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[1m", "\x1b[0m"


def size(count: int) -> str:
    """Bytes as people read them: 512 B, 3.4 KiB, 12.0 MiB, 1.2 GiB."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def local_time(when: float) -> str:
    """A moment in local time, to the second, as the rest of the CLI shows times."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def ago(when: float, now: float) -> str:
    """How long ago ``when`` was (``now`` for a moment in the future, a clock set wrong)."""
    return "just now" if now - when < 1 else f"{duration(now - when)} ago"


def count(number: int, one: str, many: str | None = None) -> str:
    """``1 file``, ``3 files``."""
    return f"{number:,} {one if number == 1 else many or one + 's'}"


def snapshot_line(snap: wire.SnapshotSummary, now: float) -> str:
    """One snapshot in a sentence: id, when, why, how big."""
    return (f"{sanitize(snap.id)}, {local_time(snap.time)} ({ago(snap.time, now)}), "
            f"{sanitize(snap.reason)}: {count(snap.files, 'file')}, {size(snap.size)}")


# --- status --------------------------------------------------------------------------------
def format_status(status: wire.MemoryStatus, now: float, sandbox: str | None) -> str:
    """``moltconsole memory``: on or off and why; where the snapshots are; the bucket; the last
    snapshot; what waits; what runs now."""
    who = f"sandbox {sandbox}" if sandbox else "the default sandbox"
    if not status.enabled:
        if status.problem:
            return f"memory     off for {who}: {sanitize(status.problem)}"
        return (f"memory     off for {who} (the config's [memory] enabled = false); set it to true "
                "and restart the backend to keep the agent's files with history")
    watching = "watching for changes" if status.watching else (
        "not watching (no state directory yet: start the sandbox once)"
    )
    lines = [f"memory     on for {who}, {watching}"]
    lines.append(f"repository {sanitize(status.repository)}"
                 + (", encrypted" if status.encrypted else ", not encrypted (it holds the agent's secrets)"))
    if status.bucket is not None:
        lines.append(f"bucket     {bucket_line(status.bucket, now)}")
    if status.last_snapshot is not None:
        lines.append(f"last       {snapshot_line(status.last_snapshot, now)}")
    else:
        lines.append("last       no snapshot yet ('moltconsole memory backup' takes one now)")
    if status.bucket is not None or status.pending:
        lines.append(f"pending    {count(status.pending, 'snapshot')} not in the bucket yet"
                     if status.pending else "pending    none: the bucket has every snapshot")
    if status.operation is not None:
        lines.append(f"running    {operation_line(status.operation, now)}")
    if status.last_error:
        lines.append(f"  ! {sanitize(status.last_error)}")
    return "\n".join(lines)


def bucket_line(bucket: wire.BucketStatus, now: float) -> str:
    """Where the bucket is, and whether it can be reached (since when not)."""
    where = sanitize(bucket.where)
    if bucket.reachable is None:
        return f"{where}: not reached yet"
    if bucket.reachable:
        pushed = f", last copy {ago(bucket.last_push, now)}" if bucket.last_push is not None else ""
        return f"{where}: reachable{pushed}"
    since = ""
    if bucket.unreachable_since is not None:
        since = (f" since {local_time(bucket.unreachable_since)} "
                 f"({duration(now - bucket.unreachable_since)})")
    error = f": {sanitize(bucket.last_error)}" if bucket.last_error else ""
    return f"{where}: UNREACHABLE{since}{error}; snapshots wait in the local repository"


def operation_line(operation: wire.Operation, now: float) -> str:
    """A long operation and how far it is."""
    text = f"{sanitize(operation.kind)} for {duration(now - operation.started)}"
    if operation.total:
        percent = 100 * operation.done / operation.total
        text += f": {size(operation.done)} of {size(operation.total)} ({percent:.0f}%)"
    elif operation.done:
        text += f": {size(operation.done)} so far"
    return text


# --- tables --------------------------------------------------------------------------------
def format_snapshots(listing: wire.SnapshotList) -> str:
    """``moltconsole memory snapshots``: newest first."""
    rows = [[s.id, local_time(s.time), s.reason, f"{s.files:,}", size(s.size)] for s in listing.snapshots]
    return format_table(["snapshot", "time", "reason", "files", "size"], rows)


def format_files(files: list[wire.FileInfo]) -> str:
    """``moltconsole memory ls``: path, size, modified (local time), and a total."""
    rows = [[size(f.size), local_time(f.mtime) if f.mtime else "-", f.path] for f in files]
    total = sum(f.size for f in files)
    return format_table(["size", "modified", "path"], rows) + f"\n{count(len(files), 'file')}, {size(total)}"


def format_history(history: wire.FileHistory) -> str:
    """``moltconsole memory log PATH``: its versions, oldest first."""
    rows = [[v.snapshot, local_time(v.time), v.reason, v.change,
             "-" if v.change == "removed" else size(v.size)] for v in history.versions]
    return format_table(["snapshot", "time", "reason", "change", "size"], rows)


def format_search(result: wire.SearchResult, limit: int) -> str:
    """``moltconsole memory search TEXT``: ``path:line: text``, then how many and where."""
    lines = [f"{sanitize(m.path)}:{m.line}: {sanitize(m.text)}" for m in result.matches]
    where = f"snapshot {sanitize(result.snapshot)}" if result.snapshot else "the state directory now"
    files = {m.path for m in result.matches}
    if not result.matches:
        lines.append(f"no line holds {sanitize(result.query)!r} in {count(result.files_searched, 'file')} "
                     f"of {where} (text files only; SQLite databases are not searched)")
    else:
        lines.append(f"{count(len(result.matches), 'line')} in {count(len(files), 'file')} "
                     f"({count(result.files_searched, 'file')} of {where} searched)")
    if result.truncated:
        lines.append(f"more lines match than the {limit:,} shown; --limit N shows more (at most 1,000)")
    return "\n".join(lines)


# --- diff ----------------------------------------------------------------------------------
def format_diff(diff: wire.FileDiff, colour: bool) -> str:
    """A unified diff, every line inert, coloured when ``colour``."""
    if diff.same:
        return f"{sanitize(diff.path)} is the same in {sanitize(diff.old)} and {sanitize(diff.new)}"
    lines = [sanitize(line) for line in diff.text.rstrip("\n").split("\n")]
    if diff.binary or not colour:
        return "\n".join(lines)
    return "\n".join(_coloured(line) for line in lines)


def _coloured(line: str) -> str:
    if line.startswith(("+++", "---")):
        return BOLD + line + RESET
    if line.startswith("@@"):
        return CYAN + line + RESET
    if line.startswith("+"):
        return GREEN + line + RESET
    if line.startswith("-"):
        return RED + line + RESET
    return line


# --- cat -----------------------------------------------------------------------------------
def binary_kind(content: bytes) -> str | None:
    """What makes ``content`` unfit for a terminal ("a SQLite database", "binary"), or None
    for text."""
    if content.startswith(SQLITE_MAGIC):
        return "a SQLite database"
    if b"\x00" in content[:8192]:
        return "binary"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    return None


def inert_text(content: bytes) -> str:
    """File content for a terminal: decoded (undecodable bytes replaced), line breaks kept,
    every other control character shown as a symbol."""
    text = content.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return "\n".join(sanitize(line) for line in text.split("\n"))


# --- operations ----------------------------------------------------------------------------
def format_backup(result: wire.BackupResult, now: float) -> str:
    """``moltconsole memory backup``: the snapshot, and what it took."""
    return "\n".join([
        f"snapshot {snapshot_line(result.snapshot, now)}",
        f"read {count(result.read_files, 'file')} (the others were unchanged), "
        f"{count(result.new_blobs, 'new blob')}, {size(result.stored_bytes)} stored, "
        f"in {result.seconds:.2f} s",
    ])


def format_restore(result: wire.RestoreResult, now: float) -> str:
    """``moltconsole memory restore``: what came back, and where what was there before is."""
    what = sanitize(result.path) if result.path else "the whole state directory"
    lines = [f"restored {what} from snapshot {sanitize(result.snapshot)}: "
             f"{count(result.files, 'file')}, {size(result.bytes)}"]
    if result.restarted:
        lines.append("the sandbox was stopped for it and started again")
    if result.safety is not None:
        undo = f"moltconsole memory restore {sanitize(result.safety.id)}" + (
            f" {sanitize(result.path)}" if result.path else ""
        )
        lines.append(f"what was there before is in the safety snapshot {sanitize(result.safety.id)} "
                     f"(undo: {undo})")
    else:
        lines.append("the state directory was empty before: no safety snapshot was needed")
    return "\n".join(lines)


def format_verify(result: wire.VerifyResult) -> str:
    """``moltconsole memory verify``: whole, or which blobs are hurt and what they hold."""
    lines = [f"checked {count(result.snapshots, 'snapshot')} and {count(result.blobs_checked, 'blob')} "
             f"({size(result.bytes_read)} read) in {result.seconds:.1f} s"]
    for blob in result.damaged:
        held = ", ".join(sanitize(p) for p in blob.paths) or "?"
        hurt = ", ".join(sanitize(s) for s in blob.snapshots)
        lines.append(f"  ! blob {sanitize(blob.blob)} is {blob.problem}: it holds {held} in "
                     f"{count(len(blob.snapshots), 'snapshot')} ({hurt})")
    for manifest in result.bad_manifests:
        lines.append(f"  ! manifest {sanitize(manifest)}")
    if result.ok:
        lines.append("all whole")
    else:
        lines.append("damaged: restore those files from a snapshot that does not need the blob "
                     "('moltconsole memory log PATH' lists the versions), or take a new backup so the "
                     "next snapshot holds them whole")
    return "\n".join(lines)


def format_prune(result: wire.PruneResult) -> str:
    """``moltconsole memory prune``: what was (or would be) forgotten and freed."""
    would = "would " if result.dry_run else ""
    lines = [f"{would}keep {count(len(result.kept), 'snapshot')}, "
             f"{would}forget {count(len(result.forgotten), 'snapshot')}"]
    lines.extend(f"  - {sanitize(s)}" for s in result.forgotten)
    lines.append(f"{would}remove {count(result.blobs_removed, 'blob')} no kept snapshot needs "
                 f"({size(result.bytes_freed)}); {count(result.blobs_kept, 'blob')} kept")
    if result.dry_run:
        lines.append("nothing was changed (--dry-run)")
    return "\n".join(lines)


def format_moltworker(listing: wire.MoltworkerListing) -> str:
    """``moltconsole memory moltworker LOCATION``: the bucket's files where they would go."""
    lines = [f"{sanitize(listing.location)}: a Moltworker bucket ({sanitize(listing.layout)}), read-only"]
    if listing.files:
        lines.append(format_files(listing.files))
    else:
        lines.append("no file in it that would be kept")
    if listing.skipped:
        lines.append(f"left out ({len(listing.skipped)}):")
        lines.extend(f"  {sanitize(s)}" for s in listing.skipped)
    return "\n".join(lines)


def format_import(result: wire.ImportResult, now: float) -> str:
    """``moltconsole memory import-moltworker``: the snapshot it became, and whether it is in
    place."""
    lines = [f"imported as snapshot {snapshot_line(result.snapshot, now)}"]
    if result.message:  # the backend's words say where it is and what to do
        lines.append(sanitize(result.message))
    elif result.restored:
        lines.append("it is in the sandbox's state directory now")
    else:
        lines.append(f"not put in place; to do so: moltconsole memory restore {sanitize(result.snapshot.id)}")
    if result.skipped:
        lines.append(f"left out ({len(result.skipped)}):")
        lines.extend(f"  {sanitize(s)}" for s in result.skipped)
    return "\n".join(lines)


def format_progress(running: wire.Operation) -> str:
    """One line for a running operation: what, how far, how much."""
    share = min(running.done / running.total, 1.0) if running.total else 0.0
    return f"{running.kind} {share:4.0%}  {size(running.done)} of {size(running.total)}"
