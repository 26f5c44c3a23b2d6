"""The database and conversation views against the backend's real memory API.

The API runs on a unix socket from a thread (``database_world``) over a state directory that
holds the real OpenClaw fixture (its agent database: sessions, transcripts with a tool call
that succeeds and one that fails, a deleted session), a database with hostile values, and a
transcript of thousands of turns; the views talk to it through the real client, hosted by the
smallest app that mounts one of them. Local time is UTC, so times read the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, Footer, Static

from moltconsole.client import BackendClient
from moltconsole.memory_client import MemoryClient
from moltconsole.resources import styles_dir
from moltconsole.widgets.conversation_view import ConversationView
from moltconsole.widgets.database_feeds import RowsFetched
from moltconsole.widgets.database_view import DatabaseView, RowsTable
from moltconsole.widgets.turn_log import TurnLog
from tests.console.database_world import AGENT_DB, ESCAPE, LONG_SESSION, MARKUP, NOTES_DB, World, served
from tests.unit.test_cost_routes import local_time_utc

GUARD = 10.0  # a hang fails the test after this long
SIZES = [(80, 24), (160, 48)]


class Host(App[None]):
    """The smallest app that mounts a view, as the Memory screen does: the base stylesheet and
    the views' own, a client of the served backend, a footer with the keys. It records the
    messages the views post and the escapes that reach it."""

    CSS_PATH = [str(styles_dir() / "app.tcss"), str(styles_dir() / "database.tcss")]
    BINDINGS = [Binding("escape", "escaped", "Host's escape", id="test.host.escape")]

    def __init__(self, socket: Path, make: Callable[[MemoryClient], Widget]) -> None:
        super().__init__()
        self.client = BackendClient(socket)
        self.make = make
        self.posted: list[Any] = []
        self.escapes = 0

    def compose(self) -> ComposeResult:
        yield self.make(self.client.memory)
        yield Footer()

    def action_escaped(self) -> None:
        self.escapes += 1

    def on_database_view_navigated(self, message: DatabaseView.Navigated) -> None:
        self.posted.append(message)

    def on_conversation_view_session_opened(self, message: ConversationView.SessionOpened) -> None:
        self.posted.append(message)

    async def on_unmount(self) -> None:
        await self.client.aclose()


def database(world: World, path: str, snapshot: str | None = None) -> Host:
    return Host(world.socket, lambda client: DatabaseView(client, path, snapshot))


def conversations(world: World) -> Host:
    return Host(world.socket, lambda client: ConversationView(client))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with local_time_utc(), served(long_session=True) as served_world:
        yield served_world


async def settled(pilot: Pilot[None]) -> None:
    """Until every request of the views is answered and the answer applied."""
    await pilot.pause()
    for _ in range(20):
        await asyncio.wait_for(pilot.app.workers.wait_for_complete(), GUARD)
        await pilot.pause()
        if not any(worker.is_running for worker in pilot.app.workers):
            return
    raise AssertionError("the views kept asking")


async def press(pilot: Pilot[None], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settled(pilot)


def view_of(pilot: Pilot[None]) -> DatabaseView:
    return pilot.app.query_one(DatabaseView)


def header(pilot: Pilot[None]) -> str:
    return str(pilot.app.query_one("#database-header", Static).render())


def shown_body(pilot: Pilot[None]) -> str | None:
    return pilot.app.query_one("#database-body", ContentSwitcher).current


async def open_table(pilot: Pilot[None], name: str) -> DataTable[Any]:
    """Enter on table ``name`` of the list; the page of rows once it is in."""
    await settled(pilot)
    view = view_of(pilot)
    tables = pilot.app.query_one("#database-tables", DataTable)
    tables.move_cursor(row=[t.name for t in view.tables].index(name))
    await press(pilot, "enter")
    return pilot.app.query_one(RowsTable)


def log_text(pilot: Pilot[None]) -> list[str]:
    """Every line of the open conversation, as plain text (drawn the way the screen draws it)."""
    log = pilot.app.query_one(TurnLog)
    lines = []
    for index in range(len(log._items)):
        lines += [strip.text.rstrip() for strip in log._lines_of(index)]
    return lines


async def open_session(pilot: Pilot[None], title: str) -> ConversationView:
    await settled(pilot)
    view = pilot.app.query_one(ConversationView)
    table = pilot.app.query_one("#conversation-sessions", DataTable)
    table.move_cursor(row=[s.title or s.first_line for s in view.sessions].index(title))
    table.focus()
    await press(pilot, "enter")
    return view


@contextlib.contextmanager
def scratch_database(world: World, name: str) -> Iterator[str]:
    """A copy of the notes database of this test's own (it changes it behind the view's back)."""
    path = f"workspace/{name}.sqlite"
    shutil.copyfile(world.state / NOTES_DB, world.state / path)
    try:
        yield path
    finally:
        (world.state / path).unlink(missing_ok=True)


# --- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", [NOTES_DB, AGENT_DB], ids=["notes", "agent"])
def test_table_list_snapshot(world: World, snap_compare: Any, size: tuple[int, int], path: str) -> None:
    # Row counts, a table that could not be counted and why, views and virtual tables; for
    # OpenClaw's agent database the hint that c shows its sessions.
    assert snap_compare(database(world, path), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES)
def test_rows_snapshot(world: World, snap_compare: Any, size: tuple[int, int]) -> None:
    # Markup and an escape sequence shown as written, long text cut with its length, a blob
    # as its size and first bytes, a secret hidden; the header with the page.
    async def run_before(pilot: Pilot[None]) -> None:
        await open_table(pilot, "notes")

    assert snap_compare(database(world, NOTES_DB), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_sessions_snapshot(world: World, snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settled(pilot)
        await press(pilot, "c")

    assert snap_compare(database(world, AGENT_DB), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_conversation_snapshot(world: World, snap_compare: Any, size: tuple[int, int]) -> None:
    # The first session of the fixture: a reply with cache reads and writes, then the write
    # tool called, its result, and the answer after it.
    async def run_before(pilot: Pilot[None]) -> None:
        await open_session(pilot, "Say hello")
        if size[1] < 30:  # the tool call into view on a small terminal
            await press(pilot, *["down"] * 4)

    assert snap_compare(conversations(world), terminal_size=size, run_before=run_before)


# --- the database view ----------------------------------------------------------------------------
async def test_tables_are_listed_with_counts_and_the_note_of_one_not_counted(world: World) -> None:
    app = database(world, NOTES_DB)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        view = view_of(pilot)
        by_name = {t.name: t for t in view.tables}
        assert by_name["notes"].rows == 250 and by_name["embeddings"].rows is None
        tables = app.query_one("#database-tables", DataTable)
        cells = [[str(cell) for cell in tables.get_row_at(row)] for row in range(tables.row_count)]
        vec0 = "needs the SQLite module vec0, which this backend does not have"
        assert ["embeddings (virtual)", "?", vec0] in cells
        assert ["notes", "250", ""] in cells and ["recent (view)", "5", ""] in cells
        assert header(pilot) == "notes.sqlite · 2 tables, 1 view, 1 virtual table\nenter: a table's rows"
        assert "c: OpenClaw's sessions" not in header(pilot)

        # A table the backend cannot read: its words, in place.
        tables.move_cursor(row=[t.name for t in view.tables].index("embeddings"))
        await press(pilot, "enter")
        assert shown_body(pilot) == "database-problem"
        problem = str(app.query_one("#database-problem-text", Static).render())
        assert problem.startswith("Could not read the rows of embeddings\n\ntable 'embeddings' of ")
        assert f"{vec0}; its rows cannot be shown" in problem


async def test_rows_come_a_page_at_a_time_and_escape_goes_back(world: World) -> None:
    app = database(world, NOTES_DB)
    async with app.run_test(size=(120, 30)) as pilot:
        rows = await open_table(pilot, "notes")
        assert shown_body(pilot) == "database-rows" and rows.has_focus
        assert header(pilot) == "notes · 250 rows · page 1/3 · rows 1 to 100"
        names = [str(c.label) for c in rows.columns.values()]
        assert names == ["id", "title", "body", "score", "data", "api_token"]
        assert rows.row_count == 100 and str(rows.get_row_at(0)[0]) == "1"

        await press(pilot, "pagedown")
        assert header(pilot) == "notes · 250 rows · page 2/3 · rows 101 to 200"
        assert str(rows.get_row_at(0)[0]) == "101"
        await press(pilot, "pagedown")
        assert header(pilot) == "notes · 250 rows · page 3/3 · rows 201 to 250" and rows.row_count == 50
        await press(pilot, "pagedown")  # past the last page: nothing asked, nothing changes
        assert header(pilot).startswith("notes · 250 rows · page 3/3")
        await press(pilot, "pageup", "pageup")
        assert header(pilot).startswith("notes · 250 rows · page 1/3")
        await press(pilot, "pageup")
        assert header(pilot).startswith("notes · 250 rows · page 1/3")

        await press(pilot, "escape")
        assert shown_body(pilot) == "database-tables" and app.escapes == 0
        tables = app.query_one("#database-tables", DataTable)
        assert tables.has_focus and str(tables.get_row_at(tables.cursor_row)[0]) == "notes"
        # From the tables, Escape is the host's (the Memory screen's "back").
        await press(pilot, "escape")
        assert app.escapes == 1
        sections = [(m.section, m.table) for m in app.posted]
        assert sections == [("tables", None), ("rows", "notes"), ("rows", "notes"), ("rows", "notes"),
                            ("rows", "notes"), ("rows", "notes"), ("tables", None)]


async def test_values_from_the_agent_are_shown_as_written_never_as_markup(world: World) -> None:
    app = database(world, NOTES_DB)
    async with app.run_test(size=(200, 30)) as pilot:
        rows = await open_table(pilot, "notes")
        first = rows.get_row_at(0)
        assert all(isinstance(cell, Text) for cell in first)
        title, body, score, blob, secret = first[1:]
        assert title.plain == MARKUP[:31] + "…" and not title.spans  # no style came from the markup
        assert body.plain == "␛[31mred␛[0m␊second line"
        assert score.plain == "0.5"
        assert blob.plain == "blob 40 B 0001020304050607…"
        assert secret.plain == "hidden (length 28)"
        long = rows.get_row_at(1)[2]
        assert long.plain.endswith("… (1,000 chars)") and long.cell_len <= 40
        assert rows.get_row_at(1)[3].plain == "NULL"
        # What the terminal gets: the escape character itself never.
        assert "\x1b" not in "".join(str(strip.text) for strip in rows.render_lines(rows.region.reset_offset))
        assert ESCAPE not in "".join(str(strip.text) for strip in rows.render_lines(rows.region.reset_offset))


async def test_an_answer_for_a_table_left_is_dropped(world: World) -> None:
    app = database(world, NOTES_DB)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        view = view_of(pilot)
        view._load_rows("notes", 0)
        assert app.query_one(RowsTable).loading  # the loading indicator while the rows are asked for
        view.action_back()  # back before the rows came
        await settled(pilot)
        assert shown_body(pilot) == "database-tables" and view.section == "tables"
        rows = app.query_one(RowsTable)
        assert rows.row_count == 0 and not rows.loading
        # An answer to the request left behind, however late, changes nothing.
        page = await app.client.memory.rows(NOTES_DB, "notes")
        view.post_message(RowsFetched(view._request - 1, page))
        await settled(pilot)
        assert shown_body(pilot) == "database-tables" and rows.row_count == 0


async def test_problems_are_said_in_place(world: World) -> None:
    with scratch_database(world, "scratch") as path:
        app = database(world, path)
        async with app.run_test(size=(120, 30)) as pilot:
            await settled(pilot)
            with contextlib.closing(sqlite3.connect(world.state / path)) as db:
                db.execute("DROP TABLE empty")
                db.commit()
            await open_table(pilot, "empty")
            assert shown_body(pilot) == "database-problem"
            problem = str(app.query_one("#database-problem-text", Static).render())
            assert problem.startswith("Could not read the rows of empty\n\ntable 'empty' does not exist in ")
            assert "refresh the list of its tables" in problem and "Escape goes back" in problem
            await press(pilot, "escape")
            assert shown_body(pilot) == "database-tables" and app.escapes == 0

    (world.state / "workspace" / "notes.md").write_text("# not a database\n")
    app = database(world, "workspace/notes.md")
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        problem = str(app.query_one("#database-problem-text", Static).render())
        assert problem.startswith("Could not read its tables\n\n") and "not a SQLite database" in problem
        await press(pilot, "escape")
        assert app.escapes == 1  # nothing to go back to here: the host's

    gone = Host(world.root / "no-backend.sock", lambda client: DatabaseView(client, NOTES_DB))
    async with gone.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        problem = str(gone.query_one("#database-problem-text", Static).render())
        assert problem.startswith("Could not read its tables\n\n") and "backend" in problem


async def test_a_snapshot_is_read_as_it_was(world: World) -> None:
    with scratch_database(world, "then") as path:
        snap = await _backup(world)
        with contextlib.closing(sqlite3.connect(world.state / path)) as db:
            db.execute("DELETE FROM notes WHERE id > 10")
            db.commit()
        app = database(world, path, snap)
        async with app.run_test(size=(120, 30)) as pilot:
            await open_table(pilot, "notes")
            assert header(pilot).startswith("notes · 250 rows · page 1/3")
            await press(pilot, "escape")
            assert f"snapshot {snap}" in header(pilot)

    app = Host(world.socket, lambda client: ConversationView(client, snap))
    async with app.run_test(size=(160, 40)) as pilot:
        view = await open_session(pilot, "Say hello")
        assert str(app.query_one("#conversation-list-header", Static).render()).endswith(f"· snapshot {snap}")
        assert view.conversation is not None and len(view.conversation.turns) > 5


async def _backup(world: World) -> str:
    async with BackendClient(world.socket) as client:
        return (await client.memory.backup()).snapshot.id


async def test_c_shows_openclaw_sessions_only_for_an_agent_database(world: World) -> None:
    app = database(world, NOTES_DB)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        await press(pilot, "c")
        assert view_of(pilot).section == "tables" and not app.query(ConversationView)

    app = database(world, AGENT_DB)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        assert "c: OpenClaw's sessions as conversations" in header(pilot)
        assert "c" in {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        await press(pilot, "c")
        assert shown_body(pilot) == "database-conversations"
        assert app.query_one("#conversation-sessions", DataTable).has_focus
        await press(pilot, "escape")  # from the sessions: back to the tables
        assert shown_body(pilot) == "database-tables" and app.escapes == 0


# --- the conversation view ------------------------------------------------------------------------
async def test_sessions_are_listed_newest_first_with_time_turns_cost_and_agent(world: World) -> None:
    app = conversations(world)
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        table = app.query_one("#conversation-sessions", DataTable)
        rows = [[str(cell) for cell in table.get_row_at(row)] for row in range(table.row_count)]
        assert rows == [
            ["A throwaway question (deleted)", "2026-12-03 13:37", "2", "$0.0040", "main"],
            ["shopping", "2026-12-03 13:37", "2", "$0.0049", "main"],
            ["Say hello", "2026-12-03 13:37", "14", "$0.0478", "main"],
            ["question 0", "2026-12-01 09:49", "3,000", "$0.1500", "main"],
        ]
        assert str(app.query_one("#conversation-list-header", Static).render()) == (
            "OpenClaw's sessions · 4 sessions · now"
        )

    gone = Host(world.root / "no-backend.sock", lambda client: ConversationView(client))
    async with gone.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        said = str(gone.query_one("#conversation-list-header", Static).render())
        assert said.startswith("Could not list OpenClaw's sessions: ") and "backend" in said


async def test_a_conversation_reads_as_turns_with_tools_usage_and_cost(world: World) -> None:
    app = conversations(world)
    async with app.run_test(size=(160, 40)) as pilot:
        view = await open_session(pilot, "Say hello")
        assert app.query_one(TurnLog).has_focus
        assert [m.session.title or m.session.first_line for m in app.posted] == ["Say hello"]
        lines = log_text(pilot)
        assert lines[:5] == [
            "system      model: molt/claude-sonnet-4-6",
            "system      thinking level: high",
            "",
            "user 13:37  Say hello",
            "assistant   Hello! I am the fake model.",
        ]
        # prompt is every token sent: 1,200 uncached + 800 read from the cache + 300 written to it.
        assert "            $0.0062  prompt 2,300  cache read 800  cache write 300  output 85" in lines
        call = 'tool call   write {"path": "memory/colour.md", "content": "The user\'s favourite'
        assert any(line.startswith(call) for line in lines)
        assert "tool result write: Successfully wrote 37 bytes to memory/colour.md" in lines
        failed = [line for line in lines if line.startswith("tool error")]
        assert failed == ['tool error  read: {']  # the failed read's result, in red
        assert first_style(pilot, "tool error") == Style.parse("bold red")
        assert first_style(pilot, "user") == Style.parse("bold cyan")
        assert first_style(pilot, "assistant") == Style.parse("bold green")
        head = str(app.query_one("#conversation-header", Static).render())
        assert head == "Say hello · main · 14 turns · $0.0478"
        assert all("customType" not in line for line in lines)  # OpenClaw's bookkeeping hidden

        # i: OpenClaw's internal entries too, read again.
        await press(pilot, "i")
        assert view.internal and any("customType" in line for line in log_text(pilot))
        head = str(app.query_one("#conversation-header", Static).render())
        assert head == "Say hello · main · 14 turns · $0.0478 · internal entries shown"
        await press(pilot, "i")
        assert all("customType" not in line for line in log_text(pilot))

        # Escape: back to the list; from the list, the host's.
        await press(pilot, "escape")
        sessions = app.query_one("#conversation-sessions", DataTable)
        assert sessions.has_focus and app.escapes == 0
        await press(pilot, "escape")
        assert app.escapes == 1

        # Back to the list before the conversation read again came: the focus stays on the list.
        await press(pilot, "enter")
        assert app.query_one(TurnLog).has_focus
        view.action_toggle_internal()
        view.action_back()
        await settled(pilot)
        assert sessions.has_focus and view.internal and any("customType" in line for line in log_text(pilot))


def first_style(pilot: Pilot[None], prefix: str) -> Style | None:
    """The style of the role label of the first line that starts with ``prefix``."""
    log = pilot.app.query_one(TurnLog)
    for index in range(len(log._items)):
        for strip in log._lines_of(index):
            if strip.text.startswith(prefix):
                return next(iter(strip)).style
    raise AssertionError(f"no line starts with {prefix!r}")


async def test_escape_codes_in_a_reply_are_shown_not_run(world: World) -> None:
    app = conversations(world)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_session(pilot, "A throwaway question")
        lines = log_text(pilot)
        assert "assistant   Shopping list noted: ␛[31mred␛[0m apples." in lines
        assert all("\x1b" not in line for line in lines)


async def test_a_long_conversation_is_one_widget_that_draws_only_what_is_in_view(world: World) -> None:
    app = conversations(world)
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(pilot)
        widgets = len(app.query("*"))
        view = await open_session(pilot, "question 0")
        assert view.conversation is not None and len(view.conversation.turns) == 2000
        assert view.conversation.omitted == LONG_TURNS_LEFT_OUT
        log = app.query_one(TurnLog)
        assert len(app.query("*")) == widgets  # no widget per turn
        assert log.line_count > 5000 and log.rendered_items < 20
        head = str(app.query_one("#conversation-header", Static).render())
        assert head.endswith("the oldest 1,000 turns are left out")
        log.scroll_end(animate=False, immediate=True)
        await settled(pilot)
        screen_text = [str(strip.text) for strip in log.render_lines(log.region.reset_offset)]
        assert any("answer 2999: words" in line for line in screen_text)
        assert log.rendered_items < 40
        # A new width counts the lines again, keeps the turn at the top in view, and draws
        # again only what is in view.
        log.scroll_to(y=log._starts[1000], animate=False, immediate=True)
        lines_before = log.line_count
        await pilot.resize_terminal(140, 30)
        await settled(pilot)
        assert log.line_count > lines_before and log.rendered_items < 20
        assert log.scroll_offset.y == log._starts[1000]
        await press(pilot, "home")  # the keys scroll it
        assert log.scroll_offset.y == 0


LONG_TURNS_LEFT_OUT = 1000  # the transcript's 3,000 turns less the 2,000 the backend sends


async def test_a_session_that_cannot_be_read_says_why_in_place(world: World) -> None:
    app = conversations(world)
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        view = app.query_one(ConversationView)
        long_file = world.state / "agents" / "main" / "sessions" / f"{LONG_SESSION}.jsonl"
        kept = long_file.read_bytes()
        long_file.unlink()
        try:
            await open_session(pilot, "question 0")
        finally:
            long_file.write_bytes(kept)
        assert view.conversation is None
        said = "\n".join(log_text(pilot))
        assert said.startswith("Could not read this session: ") and LONG_SESSION in said
        assert app.query_one(TurnLog).has_focus
        await press(pilot, "escape")
        assert app.query_one("#conversation-sessions", DataTable).has_focus
