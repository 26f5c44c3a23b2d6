"""Where the Memory screen's data comes from, and the messages its workers post.

No widgets here. Each function asks the backend for one thing through the sandbox's memory
client (:class:`moltconsole.memory_client.MemoryClient`) and answers with one message that
holds either the answer or why not, in words for the user: the screen's workers post them,
and its handlers (which own the widgets) apply them. Every message that belongs to a view
(now or one snapshot) carries it, so an answer for the view shown before a switch is dropped.
"""

from __future__ import annotations

from typing import Protocol

from textual.message import Message

from moltconsole.client import BackendError, BackendUnreachable
from moltconsole.screens.memory_bucket import BucketPlace
from moltconsole.widgets.memory_kinds import OpenedFile, kind_by_name, kind_of
from moltconsole.widgets.memory_tree import Folder, first_to_read, index_files
from moltconsole_shared.wire.memory import (
    BackupResult,
    FileDiff,
    FileHistory,
    FileList,
    ImportResult,
    MemoryStatus,
    MoltworkerListing,
    RestoreResult,
    SearchResult,
    SnapshotList,
)

SEARCH_LIMIT = 200


class MemorySource(Protocol):
    """What the Memory screen needs of :class:`moltconsole.memory_client.MemoryClient`."""

    async def status(self) -> MemoryStatus: ...

    async def snapshots(self) -> SnapshotList: ...

    async def files(self, snapshot: str | None = None) -> FileList: ...

    async def read(self, path: str, snapshot: str | None = None) -> bytes: ...

    async def write(self, path: str, content: bytes) -> BackupResult: ...

    async def log(self, path: str) -> FileHistory: ...

    async def diff(self, path: str, old: str, new: str = "now") -> FileDiff: ...

    async def search(self, query: str, snapshot: str | None = None, limit: int = 200) -> SearchResult: ...

    async def backup(self) -> BackupResult: ...

    async def restore(self, snapshot: str, path: str | None = None) -> RestoreResult: ...

    async def moltworker(self, location: str, endpoint_url: str | None = None) -> MoltworkerListing: ...

    async def moltworker_file(self, location: str, key: str, endpoint_url: str | None = None) -> bytes: ...

    async def import_moltworker(
        self, location: str, endpoint_url: str | None = None, restore: bool = True,
    ) -> ImportResult: ...


class StatusPolled(Message):
    """The memory's sync status (``status``), or why it could not be had (``problem``;
    ``unreachable`` when no backend answered at all)."""

    def __init__(
        self, status: MemoryStatus | None, problem: str | None = None, unreachable: bool = False,
    ) -> None:
        super().__init__()
        self.status = status
        self.problem = problem
        self.unreachable = unreachable

    def can_replace(self, message: Message) -> bool:
        """An older status still queued is worth nothing once a newer one is there."""
        return isinstance(message, StatusPolled)


class FilesListed(Message):
    """The files of a view (``snapshot`` None: now), or why not; ``top`` the listing indexed
    into folders, and ``first`` the first file to read, already read (one frame shows both)."""

    def __init__(
        self, snapshot: str | None, listing: FileList | None, problem: str | None = None, *,
        top: Folder | None = None, first: FileOpened | None = None, bucket: MoltworkerListing | None = None,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.listing = listing
        self.problem = problem
        self.top = top
        self.first = first
        self.bucket = bucket  # a Moltworker bucket's listing (its keys, layout, what it leaves out)


class FileOpened(Message):
    """A file read to be shown (``opened``), or why it could not be (``problem``)."""

    def __init__(
        self, path: str, snapshot: str | None, opened: OpenedFile | None, problem: str | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.snapshot = snapshot
        self.opened = opened
        self.problem = problem


class SearchDone(Message):
    """The lines that hold ``query`` in a view, or why the search failed."""

    def __init__(self, query: str, snapshot: str | None, result: SearchResult | None,
                 problem: str | None = None) -> None:
        super().__init__()
        self.query = query
        self.snapshot = snapshot
        self.result = result
        self.problem = problem


class OperationEnded(Message):
    """A backup, restore or write ended: what to tell the user, and whether the files changed
    (the listing is loaded again)."""

    def __init__(self, what: str, message: str, ok: bool, changed: bool) -> None:
        super().__init__()
        self.what = what
        self.message = message
        self.ok = ok
        self.changed = changed


async def poll_status(source: MemorySource) -> StatusPolled:
    """The sync status now."""
    try:
        return StatusPolled(await source.status())
    except BackendUnreachable as exc:
        return StatusPolled(None, str(exc), unreachable=True)
    except BackendError as exc:
        return StatusPolled(None, f"the memory status could not be read: {exc}")


async def list_files(source: MemorySource, snapshot: str | None, read_first: bool = False) -> FilesListed:
    """Every file of the state directory now, or of ``snapshot``, indexed into folders; with
    ``read_first`` the first file the screen opens is read too, so the frame that shows the
    tree shows it (no second trip to the backend after the tree is drawn)."""
    try:
        listing = await source.files(snapshot)
    except BackendError as exc:
        return FilesListed(snapshot, None, str(exc))
    top = index_files(listing.files)
    first = first_to_read(top) if read_first else None
    opened = await open_file(source, first.path, first.size, snapshot) if first is not None else None
    return FilesListed(snapshot, listing, top=top, first=opened)


async def open_file(
    source: MemorySource, path: str, size: int, snapshot: str | None, line: int | None = None,
) -> FileOpened:
    """A file to show; a database or a file too large to show is not read (its name and size
    say what it is)."""
    known = kind_by_name(path, size)
    if known is not None:
        return FileOpened(path, snapshot, OpenedFile(path, snapshot, size, known, line=line))
    try:
        content = await source.read(path, snapshot)
    except BackendError as exc:
        return FileOpened(path, snapshot, None, str(exc))
    return FileOpened(path, snapshot, OpenedFile(path, snapshot, len(content), kind_of(path, content),
                                                 content, line))


async def list_bucket(source: MemorySource, place: BucketPlace, read_first: bool = False) -> FilesListed:
    """A Moltworker bucket's files where they would go in the state directory (the view is
    ``place.view``), indexed into folders, and with ``read_first`` its first file read."""
    try:
        found = await source.moltworker(place.location, place.endpoint_url)
    except BackendError as exc:
        return FilesListed(place.view, None, str(exc))
    listing = FileList(snapshot=None, files=sorted(found.files, key=lambda f: f.path))
    top = index_files(listing.files)
    first = first_to_read(top) if read_first else None
    opened = None
    if first is not None:
        opened = await open_bucket_file(source, place, first.path, first.size, found.keys.get(first.path, ""))
    return FilesListed(place.view, listing, top=top, first=opened, bucket=found)


async def open_bucket_file(
    source: MemorySource, place: BucketPlace, path: str, size: int, key: str,
) -> FileOpened:
    """One file of a Moltworker bucket to show, read by its key; a database or a file too large
    to show is not read."""
    view = place.view
    known = kind_by_name(path, size)
    if known is not None:
        return FileOpened(path, view, OpenedFile(path, view, size, known))
    if not key:
        return FileOpened(path, view, None, f"{path} has no key in the bucket's listing; open the bucket "
                                            "again (m)")
    try:
        content = await source.moltworker_file(place.location, key, place.endpoint_url)
    except BackendError as exc:
        return FileOpened(path, view, None, str(exc))
    return FileOpened(path, view, OpenedFile(path, view, len(content), kind_of(path, content), content))


async def search(source: MemorySource, query: str, snapshot: str | None) -> SearchDone:
    """The lines holding ``query`` (case-insensitive) in the view's text files."""
    try:
        return SearchDone(query, snapshot, await source.search(query, snapshot, SEARCH_LIMIT))
    except BackendError as exc:
        return SearchDone(query, snapshot, None, str(exc))
