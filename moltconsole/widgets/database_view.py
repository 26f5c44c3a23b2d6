"""A SQLite database of the agent's state, browsed read-only: its tables, then one table's rows.

:class:`DatabaseView` is what the Memory screen mounts for a database file (the path, and the
view: now or a snapshot). It shows the database's tables, views and virtual tables with their
row counts (``?`` and the backend's note when a table could not be counted); Enter opens the
table under the cursor as a page of :data:`~moltconsole.widgets.database_feeds.PAGE_ROWS`
rows, under the line ``TABLE · N rows · page x/y``; PageDown and PageUp load the next and the
previous page; Escape goes back to the tables (and, from the tables, is left to the screen).
For an OpenClaw agent's database (``openclaw-agent.sqlite``) ``c`` shows OpenClaw's sessions
and their transcripts as conversations (:class:`~moltconsole.widgets.conversation_view.
ConversationView`).

Data flow: a worker asks the backend through the memory client
(:mod:`moltconsole.widgets.database_feeds`) and posts one message with the answer or the
backend's words for why not; the handlers here own the widgets and apply it. While a request
is out, its table shows Textual's loading indicator; a problem replaces the table, in place.
Every value came from the agent: it is shown as Rich ``Text`` (never markup), made inert.
"""

from __future__ import annotations

from typing import Literal

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Static
from textual.worker import Worker, WorkerState

from moltconsole.widgets.conversation_view import ConversationView
from moltconsole.widgets.database_feeds import (
    PAGE_ROWS,
    DatabaseSource,
    RowsFetched,
    TablesListed,
    fetch_rows,
    list_tables,
)
from moltconsole.widgets.database_format import (
    cell_text,
    has_next,
    is_agent_database,
    name_text,
    page_header,
    row_count,
    shown,
    table_note,
    tables_header,
)
from moltconsole_shared.wire.memory_db import RowsPage, TableInfo

Section = Literal["tables", "rows", "conversations"]


class RowsTable(DataTable[Text]):
    """A page of rows; PageDown and PageUp ask for the next and the previous page (the arrow
    keys, Home and End move within the page)."""

    BINDINGS = [
        Binding("pagedown", "page(1)", "Next page", id="database.next_page"),
        Binding("pageup", "page(-1)", "Previous page", id="database.previous_page"),
    ]

    class PageWanted(Message):
        """The next (``step`` 1) or the previous (-1) page of rows is wanted."""

        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    def action_page(self, step: int) -> None:
        """Ask the database view for another page."""
        self.post_message(self.PageWanted(step))


class DatabaseView(Vertical):
    """One SQLite database (``path`` in the state directory, now or in ``snapshot``), read
    through ``client`` (the sandbox's memory client, or anything with its ``tables``, ``rows``,
    ``sessions`` and ``conversation``)."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="database.back"),
        Binding("c", "conversations", "Conversations", id="database.conversations"),
    ]

    class Navigated(Message):
        """The view now shows ``section``: the tables, the rows of ``table``, or the
        conversations (for the screen's title or status line)."""

        def __init__(self, view: DatabaseView, section: Section, table: str | None) -> None:
            super().__init__()
            self.view = view
            self.section = section
            self.table = table

    def __init__(
        self, client: DatabaseSource, path: str, snapshot: str | None = None, *,
        id: str | None = None, classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.client = client
        self.path = path
        self.snapshot = snapshot
        self.section: Section = "tables"
        self.tables: list[TableInfo] = []
        self.page: RowsPage | None = None  # the page of rows shown (None: none yet)
        self.table: str | None = None  # the table whose rows are shown or asked for
        self._request = 0  # the number of the newest request; older answers are dropped
        self._problem_of: Section | None = None  # which section a problem shown in place belongs to

    def compose(self) -> ComposeResult:
        yield Static(id="database-header")
        with ContentSwitcher(initial="database-tables", id="database-body"):
            yield DataTable[Text](id="database-tables", cursor_type="row")
            yield RowsTable(id="database-rows", cursor_type="row")
            with VerticalScroll(id="database-problem"):
                yield Static(id="database-problem-text")

    def on_mount(self) -> None:
        tables = self.query_one("#database-tables", DataTable)
        tables.add_column(Text("table"), key="table")
        tables.add_column(Text("rows", justify="right"), key="rows")
        tables.add_column(Text("note"), key="note")
        self._header(Text.assemble((shown(self.path.rsplit("/", 1)[-1]), "bold"), " · reading its tables…"))
        self._list_tables()

    # -- requests (workers ask; they never touch widgets) --

    def _next_request(self) -> int:
        self._request += 1
        return self._request

    @work(exclusive=True, group="database", exit_on_error=False)
    async def _fetch_tables(self, request: int) -> None:
        self.post_message(await list_tables(self.client, request, self.path, self.snapshot))

    @work(exclusive=True, group="database", exit_on_error=False)
    async def _fetch_rows(self, request: int, table: str, offset: int) -> None:
        self.post_message(await fetch_rows(self.client, request, self.path, table, offset, self.snapshot))

    def _list_tables(self) -> None:
        self.query_one("#database-tables", DataTable).loading = True
        self._fetch_tables(self._next_request())

    def _load_rows(self, table: str, offset: int) -> None:
        first = self.table != table or self.page is None
        self.table = table
        self.section = "rows"
        self._problem_of = None
        if first:
            self._header(Text.assemble((shown(table), "bold"), " · reading its rows…"))
        self.query_one(RowsTable).loading = True  # it takes the focus when the rows are in
        self.query_one(ContentSwitcher).current = "database-rows"
        self._fetch_rows(self._next_request(), table, offset)
        self.refresh_bindings()

    # -- answers --

    @on(TablesListed)
    def _tables_listed(self, message: TablesListed) -> None:
        if message.request != self._request:
            return
        self.query_one("#database-tables", DataTable).loading = False
        if message.answer is None:
            self._show_problem("tables", message.problem or "")
            return
        # Shown as the Memory screen's cursor passes over a database: the focus stays where
        # it is (the file tree), unless it was in here already or nowhere.
        take_focus = self.has_focus_within or self.app.focused is None
        self.tables = message.answer.tables
        table = self.query_one("#database-tables", DataTable)
        table.clear()
        for index, info in enumerate(self.tables):
            name = name_text(info.name)
            if info.kind != "table":
                name.append(f" ({info.kind})", style="dim")
            table.add_row(name, row_count(info), table_note(info), key=str(index))
        self._show_tables(take_focus)

    @on(RowsFetched)
    def _rows_fetched(self, message: RowsFetched) -> None:
        if message.request != self._request:
            return
        rows = self.query_one(RowsTable)
        rows.loading = False
        if message.answer is None:
            self._show_problem("rows", message.problem or "")
            return
        page = self.page = message.answer
        rows.clear(columns=True)
        for index, column in enumerate(page.columns):
            rows.add_column(name_text(column), key=str(index))
        for row in page.rows:
            rows.add_row(*(cell_text(cell) for cell in row))
        rows.focus()
        header = page_header(page, PAGE_ROWS)
        if not page.rows:
            header.append("\nno rows on this page", style="dim")
        self._header(header)
        self.post_message(self.Navigated(self, "rows", page.table))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A request that failed in a way the feeds did not foresee is said in place too."""
        if event.state is not WorkerState.ERROR:
            return
        event.stop()
        self.query_one("#database-tables", DataTable).loading = False
        self.query_one(RowsTable).loading = False
        section: Section = "rows" if self.table is not None else "tables"
        self._show_problem(section, f"the console failed to read this database: {event.worker.error!r}. "
                                    "This is a console bug; please report it.")

    # -- navigation --

    @on(DataTable.RowSelected, "#database-tables")
    def _table_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.page = None
        self._load_rows(self.tables[int(str(event.row_key.value))].name, 0)

    @on(RowsTable.PageWanted)
    def _page_wanted(self, message: RowsTable.PageWanted) -> None:
        message.stop()
        page = self.page
        if page is None or self.table is None:
            return
        if message.step > 0 and not has_next(page, PAGE_ROWS):
            self.app.bell()
            return
        if message.step < 0 and page.offset == 0:
            self.app.bell()
            return
        self._load_rows(self.table, max(0, page.offset + message.step * PAGE_ROWS))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """``c`` only for an OpenClaw agent's database, and not while its sessions are shown;
        Escape only where there is somewhere to go back to."""
        if action == "conversations":
            return is_agent_database(self.path) and self.section != "conversations"
        if action == "back":
            return self.section != "tables" and self._problem_of != "tables"
        return True

    def action_back(self) -> None:
        """Back to the tables; from the tables, Escape is the screen's."""
        if self.section == "tables" or self._problem_of == "tables":
            raise SkipAction()
        self.workers.cancel_group(self, "database")
        self._next_request()  # an answer still on its way is for a view no longer shown
        self.query_one(RowsTable).loading = False
        self.table = None
        self.page = None
        self._show_tables()

    async def action_conversations(self) -> None:
        """OpenClaw's sessions, in place of the tables (Escape comes back)."""
        body = self.query_one(ContentSwitcher)
        if not body.query("#database-conversations"):
            await body.add_content(ConversationView(self.client, self.snapshot, id="database-conversations"))
        self.section = "conversations"
        self._problem_of = None
        body.current = "database-conversations"
        self._header(Text.assemble(
            (shown(self.path.rsplit("/", 1)[-1]), "bold"), " · conversations",
            ("  escape: the tables", "dim"),
        ))
        self.query_one(ConversationView).focus_sessions()
        self.post_message(self.Navigated(self, "conversations", None))
        self.refresh_bindings()

    # -- drawing --

    def _header(self, text: Text) -> None:
        self.query_one("#database-header", Static).update(text)

    def _show_tables(self, take_focus: bool = True) -> None:
        self.section = "tables"
        self._problem_of = None
        self._header(tables_header(self.path, self.tables, self.snapshot))
        self.query_one(ContentSwitcher).current = "database-tables"
        if take_focus:
            self.query_one("#database-tables", DataTable).focus()  # its cursor stays on the table opened
        self.post_message(self.Navigated(self, "tables", None))
        self.refresh_bindings()

    def _show_problem(self, section: Section, problem: str) -> None:
        self._problem_of = section
        what = "its tables" if section == "tables" else f"the rows of {shown(self.table or '')}"
        text = Text.assemble((f"Could not read {what}", "bold red"), "\n\n", Text(shown(problem)))
        if section != "tables":
            text.append("\n\nEscape goes back to the tables.", style="dim")
        self.query_one("#database-problem-text", Static).update(text)
        self.query_one(ContentSwitcher).current = "database-problem"
        if self.has_focus_within or self.app.focused is None or section != "tables":
            self.query_one("#database-problem", VerticalScroll).focus()  # Escape still works here
        self.refresh_bindings()
