"""How the Memory screen and the Dashboard put a sandbox's memory into words and colours.

Pure functions of the memory messages (``moltconsole_shared.wire.memory``) and the time now,
so tests pin what they say; no widgets here. Everything that came from the sandbox (paths,
reasons, error texts, file contents) is made inert with ``sanitize`` before it is returned.
"""

from __future__ import annotations

import time

from rich.text import Text

from moltconsole.formatting import duration
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory import BucketStatus, MemoryStatus, Operation, SnapshotSummary

# How to turn memory on, where the backend did not say (it says so itself when it can).
MEMORY_OFF = (
    "Memory is off: the agent's files are not kept. Set [memory] enabled = true in config.toml "
    "(or MOLTCONSOLE_MEMORY__ENABLED=true in the backend's environment) and restart the backend."
)


def size(count: int) -> str:
    """Bytes as people read them: 512 B, 3.4 KiB, 12.0 MiB."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    units = ("KiB", "MiB", "GiB", "TiB")
    for unit in units[:-1]:
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} {units[-1]}"


def counted(number: int, one: str, many: str | None = None) -> str:
    """``1 file``, ``1,234 files``."""
    return f"{number:,} {one if number == 1 else many or one + 's'}"


def ago(when: float, now: float) -> str:
    """How long before ``now`` ``when`` was; "just now" for under a second (or a clock set wrong)."""
    return "just now" if now - when < 1 else f"{duration(now - when)} ago"


def clock_time(when: float) -> str:
    """A moment in local time, to the second."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def day_time(when: float) -> str:
    """A moment in local time with its date, for lists that span days."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(when))


def reading_rank(path: str) -> int:
    """What a person looks at first (the backend's ``browse.reading_order``, whose search
    results come in this order): the workspace's markdown 0, other markdown 1, the rest 2."""
    if path.endswith(".md"):
        return 0 if path.startswith("workspace/") else 1
    return 2


def snapshot_words(snap: SnapshotSummary, now: float) -> str:
    """A snapshot in a few words: when, why, how many files, how big."""
    return (f"{day_time(snap.time)} ({ago(snap.time, now)}) · {sanitize(snap.reason)} · "
            f"{counted(snap.files, 'file')} · {size(snap.size)}")


def bucket_words(bucket: BucketStatus) -> tuple[str, str]:
    """(what the bucket's state is, its style)."""
    where = sanitize(bucket.where)
    if bucket.reachable is False:
        since = f" since {clock_time(bucket.unreachable_since)}" if bucket.unreachable_since else ""
        return f"bucket {where} unreachable{since}", "bold red"
    if bucket.reachable is None:
        return f"bucket {where} not tried yet", "yellow"
    return f"bucket {where} reachable", "green"


def operation_words(operation: Operation) -> str:
    """A running operation and how far it is."""
    if operation.total > 0:
        percent = min(100, int(operation.done * 100 / operation.total))
        return f"{operation.kind} {percent}% ({size(operation.done)} of {size(operation.total)})"
    return f"{operation.kind} running…"


def sync_line(status: MemoryStatus, now: float) -> Text:
    """The Memory screen's sync status: the last snapshot (age, files, size), what is pending,
    the bucket, the last error, what runs now. Long: it wraps, each fact whole."""
    if not status.enabled:  # the screen says why and what to do, in full, below
        return Text("memory off" if not status.problem else "memory could not start", style="bold yellow")
    parts: list[tuple[str, str]] = []
    last = status.last_snapshot
    if last is None:
        parts.append(("no snapshot yet (b takes one)", "yellow"))
    else:
        parts.append((f"last snapshot {ago(last.time, now)} · {counted(last.files, 'file')} · "
                      f"{size(last.size)}", ""))
    if status.bucket is not None:
        parts.append((f"{status.pending:,} pending" if status.pending else "none pending",
                      "yellow" if status.pending else ""))
        parts.append(bucket_words(status.bucket))
    else:
        parts.append(("local only", "dim"))
    if status.encrypted:
        parts.append(("encrypted", "dim"))
    if not status.watching:
        parts.append(("not watching (no state directory yet)", "yellow"))
    if status.operation is not None:
        parts.append((operation_words(status.operation), "bold"))
    error = status.last_error or (status.bucket.last_error if status.bucket is not None else "")
    text = Text()
    for words, style in parts:
        if text:
            text.append(" · ", style="dim")
        text.append(words, style=style)
    if error:
        text.append(" · ", style="dim")
        text.append(f"error: {sanitize(error)}", style="red")
    return text


def dashboard_words(status: MemoryStatus | None, now: float) -> tuple[str, str]:
    """The Dashboard's one line on memory: (words, style). Short: the Memory screen (4) has it all."""
    if status is None:
        return "-", ""
    if not status.enabled:
        return ("off" if not status.problem else f"off: {sanitize(status.problem)}"), "yellow"
    if status.operation is not None:
        return operation_words(status.operation), "bold"
    last = status.last_snapshot
    words = "no snapshot yet" if last is None else (
        f"{ago(last.time, now)} · {counted(last.files, 'file')} · {size(last.size)}"
    )
    style = "yellow" if last is None else ""
    bucket = status.bucket
    if bucket is not None:
        if bucket.reachable is False:
            since = f" since {clock_time(bucket.unreachable_since)}" if bucket.unreachable_since else ""
            words += f" · bucket unreachable{since}"
            style = "bold red"
        elif status.pending:
            words += f" · {status.pending:,} pending"
    if status.last_error and style != "bold red":
        words += f" · error: {sanitize(status.last_error)}"
        style = "red"
    return words, style


def diff_lines(text: str, limit: int = 5000) -> Text:
    """A unified diff coloured as people expect: removed red, added green, hunks cyan; at most
    ``limit`` lines (the rest counted)."""
    out = Text()
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if number == limit:
            out.append(f"… {len(lines) - limit:,} more lines of diff not shown\n", style="dim")
            break
        clean = sanitize(line)
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        out.append(clean + "\n", style=style)
    out.rstrip()
    return out
