"""The Memory screen: the agent's files as they are now or were at any snapshot, their versions
and diffs, search, restore, back up, and edit; the sync status always in view.

Data flow: the screen's workers ask the backend through the sandbox's memory client
(:mod:`moltconsole.screens.memory_feeds` does the asking and answers with one message each)
and never touch widgets; the handlers here apply what arrives. A timer polls the sync status
every :data:`STATUS_POLL_S` while the screen is shown (paused while another screen is), one
fetch at a time; its answers also tell when the backend went away and came back, and then the
listing that failed is asked for again. The files now, and the first file to read, are asked for
as the screen is made (before it is composed), and its body stays hidden until they are there
(:data:`FIRST_WAIT_S` at most): the first frame draws the tree and the file at once, instead of
"asking" and then everything again.

Left: the files of the view (now, or the snapshot chosen with ``s``) as a tree built a folder
at a time (:mod:`moltconsole.widgets.memory_tree`), workspace markdown first; ``/`` searches
the view's text and lists the matching lines in its place (escape goes back to the tree).
Right: the file under the cursor, shown by its kind (:mod:`moltconsole.widgets.memory_view`;
a SQLite database goes to :mod:`moltconsole.widgets.memory_database`). ``t`` opens the file's
timeline (:mod:`moltconsole.screens.memory_timeline`). ``R`` restores the file or folder under
the cursor, ``W`` the whole sandbox, each from the snapshot shown (or one chosen then) and
after a confirmation that says what is kept. ``b`` takes a snapshot now. ``e`` edits a
workspace file in ``$EDITOR``: the console steps aside for the editor, then the edited file goes
back through the backend (``PUT memory/file``, which takes a snapshot of what was there first),
and only if nobody changed it meanwhile (else the edit is kept aside and the user told where).

``m`` opens a Moltworker bucket (:mod:`moltconsole.screens.memory_bucket` asks for its
location) in place of the sandbox's files: the same tree and file view over the files it would
become, read-only, its files read by their keys in the bucket; the left side says it is the
bucket, the keys that act on the sandbox's files leave, ``esc`` goes back, and ``i`` imports it
as the sandbox's newest snapshot after a confirmation (its progress shows in the sync status).

Memory off (or failed to start) puts the reason, and how to turn it on, in place of it all.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, OptionList, Static, Tree
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from moltconsole.client import BackendError
from moltconsole.screens.confirm import ConfirmScreen
from moltconsole.screens.memory_bucket import BucketOpenScreen, BucketPlace
from moltconsole.screens.memory_feeds import (
    FileOpened,
    FilesListed,
    MemorySource,
    OperationEnded,
    SearchDone,
    StatusPolled,
    list_bucket,
    list_files,
    open_bucket_file,
    open_file,
    poll_status,
    search,
)
from moltconsole.screens.memory_snapshots import NOW, Choice, SnapshotPickerScreen
from moltconsole.screens.memory_timeline import TimelineScreen
from moltconsole.widgets.cells import ELLIPSIS, fit, shorten_path
from moltconsole.widgets.fitting_footer import SCREEN_SWITCHES, FittingFooter
from moltconsole.widgets.memory_format import MEMORY_OFF, clock_time, counted, day_time, size
from moltconsole.widgets.memory_kinds import FileKind, as_text
from moltconsole.widgets.memory_sync import SyncStatus
from moltconsole.widgets.memory_tree import Entry, Folder, MemoryTree, index_files
from moltconsole.widgets.memory_view import RENDERED, FileView
from moltconsole.widgets.status_bar import StatusBar
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory import (
    FileInfo,
    FileList,
    FileVersion,
    MemoryStatus,
    MoltworkerListing,
    SearchMatch,
    SnapshotSummary,
)

STATUS_POLL_S = 1.0
# The keys that act on the sandbox's own files (now or a snapshot), not offered on a bucket.
SANDBOX_ONLY = frozenset({"search", "timeline", "restore", "restore_all", "edit"})
BUCKET_HINT = "Import the bucket (i) to keep it as a snapshot."  # under a file not shown
# The files and the file are drawn for the first time when they are there, not first as "asking"
# and then again (two layouts of the whole body); only a backend slower than this shows "asking".
FIRST_WAIT_S = 0.25
NOTICE_OK_S, NOTICE_ERROR_S = 6.0, 15.0  # how long the toasts of an operation that ended stay
EDITABLE = "workspace/"  # only the workspace's files are edited by hand
EditorRunner = Callable[[list[str]], int]


class EditReady(Message):
    """The file was read: the editor may open on ``content``."""

    def __init__(self, path: str, content: bytes) -> None:
        super().__init__()
        self.path = path
        self.content = content


@dataclass(frozen=True, slots=True)
class Point:
    """A snapshot to restore from, as the confirmation names it."""

    snapshot: str
    when: float
    reason: str

    def words(self) -> str:
        return f"snapshot {day_time(self.when)} ({sanitize(self.reason)}, {sanitize(self.snapshot)})"


class MemoryScreen(Screen[None]):
    """The sandbox's memory: files now or then, search, timeline, restore, back up, edit."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    AUTO_FOCUS = "#memory-tree"  # once it is listed; never the search box, which would take the keys

    BINDINGS = [
        Binding("slash", "search", "Search", id="memory.search"),
        Binding("t", "timeline", "Timeline", id="memory.timeline"),
        Binding("s", "pick_snapshot", "Snapshot", id="memory.snapshot"),
        Binding("r", "toggle_raw", "Raw", id="memory.raw"),
        Binding("b", "backup", "Back up", id="memory.backup"),
        Binding("R", "restore", "Restore", id="memory.restore"),
        Binding("m", "open_bucket", "Moltworker", id="memory.moltworker"),
        Binding("i", "import_bucket", "Import", id="memory.import"),
        Binding("e", "edit", "Edit", id="memory.edit", show=False),
        Binding("W", "restore_all", "Restore sandbox", id="memory.restore_all", show=False),
        Binding("escape", "back", "Back", id="memory.back", show=False),
    ]

    def __init__(
        self, source: MemorySource, *, clock: Callable[[], float] = time.time, sandbox: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.source = source
        self.clock = clock
        self.sandbox = sandbox
        self.snapshot: SnapshotSummary | None = None  # the view: None is now
        self.bucket: BucketPlace | None = None  # a Moltworker bucket shown instead (read-only)
        self.bucket_listing: MoltworkerListing | None = None
        self._last_bucket: BucketPlace | None = None  # offered again when m is pressed
        self.status: MemoryStatus | None = None
        self.status_problem: str | None = None
        self.unreachable_since: float | None = None
        self.listing: FileList | None = None
        self._listed_view: str | None = None  # the view (snapshot id, None: now) last listed
        self.top: Folder | None = None
        self.list_problem: str | None = None
        self.current: FileInfo | None = None  # the file shown on the right
        self.raw = False
        self.query_text = ""
        self._matches: list[SearchMatch] = []
        self._match_shown: int | None = None  # the match whose file is shown
        self._focus_when_shown = False  # enter on a match whose file had not come yet
        self._placing = False  # a file opened at a line waits for the line to be in the middle
        self.run_editor: EditorRunner = self._run_editor_in_terminal
        # Events tests (and the bench) await: each is set once what it names is on screen.
        self.listed = asyncio.Event()
        self.file_shown = asyncio.Event()
        self.status_seen = asyncio.Event()
        self.status_lost = asyncio.Event()  # set while the status cannot be had
        self.searched = asyncio.Event()
        self.operation_done = asyncio.Event()
        self._poll_timer: Timer | None = None
        self._polling = False
        self._preread: FileOpened | None = None  # the first file, read with the listing
        self._body_waits = True  # the body is hidden until the first listing (FIRST_WAIT_S at most)
        # The files now are asked for at once, before the screen is even composed: the answer
        # comes while the screen lays itself out, and its first frame can show them.
        self._early: asyncio.Task[FilesListed] | None = None
        try:
            self._early = asyncio.get_running_loop().create_task(list_files(source, None, read_first=True))
        except RuntimeError:  # made outside a running app (nothing to ask yet)
            self._early = None

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield SyncStatus(id="memory-sync")
        with Horizontal(id="memory-body"):
            with Vertical(id="memory-left"):
                yield Input(placeholder="search the files' text, enter", id="memory-search-input",
                            compact=True)
                yield Static(id="memory-left-note")
                yield MemoryTree(id="memory-tree")
                yield OptionList(id="memory-results", markup=False)
            yield FileView(self.source, id="memory-file")
        with VerticalScroll(id="memory-off"):
            yield Static(id="memory-off-text")
        yield FittingFooter(compact=True, drop_first=SCREEN_SWITCHES, keep=("app.help",))

    @property
    def file_tree(self) -> MemoryTree:
        return self.query_one(MemoryTree)

    @property
    def view(self) -> FileView:
        return self.query_one(FileView)

    def on_mount(self) -> None:
        self.query_one("#memory-search-input").display = False
        self.query_one("#memory-results").display = False
        self.query_one("#memory-off").display = False
        self.query_one("#memory-tree").display = False
        self._left_note(Text("asking the backend for the files…", style="dim"))
        self._left_title()
        self.view.note(Text("The file under the cursor shows here.", style="dim"))
        self.query_one("#memory-body").display = False
        self.set_timer(FIRST_WAIT_S, self._body_shown)
        self._poll_timer = self.set_interval(STATUS_POLL_S, self._poll, pause=True)
        self._poll()
        self._load()

    def on_screen_resume(self, _: events.ScreenResume) -> None:
        """Poll the sync status while the screen is shown."""
        if self._poll_timer is not None:
            self._poll_timer.resume()
            self._poll()

    def on_unmount(self) -> None:
        if self._early is not None:
            self._early.cancel()

    def on_screen_suspend(self, _: events.ScreenSuspend) -> None:
        if self._poll_timer is not None:
            self._poll_timer.pause()

    def _left_note(self, text: Text | None) -> None:
        note = self.query_one("#memory-left-note", Static)
        note.update(text or "")
        note.display = text is not None

    def _view(self) -> str | None:
        """The view in the messages: None for now, a snapshot's id, or a bucket's place."""
        if self.bucket is not None:
            return self.bucket.view
        return self.snapshot.id if self.snapshot is not None else None

    def _where(self) -> str:
        """The view in a few words: now, the snapshot's time (its date when not today), or the
        Moltworker bucket."""
        if self.bucket is not None:
            return f"bucket {sanitize(self.bucket.location)}"
        if self.snapshot is None:
            return "now"
        when = self.snapshot.time
        same_day = time.localtime(when)[:3] == time.localtime(self.clock())[:3]
        return f"snapshot {time.strftime('%H:%M' if same_day else '%Y-%m-%d %H:%M', time.localtime(when))}"

    def _left_title(self) -> None:
        left = self.query_one("#memory-left")
        view = self._where()
        if self.listing is not None:
            counted_files = f" · {counted(len(self.listing.files), 'file')}"
            room = left.size.width - 4  # the corners and the spaces around the title
            if room <= 0 or len(view) + len(counted_files) <= room:  # else the view alone, whole
                view += counted_files
        left.border_title = view
        left.border_subtitle = "i import · esc back" if self.bucket is not None else "s snapshot · / search"

    # --- the sync status ---------------------------------------------------------------------
    def _poll(self) -> None:
        """The timer's signal: fetch the status unless a fetch is still on its way."""
        if not self._polling:
            self._polling = True
            self._fetch_status()

    @work(group="memory-status", exit_on_error=False)
    async def _fetch_status(self) -> None:
        try:
            self.post_message(await poll_status(self.source))
        finally:
            self._polling = False

    @on(StatusPolled)
    def _status_polled(self, event: StatusPolled) -> None:
        sync = self.query_one(SyncStatus)
        now = self.clock()
        if event.status is None:
            if event.unreachable:
                if self.unreachable_since is None:
                    self.unreachable_since = now
                sync.show(None, now, f"memory: the backend is unreachable since "
                                     f"{clock_time(self.unreachable_since)}; asking again every second")
            else:
                sync.show(None, now, event.problem)
            self.status_problem = event.problem
            self.status_seen.clear()
            self.status_lost.set()
            return
        self.status_lost.clear()
        back = self.status_problem is not None
        self.status_problem = None
        self.unreachable_since = None
        was_off = self.status is not None and not self.status.enabled
        before = self.status.last_snapshot if self.status is not None else None
        after = event.status.last_snapshot
        self.status = event.status
        sync.show(event.status, now)
        self._show_off(not event.status.enabled)
        if was_off != (not event.status.enabled):
            self.refresh_bindings()  # the keys go while memory is off, and come back with it
        if event.status.enabled and (was_off or (back and self.listing is None)):
            self._load()  # memory came on, or the backend is back after the listing failed
        elif (self.snapshot is None and self.bucket is None and self.listing is not None
              and before is not None and after is not None and after.id != before.id):
            self._load()  # the state directory changed (a snapshot says so): now is another now
        self.status_seen.set()

    def _body_shown(self) -> None:
        """The first listing is there, or long in coming: the body shows (unless memory is off)."""
        self._body_waits = False
        self.query_one("#memory-body").display = not (self.status is not None and not self.status.enabled)

    def _show_off(self, off: bool) -> None:
        if not self._body_waits or off:
            self.query_one("#memory-body").display = not off
        self.query_one("#memory-off").display = off
        if not off:
            return
        status = self.status
        who = f"sandbox {sanitize(self.sandbox)}" if self.sandbox else "this sandbox"
        why = sanitize(status.problem) if status is not None and status.problem else MEMORY_OFF
        self.query_one("#memory-off").border_title = f"memory · {who}"
        self.query_one("#memory-off-text", Static).update(Text.assemble(
            (f"Memory is off for {who}.\n\n", "bold"), why, "\n\n",
            ("When it is on, this screen shows the agent's files as they are and as they were "
             "at each snapshot, their versions and diffs, and restores any of them.", "dim"),
        ))

    # --- the files ---------------------------------------------------------------------------
    def _load(self) -> None:
        self.listed.clear()
        if self.bucket is not None:
            self._list_bucket(self.bucket, self.current is None)
            return
        self._list(self.snapshot.id if self.snapshot is not None else None, self.current is None)

    @work(exclusive=True, group="memory-files", exit_on_error=False)
    async def _list_bucket(self, place: BucketPlace, read_first: bool) -> None:
        early, self._early = self._early, None
        if early is not None:
            early.cancel()
        self.post_message(await list_bucket(self.source, place, read_first))

    @work(exclusive=True, group="memory-files", exit_on_error=False)
    async def _list(self, snapshot: str | None, read_first: bool) -> None:
        early, self._early = self._early, None
        if early is not None and snapshot is None:
            self.post_message(await early)  # asked for when the screen was made
            return
        if early is not None:
            early.cancel()
        self.post_message(await list_files(self.source, snapshot, read_first))

    @on(FilesListed)
    def _files_listed(self, event: FilesListed) -> None:
        if event.snapshot != self._view():
            return  # the view changed meanwhile; its listing is on its way
        tree = self.file_tree
        if self._body_waits:
            self._body_shown()
        if event.listing is None:
            self.listing = None
            self.list_problem = event.problem
            tree.display = False
            self._left_note(Text(sanitize(event.problem or ""), style="bold red"))
            self.view.note(Text("The files could not be listed: the reason is on the left.", style="dim"))
            self._left_title()
            self.listed.set()
            return
        self.list_problem = None
        self.listing = event.listing
        self.bucket_listing = event.bucket
        self._preread = event.first
        with self.app.batch_update():
            self.top = event.top if event.top is not None else index_files(event.listing.files)
            self._left_title()
            if not event.listing.files:
                tree.display = False
                self._left_note(Text(
                    "This bucket holds no file that would be kept." if self.bucket is not None else
                    "No files yet: the state directory is empty (the sandbox has not run yet)."
                    if self.snapshot is None else "This snapshot holds no files."))
                self.view.note(Text(""))
            else:
                self._left_note(self._bucket_note())
                tree.display = not self.query_one("#memory-results").display
                tree.show_files(self.top, tree.opened_folders())
                if self.current is not None and not tree.reveal(self.current.path):
                    self.current = None
                    self.view.note(Text("The file shown before is not in this view.", style="dim"))
                if self.current is None:
                    self._open_first()
                chosen = tree.chosen
                if isinstance(chosen, FileInfo):
                    # Read again when it changed (a restore, an edit) or the view did; not when
                    # the listing came again for a change elsewhere (the place read stays).
                    if chosen != self.current or event.snapshot != self._listed_view:
                        self._open(chosen)
                    self.current = chosen
                self._listed_view = event.snapshot
                if tree.display and not self.query_one("#memory-search-input").display:
                    tree.focus()
        self.call_after_refresh(self.listed.set)

    def _bucket_note(self) -> Text | None:
        """Above a bucket's tree: whose files these are (not the sandbox's), and what to do."""
        listing = self.bucket_listing
        if self.bucket is None or listing is None:
            return None
        left_out = f", {counted(len(listing.skipped), 'key')} left out" if listing.skipped else ""
        return Text.assemble(
            ("read-only", "bold"), f": a Moltworker bucket ({sanitize(listing.layout)}{left_out}), ",
            "not the sandbox. ", ("i", "bold"), " imports it", style="dim",
        )

    def _open_first(self) -> None:
        """Put the cursor on the first file to read (the workspace's markdown) and show it."""
        tree = self.file_tree
        for line in range(min(tree.last_line + 1, 200)):
            node = tree.get_node_at_line(line)
            if node is not None and isinstance(node.data, FileInfo):
                tree.move_cursor(node)
                return

    def _lookup(self, path: str) -> FileInfo | None:
        folder = self.top
        if folder is None:
            return None
        parts = path.split("/")
        for part in parts[:-1]:
            found = folder.folders.get(part)
            if found is None:
                return None
            folder = found
        return next((f for f in folder.files if f.path == path), None)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[Entry]) -> None:
        if event.node is not self.file_tree.cursor_node:
            return  # the cursor moved on (or the tree was built again) since
        data = event.node.data
        self._match_shown = None
        if isinstance(data, FileInfo):
            if self.current is None or self.current.path != data.path:
                self._open(data)
        elif isinstance(data, Folder):
            self.current = None
            self.view.note(Text.assemble(
                (sanitize(data.path) + "/", "bold"),
                f"\n{counted(data.count, 'file')} · {size(data.size)}\n\n",
                ("enter opens it · R restores it from a snapshot", "dim"),
            ), sanitize(data.path) + "/")

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[Entry]) -> None:
        if isinstance(event.node.data, FileInfo):
            self._focus_view()

    def _focus_view(self) -> None:
        view = self.view
        target = {"text": "#memory-text", "markdown": "#memory-markdown", "pretty": "#memory-pretty",
                  "note": "#memory-note"}.get(view.mode)
        if target is not None and view.query(target):
            view.query_one(target).focus()

    def _open(self, info: FileInfo, line: int | None = None) -> None:
        self.current = info
        self.file_shown.clear()
        self._placing = False
        view = self._view()
        preread, self._preread = self._preread, None
        if preread is not None and (preread.path, preread.snapshot, line) == (info.path, view, None):
            self.workers.cancel_group(self, "memory-file")  # a read of another file still on its way
            self.post_message(preread)  # read with the listing
            return
        if self.bucket is not None:
            key = self.bucket_listing.keys.get(info.path, "") if self.bucket_listing is not None else ""
            self._read_bucket(self.bucket, info.path, info.size, key)
            return
        self._read(info.path, info.size, view, line)

    @work(exclusive=True, group="memory-file", exit_on_error=False)
    async def _read_bucket(self, place: BucketPlace, path: str, size_: int, key: str) -> None:
        self.post_message(await open_bucket_file(self.source, place, path, size_, key))

    @work(exclusive=True, group="memory-file", exit_on_error=False)
    async def _read(self, path: str, size_: int, snapshot: str | None, line: int | None) -> None:
        self.post_message(await open_file(self.source, path, size_, snapshot, line))

    @on(FileOpened)
    async def _file_opened(self, event: FileOpened) -> None:
        if self.current is None or event.path != self.current.path or event.snapshot != self._view():
            return  # another file (or view) was chosen meanwhile
        if event.opened is None:
            self.view.note(Text(sanitize(event.problem or ""), style="bold red"), sanitize(event.path))
        elif self.bucket is not None and event.opened.kind is FileKind.SQLITE:
            # Its tables are read by the backend from the sandbox or a snapshot, not a bucket.
            self.view.note(Text.assemble(
                ("SQLite database", "bold"), f", {size(event.opened.size)}\n\n",
                "The bucket view does not open databases: import the bucket (i), then open it in "
                "the snapshot it becomes (s).",
            ), sanitize(event.path), f"{size(event.opened.size)} · {self._where()}")
        else:
            if event.opened.line is not None:
                self.raw = True  # a line is found in the text
            hint = BUCKET_HINT if self.bucket is not None else None
            if await self.view.show(event.opened, self.raw, self._where(), hint):
                self._placing = True
                return  # shown once its line is in the middle (FileView.Placed)
        self._shown_now()

    @on(FileView.Placed)
    def _placed(self, event: FileView.Placed) -> None:
        event.stop()
        if self._placing:
            self._shown_now()

    def _shown_now(self) -> None:
        self._placing = False
        if self._focus_when_shown:
            self._focus_when_shown = False
            self._focus_view()
        self.file_shown.set()

    # --- search ------------------------------------------------------------------------------
    def action_search(self) -> None:
        """Search the view's files for a text (case-insensitive)."""
        if not self._memory_on():
            return
        box = self.query_one("#memory-search-input", Input)
        box.display = True
        box.value = self.query_text
        box.focus()

    @on(Input.Submitted, "#memory-search-input")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        query = event.value.strip()
        box = self.query_one("#memory-search-input", Input)
        if not query:
            box.display = False
            self.file_tree.focus()
            return
        self.query_text = query
        self.searched.clear()
        results = self.query_one("#memory-results", OptionList)
        results.clear_options()
        results.display = True
        self.file_tree.display = False
        self._left_note(Text(f"searching for {query!r}…", style="dim"))
        results.focus()
        self._search(query, self.snapshot.id if self.snapshot is not None else None)

    @work(exclusive=True, group="memory-search", exit_on_error=False)
    async def _search(self, query: str, snapshot: str | None) -> None:
        self.post_message(await search(self.source, query, snapshot))

    @on(SearchDone)
    def _search_done(self, event: SearchDone) -> None:
        shown = self.snapshot.id if self.snapshot is not None else None
        if event.query != self.query_text or event.snapshot != shown:
            return
        results = self.query_one("#memory-results", OptionList)
        results.clear_options()
        self._match_shown = None
        self.query_one("#memory-search-input").display = False
        left = self.query_one("#memory-left")
        if event.result is None:
            self._left_note(Text(sanitize(event.problem or ""), style="bold red"))
            self.searched.set()
            return
        result = event.result
        more = " (the first ones; say more to narrow it)" if result.truncated else ""
        left.border_title = f"{sanitize(event.query)} · {counted(len(result.matches), 'match', 'matches')}"
        left.border_subtitle = "enter opens · esc back"
        self._left_note(Text(
            f"{counted(len(result.matches), 'line')} in {counted(result.files_searched, 'file')} "
            f"searched{more}" if result.matches else
            f"No line holds {event.query!r} ({counted(result.files_searched, 'text file')} searched).",
            style="dim"))
        width = max(12, results.content_size.width - 1)
        options = [Option(match_prompt(match, event.query, width), id=str(number))
                   for number, match in enumerate(result.matches)]
        results.add_options(options)
        self._matches = result.matches
        if options:
            results.highlighted = 0
            self._open_match(0, focus=False)  # now, not when the highlight's message comes
        results.focus()
        self.searched.set()

    @on(OptionList.OptionHighlighted, "#memory-results")
    def _match_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._open_match(event.option_index, focus=False)

    @on(OptionList.OptionSelected, "#memory-results")
    def _match_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._open_match(event.option_index, focus=True)

    def _open_match(self, index: int, *, focus: bool) -> None:
        matches = self._matches
        if not 0 <= index < len(matches):
            return
        match = matches[index]
        if self._match_shown != index:
            self._match_shown = index
            info = self._lookup(match.path) or FileInfo(path=match.path, size=0)
            self._open(info, match.line)
        if focus:
            if self.file_shown.is_set():
                self._focus_view()
            else:
                self._focus_when_shown = True  # the file is on its way

    def action_back(self) -> None:
        """Close the search box; from the file, back to the list; from the results, back to the tree."""
        box = self.query_one("#memory-search-input", Input)
        results = self.query_one("#memory-results", OptionList)
        if box.display:
            box.display = False
            (results if results.display else self.file_tree).focus()
        elif self.view.has_focus_within:
            (results if results.display else self.file_tree).focus()
        elif results.display:
            results.display = False
            listed = self.listing is not None and bool(self.listing.files)
            self.file_tree.display = listed
            self._left_note(None if listed else Text(sanitize(self.list_problem or ""), style="bold red"))
            self._left_title()
            if self.current is not None:
                self.file_tree.reveal(self.current.path)
            self.file_tree.focus()
        elif self.bucket is not None:
            self._show_view(fresh=self._leave_bucket())

    # --- the view: now or a snapshot --------------------------------------------------------
    def action_pick_snapshot(self) -> None:
        """Show the files as they were at a snapshot, or as they are now."""
        if not self._memory_on():
            return

        def chosen(choice: Choice) -> None:
            if choice is None:
                return
            self.snapshot = None if choice == NOW else choice if isinstance(choice, SnapshotSummary) else None
            self._show_view(fresh=self._leave_bucket())

        self.app.clear_notifications()
        self.app.push_screen(SnapshotPickerScreen(
            self.source, "Show the files as they are, or as they were at a snapshot",
            current=self.snapshot.id if self.snapshot is not None else None,
        ), chosen)

    def _show_view(self, fresh: bool = False) -> None:
        """Show the view chosen (now, a snapshot or a bucket): asked for again. The file shown
        stays shown if the new view has it, unless ``fresh`` (to or from a bucket, whose files
        are another's)."""
        self._close_search()
        self.listing = None
        self.bucket_listing = None
        self._preread = None
        self.file_shown.clear()
        self.file_tree.clear()
        if fresh:
            self.current = None
            self.file_tree.display = False
            self.view.note(Text("The file under the cursor shows here.", style="dim"))
        self._left_note(Text("asking the backend for the files…" if self.bucket is None else
                             "asking the backend to list the bucket…", style="dim"))
        self._left_title()
        self.refresh_bindings()
        self._load()

    def _leave_bucket(self) -> bool:
        """Back from a bucket to the sandbox's files (True if a bucket was shown)."""
        was = self.bucket is not None
        self.bucket = None
        self.remove_class("-bucket")
        return was

    # --- a Moltworker bucket ------------------------------------------------------------------
    def action_open_bucket(self) -> None:
        """Browse a Moltworker bucket, read-only, with the same tree and file view."""
        if not self._memory_on():
            return

        def opened(place: BucketPlace | None) -> None:
            if place is None:
                return
            self._last_bucket = place
            self.bucket = place
            self.add_class("-bucket")
            self._show_view(fresh=True)

        self.app.clear_notifications()
        self.app.push_screen(BucketOpenScreen(self._last_bucket), opened)

    def action_import_bucket(self) -> None:
        """Import the bucket shown as the sandbox's newest snapshot, after a confirmation."""
        place = self.bucket
        if place is None:
            self.notify("i imports a Moltworker bucket: open one with m first.", markup=False)
            return
        who = f"sandbox {sanitize(self.sandbox)}" if self.sandbox else "this sandbox"
        listing = self.bucket_listing
        what = (f" ({counted(len(listing.files), 'file')}, {size(sum(f.size for f in listing.files))})"
                if listing is not None else "")
        question = (
            f"Import the Moltworker bucket {sanitize(place.location)}{what} into {who}?\n\n"
            "It becomes the sandbox's newest snapshot. Kept: the sandbox's current state stays in its "
            "own snapshots, and its state directory is not touched unless it is empty (then the "
            "import is put in place at once); to put it in place later, restore that snapshot (W). "
            "The bucket is only read."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.operation_done.clear()
                self._import(place)
                self._poll()

        self.app.clear_notifications()
        self.app.push_screen(ConfirmScreen(question, "import"), answered)

    @work(group="memory-operation", exit_on_error=False)
    async def _import(self, place: BucketPlace) -> None:
        try:
            result = await self.source.import_moltworker(place.location, place.endpoint_url, True)
        except BackendError as exc:
            self.post_message(OperationEnded(
                "import", f"importing {place.location} failed: {exc}", False, False))
            return
        snap = result.snapshot
        left_out = f" {counted(len(result.skipped), 'key')} left out." if result.skipped else ""
        self.post_message(OperationEnded(
            "import", f"{place.location} imported as snapshot {snap.id}: {counted(snap.files, 'file')}, "
            f"{size(snap.size)}.{left_out} {result.message}".rstrip(), True, result.restored,
        ))

    def _close_search(self) -> None:
        self.query_one("#memory-search-input").display = False
        self.query_one("#memory-results").display = False

    async def action_toggle_raw(self) -> None:
        """Markdown and JSON: switch between rendered and the file's text."""
        opened = self.view.opened
        if opened is None or opened.kind not in RENDERED:
            self.notify("r switches markdown and JSON between rendered and their text; this file "
                        "has one way to be shown.", markup=False)
            return
        self.raw = not self.raw
        await self.view.show(replace(opened, line=None), self.raw, self._where())  # from the top

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While memory is off the screen has nothing to act on: its keys leave the footer. A
        bucket is only read and imported: the keys that act on the sandbox's files leave."""
        off = self.status is not None and not self.status.enabled
        if off:
            return action == "back"
        if self.bucket is not None:
            return action not in SANDBOX_ONLY
        return action != "import_bucket"

    def _memory_on(self) -> bool:
        if self.status is not None and not self.status.enabled:
            self.notify("memory is off for this sandbox; the screen says how to turn it on.",
                        severity="warning", markup=False)
            return False
        return True

    def _chosen_path(self) -> tuple[str, bool] | None:
        """(path, whether it is a folder) of what R and t act on: the file shown when the right
        side or the results have the focus, else what the tree's cursor is on."""
        if not self.file_tree.has_focus and self.current is not None:
            return self.current.path, False
        chosen = self.file_tree.chosen
        if isinstance(chosen, Folder):
            return chosen.path, True
        if isinstance(chosen, FileInfo):
            return chosen.path, False
        return None

    # --- timeline -----------------------------------------------------------------------------
    def action_timeline(self) -> None:
        """The versions of the file under the cursor, and diffs between them."""
        if not self._memory_on():
            return
        chosen = self._chosen_path()
        if chosen is None or chosen[1]:
            self.notify("t shows a file's versions: put the cursor on a file.", markup=False)
            return
        path = chosen[0]

        def closed(version: FileVersion | None) -> None:
            if version is not None:
                self._confirm_restore(path, False, Point(version.snapshot, version.time, version.reason))

        self.app.push_screen(TimelineScreen(self.source, path), closed)

    # --- restore -------------------------------------------------------------------------------
    def action_restore(self) -> None:
        """Restore the file or folder under the cursor as it was at a snapshot."""
        if not self._memory_on():
            return
        chosen = self._chosen_path()
        if chosen is None:
            self.notify("R restores a file or a folder: put the cursor on one.", markup=False)
            return
        path, folder = chosen
        if self.snapshot is not None:
            snap = self.snapshot
            self._confirm_restore(path, folder, Point(snap.id, snap.time, snap.reason))
            return

        def picked(choice: Choice) -> None:
            if isinstance(choice, SnapshotSummary):
                self._confirm_restore(path, folder, Point(choice.id, choice.time, choice.reason))

        what = f"the folder {path}/" if folder else path
        self.app.clear_notifications()
        self.app.push_screen(SnapshotPickerScreen(
            self.source, f"Restore {sanitize(what)} as it was at which snapshot?", offer_now=False,
        ), picked)

    def _confirm_restore(self, path: str, folder: bool, point: Point) -> None:
        if folder:
            question = (
                f"Restore the folder {sanitize(path)}/ as it was at {point.words()}?\n\n"
                "Every file it held then is put back; files added to it since stay as they are. "
                "Kept: what is there now goes into a safety snapshot first, so this can be undone. "
                "The sandbox keeps running."
            )
        else:
            question = (
                f"Restore {sanitize(path)} as it was at {point.words()}?\n\n"
                "Kept: the file as it is now goes into a safety snapshot first, so this can be "
                "undone. No other file is touched; the sandbox keeps running."
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self.operation_done.clear()
                self._restore(point.snapshot, path)
                self._poll()

        self.app.clear_notifications()
        self.app.push_screen(ConfirmScreen(question, "restore"), answered)

    def action_restore_all(self) -> None:
        """Restore the whole sandbox to a snapshot (it is stopped and started again)."""
        if not self._memory_on():
            return
        if self.snapshot is not None:
            snap = self.snapshot
            self._confirm_restore_all(Point(snap.id, snap.time, snap.reason))
            return

        def picked(choice: Choice) -> None:
            if isinstance(choice, SnapshotSummary):
                self._confirm_restore_all(Point(choice.id, choice.time, choice.reason))

        self.app.clear_notifications()
        self.app.push_screen(SnapshotPickerScreen(
            self.source, "Restore the whole sandbox to which snapshot?", offer_now=False,
        ), picked)

    def _confirm_restore_all(self, point: Point) -> None:
        who = f"sandbox {sanitize(self.sandbox)}" if self.sandbox else "the sandbox"
        question = (
            f"Restore the whole of {who} to {point.words()}?\n\n"
            "It is stopped, its state directory becomes exactly that snapshot, and it is started "
            "again. Kept: a safety snapshot of everything there now is taken first; files that "
            "are not in the chosen snapshot go from the state directory but stay in the safety "
            "snapshot, so this can be undone."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.operation_done.clear()
                self._restore(point.snapshot, None)
                self._poll()

        self.app.clear_notifications()
        self.app.push_screen(ConfirmScreen(question, "restore all"), answered)

    @work(group="memory-operation", exit_on_error=False)
    async def _restore(self, snapshot: str, path: str | None) -> None:
        what = path if path is not None else "the whole sandbox"
        try:
            result = await self.source.restore(snapshot, path)
        except BackendError as exc:
            self.post_message(OperationEnded("restore", f"restoring {what} failed: {exc}", False, False))
            return
        safety = f" What was there before is in safety snapshot {result.safety.id}." if result.safety else ""
        restarted = " The sandbox was stopped for it and started again." if result.restarted else ""
        self.post_message(OperationEnded(
            "restore", f"restored {what} from snapshot {snapshot}: {counted(result.files, 'file')}, "
            f"{size(result.bytes)}.{safety}{restarted}", True, True,
        ))

    # --- back up -------------------------------------------------------------------------------
    def action_backup(self) -> None:
        """Take a snapshot now."""
        if not self._memory_on():
            return
        self.operation_done.clear()
        self._backup()
        self._poll()

    @work(group="memory-operation", exit_on_error=False)
    async def _backup(self) -> None:
        try:
            result = await self.source.backup()
        except BackendError as exc:
            self.post_message(OperationEnded("backup", f"the snapshot failed: {exc}", False, False))
            return
        snap = result.snapshot
        self.post_message(OperationEnded(
            "backup", f"snapshot {snap.id} taken: {counted(snap.files, 'file')}, {size(snap.size)}; "
            f"{counted(result.read_files, 'file')} read (the others were unchanged), "
            f"{size(result.stored_bytes)} stored, in {result.seconds:.1f} s.", True, False,
        ))

    @on(OperationEnded)
    def _operation_ended(self, event: OperationEnded) -> None:
        # Short when it went well: a toast hides part of a small terminal (the app's measure).
        self.notify(sanitize(event.message), title=event.what, markup=False,
                    timeout=NOTICE_OK_S if event.ok else NOTICE_ERROR_S,
                    severity="information" if event.ok else "error")
        if event.changed and self.snapshot is None and self.bucket is None:
            self.file_shown.clear()
            self._load()
        self._poll()
        self.operation_done.set()

    # --- edit ----------------------------------------------------------------------------------
    def action_edit(self) -> None:
        """Edit the workspace file under the cursor in $EDITOR (a snapshot of it is taken first)."""
        if not self._memory_on():
            return
        chosen = self._chosen_path()
        if self.snapshot is not None:
            self.notify("Files are edited as they are now: press s and choose now first.", markup=False)
            return
        if chosen is None or chosen[1] or not chosen[0].startswith(EDITABLE):
            self.notify("e edits a file of the workspace (workspace/...): put the cursor on one.",
                        markup=False)
            return
        if not editor_command():
            self.notify("Set $EDITOR (or $VISUAL) in the shell that runs moltconsole, e.g. "
                        "export EDITOR=nano, then open the console again.", severity="warning",
                        markup=False)
            return
        self._prepare_edit(chosen[0])

    @work(exclusive=True, group="memory-edit", exit_on_error=False)
    async def _prepare_edit(self, path: str) -> None:
        """The file as it is now, for the editor."""
        try:
            content = await self.source.read(path)
        except BackendError as exc:
            self.post_message(OperationEnded("edit", f"{path} was not opened for editing: {exc}",
                                             False, False))
            return
        self.post_message(EditReady(path, content))

    @on(EditReady)
    def _edit_ready(self, event: EditReady) -> None:
        if as_text(event.content) is None:
            self.notify(f"{event.path} is not text; it is not edited here.", severity="warning", markup=False)
            return
        command = editor_command()
        folder = Path(tempfile.mkdtemp(prefix="moltconsole-edit-"))  # mode 0700: the file may hold secrets
        target = folder / Path(event.path).name
        target.write_bytes(event.content)
        try:
            code = self.run_editor([*command, str(target)])
        except (OSError, SuspendNotSupported) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            self.notify(f"the editor could not be run ({exc}); nothing was changed.", severity="error",
                        markup=False)
            return
        edited = target.read_bytes()
        if code != 0:
            shutil.rmtree(folder, ignore_errors=True)
            self.notify(f"the editor exited with code {code}; nothing was written.", severity="warning",
                        markup=False)
            return
        if edited == event.content:
            shutil.rmtree(folder, ignore_errors=True)
            self.notify(f"{event.path} unchanged; nothing was written.", markup=False)
            return
        self.operation_done.clear()
        self._write(event.path, event.content, edited, folder)

    def _run_editor_in_terminal(self, command: list[str]) -> int:
        """Run the editor in the terminal: the console steps aside until it exits."""
        with self.app.suspend():
            return subprocess.call(command)

    @work(group="memory-operation", exit_on_error=False)
    async def _write(self, path: str, before: bytes, edited: bytes, folder: Path) -> None:
        """Write the edited file back, unless it changed meanwhile (then the edit is kept aside)."""
        try:
            if await self.source.read(path) != before:
                self.post_message(OperationEnded(
                    "edit", f"{path} changed while it was being edited (the agent wrote it), so your "
                    f"version was not written; it is kept in {folder}.", False, False))
                return
            result = await self.source.write(path, edited)
        except BackendError as exc:
            self.post_message(OperationEnded(
                "edit", f"{path} was not written: {exc}. Your version is kept in {folder}.", False, False))
            return
        shutil.rmtree(folder, ignore_errors=True)
        self.post_message(OperationEnded(
            "edit", f"{path} written; as it was before is in snapshot {result.snapshot.id}.", True, True))

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place an unexpected worker failure reaches the user."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.notify(f"memory: {event.worker.error}", severity="error", markup=False, timeout=10)


def match_prompt(match: SearchMatch, query: str, width: int) -> Text:
    """A search match in two lines of ``width`` cells: where (the path shortened from the
    left), then the line around the match, the match highlighted."""
    suffix = f":{match.line}"
    where = shorten_path(sanitize(match.path), width - len(suffix)) + suffix
    text = sanitize(match.text.strip())
    at = text.casefold().find(query.casefold())
    if at + len(query) > width - 1 and at > 0:
        start = max(0, min(at - width // 3, len(text) - width + 1))  # a full line, the match in it
        text = ELLIPSIS + text[start + 1:]
    line = fit(text, width)
    line.highlight_words([sanitize(query)], style="bold reverse", case_sensitive=False)
    return Text.assemble((where, "bold"), "\n", line)


def editor_command() -> list[str]:
    """The user's editor as a command ($VISUAL, then $EDITOR), or [] when neither is set."""
    for name in ("VISUAL", "EDITOR"):
        value = os.environ.get(name, "").strip()
        if value:
            return shlex.split(value)
    return []
