"""What the Memory screen and the Dashboard say of a sandbox's memory, pinned: the sync line
(last snapshot, pending, the bucket and since when it is unreachable, errors, progress), the
Dashboard's short line, sizes, coloured diffs, search matches cut to a width, kinds of file,
and the folder index the tree is built from."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from textual.app import App, ComposeResult
from textual.widgets import ProgressBar

from moltconsole.screens.memory import match_prompt
from moltconsole.widgets.memory_format import dashboard_words, diff_lines, size, sync_line
from moltconsole.widgets.memory_kinds import FileKind, binary_name, kind_by_name, kind_of, pretty_json
from moltconsole.widgets.memory_sync import SyncStatus
from moltconsole.widgets.memory_tree import fitted_label, index_files
from moltconsole_shared.wire.memory import (
    BucketStatus,
    FileInfo,
    MemoryStatus,
    Operation,
    SearchMatch,
    SnapshotSummary,
)

NOW = 1_780_000_000.0
LAST = SnapshotSummary(id="20260528T195640000Z-d4e5f6", time=NOW - 150, reason="change", files=1234,
                       size=5 * 2**20 + 2**19)


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_sizes_read_as_people_read_them() -> None:
    assert [size(n) for n in (0, 1023, 1024, 1536, 5 * 2**20, 3 * 2**40, 5 * 2**50)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 TiB", "5120.0 TiB",
    ]


def test_the_sync_line_says_the_last_snapshot_what_waits_and_where_the_bucket_stands() -> None:
    ok = MemoryStatus(enabled=True, watching=True, last_snapshot=LAST, pending=0,
                      bucket=BucketStatus(where="r2://agent-memory", reachable=True))
    assert sync_line(ok, NOW).plain == (
        "last snapshot 2m30s ago · 1,234 files · 5.5 MiB · none pending · bucket r2://agent-memory reachable"
    )
    down = MemoryStatus(
        enabled=True, watching=True, last_snapshot=LAST, pending=3, encrypted=True,
        bucket=BucketStatus(where="r2://agent-memory", reachable=False, unreachable_since=NOW - 600,
                            last_error="could not connect to the endpoint"),
    )
    line = sync_line(down, NOW)
    assert line.plain == (
        "last snapshot 2m30s ago · 1,234 files · 5.5 MiB · 3 pending · bucket r2://agent-memory "
        "unreachable since 20:16:40 · encrypted · error: could not connect to the endpoint"
    )
    assert any(span.style == "bold red" for span in line.spans)
    local = MemoryStatus(enabled=True, watching=False)
    assert sync_line(local, NOW).plain == (
        "no snapshot yet (b takes one) · local only · not watching (no state directory yet)"
    )


def test_the_sync_line_says_what_runs_and_how_far_it_is() -> None:
    restore = Operation(kind="restore", started=NOW - 5, done=3 * 2**20, total=12 * 2**20)
    running = MemoryStatus(enabled=True, watching=True, last_snapshot=LAST, operation=restore)
    assert sync_line(running, NOW).plain.endswith("restore 25% (3.0 MiB of 12.0 MiB)")
    starting = MemoryStatus(enabled=True, operation=Operation(kind="backup", started=NOW))
    assert "backup running…" in sync_line(starting, NOW).plain


def test_memory_off_is_short_on_top_and_its_reason_is_kept_for_the_screen() -> None:
    assert sync_line(MemoryStatus(enabled=False), NOW).plain == "memory off"
    broken = MemoryStatus(enabled=False, problem="the repository could not be opened: wrong passphrase")
    assert sync_line(broken, NOW).plain == "memory could not start"
    assert dashboard_words(broken, NOW)[0] == "off: the repository could not be opened: wrong passphrase"


def test_the_dashboard_line_is_short_and_red_while_the_bucket_is_down() -> None:
    assert dashboard_words(None, NOW) == ("-", "")
    assert dashboard_words(MemoryStatus(enabled=False), NOW) == ("off", "yellow")
    assert dashboard_words(MemoryStatus(enabled=True), NOW) == ("no snapshot yet", "yellow")
    fine = MemoryStatus(enabled=True, last_snapshot=LAST, pending=2,
                        bucket=BucketStatus(where="s3://b", reachable=True))
    assert dashboard_words(fine, NOW) == ("2m30s ago · 1,234 files · 5.5 MiB · 2 pending", "")
    down = MemoryStatus(enabled=True, last_snapshot=LAST, last_error="disk full",
                        bucket=BucketStatus(where="s3://b", reachable=False, unreachable_since=NOW - 60))
    assert dashboard_words(down, NOW) == (
        "2m30s ago · 1,234 files · 5.5 MiB · bucket unreachable since 20:25:40", "bold red",
    )


def test_what_came_from_the_sandbox_is_made_inert() -> None:
    hostile = MemoryStatus(enabled=True, last_error="bad\x1b]52;c;aGk=\x07thing",
                           last_snapshot=SnapshotSummary(id="x", time=NOW, reason="r", files=1, size=1))
    assert "\x1b" not in sync_line(hostile, NOW).plain and "\x07" not in dashboard_words(hostile, NOW)[0]
    assert "\x1b" not in diff_lines("+\x1b[2Jgone\n").plain


def test_a_diff_is_coloured_by_line_and_a_long_one_cut_with_a_count() -> None:
    diff = diff_lines("--- a (then)\n+++ a (now)\n@@ -1 +1 @@\n-old\n+new\n same\n")
    styles = {span.style for span in diff.spans}
    assert {"bold", "cyan", "red", "green"} <= styles
    long = diff_lines("".join(f"+{n}\n" for n in range(30)), limit=10)
    assert long.plain.splitlines()[-1] == "… 20 more lines of diff not shown"


def test_a_search_match_fits_its_width_with_the_match_in_view() -> None:
    match = SearchMatch(path="workspace/memory/2026-05-27/very/deep/notes.md", line=12,
                        text="a long line of notes that mentions tea only at its very end, tea")
    prompt = match_prompt(match, "tea", 30)
    where, line = prompt.plain.split("\n")
    assert where == "…/very/deep/notes.md:12" and len(where) <= 30
    assert len(line) <= 30 and "tea" in line and line.startswith("…")


def test_kinds_are_known_by_name_or_by_their_first_bytes() -> None:
    assert kind_by_name("state/openclaw.sqlite", 10) is FileKind.SQLITE
    assert kind_by_name("workspace/big.md", 9 * 2**20) is FileKind.LARGE
    assert kind_by_name("workspace/MEMORY.md", 100) is None
    assert kind_of("x.md", b"# hi") is FileKind.MARKDOWN
    assert kind_of("x.json", b"{}") is FileKind.JSON
    assert kind_of("openclaw.json5", b"{a: 1}") is FileKind.JSON5
    assert kind_of("notes.txt", "caf\u00e9".encode()) is FileKind.TEXT
    assert kind_of("db", b"SQLite format 3\x00rest") is FileKind.SQLITE
    assert kind_of("x.md", b"\xff\xfe\x00\x01") is FileKind.BINARY
    assert binary_name(b"\x89PNG\r\n\x1a\nrest") == "PNG image" and binary_name(b"??") == "binary data"
    assert pretty_json('{"a": [1]}') == '{\n  "a": [\n    1\n  ]\n}' and pretty_json("{a: 1}") is None


def test_the_index_counts_each_folder_and_puts_workspace_markdown_first() -> None:
    top = index_files([
        FileInfo(path="openclaw.json", size=10), FileInfo(path="credentials/oauth.json", size=5),
        FileInfo(path="workspace/skills/tea/SKILL.md", size=7), FileInfo(path="workspace/MEMORY.md", size=3),
        FileInfo(path="workspace/avatar.png", size=100), FileInfo(path="notes/README.md", size=1),
    ])
    assert (top.count, top.size) == (6, 126)
    workspace = top.folders["workspace"]
    assert (workspace.count, workspace.size, workspace.rank) == (3, 110, 0)
    assert workspace.folders["skills"].folders["tea"].path == "workspace/skills/tea"
    names = [getattr(e, "path", "") for e in top.children()]
    assert names == ["workspace", "notes", "openclaw.json", "credentials"]
    assert [getattr(e, "path", "") for e in workspace.children()] == [
        "workspace/MEMORY.md", "workspace/skills", "workspace/avatar.png",
    ]


class SyncHost(App[None]):
    def compose(self) -> ComposeResult:
        yield SyncStatus()


async def test_a_progress_bar_comes_while_an_operation_runs_and_goes_after() -> None:
    async with SyncHost().run_test(size=(80, 6)) as pilot:
        sync = pilot.app.query_one(SyncStatus)
        assert not sync.query(ProgressBar)  # made when first needed
        running = Operation(kind="restore", started=NOW, done=25, total=100)
        sync.show(MemoryStatus(enabled=True, operation=running), NOW)
        await pilot.pause()
        bar = sync.query_one(ProgressBar)
        assert bar.display and (bar.total, bar.progress) == (100, 25)
        sync.show(MemoryStatus(enabled=True), NOW)
        await pilot.pause()
        assert not bar.display
        sync.show(None, NOW, "memory: the backend is unreachable since 20:26:40")
        assert "unreachable since" in str(sync.query_one("#memory-sync-line").render())


def test_a_long_name_loses_its_middle_so_its_end_and_size_stay_in_view() -> None:
    info = FileInfo(path="config-journal-fingerprint.key", size=32)
    assert fitted_label(info, 28).plain == "config-journal-…nt.key  32 B"
    assert fitted_label(info, 100).plain == "config-journal-fingerprint.key  32 B"
    folder = index_files([FileInfo(path="a-very-long-folder-name-indeed/x.md", size=2048)]).children()[0]
    assert fitted_label(folder, 24).plain == "a-very-…ed/ (1)  2.0 KiB"
