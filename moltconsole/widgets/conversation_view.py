"""OpenClaw's sessions, and one session's transcript read as a conversation.

:class:`ConversationView` lists the sessions of every agent in the state directory (now, or in
a snapshot): title or first line, when it was last updated (local time), turns, what OpenClaw
recorded it cost, and the agent. Enter opens the session under the cursor beside the list (on
a wide view) or under it: user, assistant, tool and system turns, each with its role in its
colour, a tool call as its tool and input, a failed tool's result in red, and under each
response its tokens and cost (:mod:`moltconsole.widgets.conversation_format`). ``i`` shows or
hides OpenClaw's internal entries (its bookkeeping). Escape from the conversation goes back to
the list; from the list it is left to whoever hosts the view.

A conversation can hold thousands of turns (the backend sends at most 2,000): one widget
draws them all, a line at a time (:class:`~moltconsole.widgets.turn_log.TurnLog`).

Data flow as in :mod:`moltconsole.widgets.database_view`: workers ask through the memory
client and post one message each (:mod:`moltconsole.widgets.database_feeds`); the handlers
here own the widgets. Every text is the agent's: Rich ``Text``, made inert, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from moltconsole.widgets.conversation_format import conversation_header, session_cells
from moltconsole.widgets.database_feeds import (
    ConversationFetched,
    DatabaseSource,
    SessionsListed,
    fetch_conversation,
    list_sessions,
)
from moltconsole.widgets.database_format import counted, shown
from moltconsole.widgets.turn_log import TurnLog
from moltconsole_shared.wire.memory_db import Conversation, SessionInfo

WIDE = 120  # from this width (cells) on, the conversation is beside the list, not under it


class ConversationView(Vertical):
    """OpenClaw's sessions and their conversations, read through ``client`` (the sandbox's
    memory client), now or in ``snapshot``."""

    BINDINGS = [
        Binding("i", "toggle_internal", "Internal entries", id="conversation.internal"),
        Binding("escape", "back", "Back", id="conversation.back"),
    ]

    class SessionOpened(Message):
        """A session's conversation is shown (``session`` as the list had it)."""

        def __init__(self, view: ConversationView, session: SessionInfo) -> None:
            super().__init__()
            self.view = view
            self.session = session

    def __init__(
        self, client: DatabaseSource, snapshot: str | None = None, *,
        id: str | None = None, classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.client = client
        self.snapshot = snapshot
        self.internal = False  # whether OpenClaw's internal entries are shown
        self.sessions: list[SessionInfo] = []
        self.session: SessionInfo | None = None  # the session shown or asked for
        self.conversation: Conversation | None = None
        self._request = 0
        self._focus_wanted = False  # the list takes the focus when it comes in
        self._focus_turns = False  # the conversation takes the focus when it comes in

    def compose(self) -> ComposeResult:
        with Vertical(id="conversation-list"):
            yield Static(Text("OpenClaw's sessions · reading…", style="dim"), id="conversation-list-header")
            yield DataTable[Text](id="conversation-sessions", cursor_type="row")
        with Vertical(id="conversation-pane"):
            yield Static(id="conversation-header")
            yield TurnLog(id="conversation-turns")

    def on_mount(self) -> None:
        table = self.query_one("#conversation-sessions", DataTable)
        table.add_column(Text("session"), key="title")
        table.add_column(Text("updated"), key="updated")
        table.add_column(Text("turns", justify="right"), key="turns")
        table.add_column(Text("cost", justify="right"), key="cost")
        table.add_column(Text("agent"), key="agent")
        self._say(Text("Enter opens the session under the cursor.", style="dim"))
        table.loading = True
        self._fetch_sessions(self._next_request())

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width >= WIDE, "-wide")

    def focus_sessions(self) -> None:
        """Put the focus on the list of sessions (once it is in, when it is still being read)."""
        table = self.query_one("#conversation-sessions", DataTable)
        if table.loading:
            self._focus_wanted = True
        else:
            table.focus()

    # -- requests (workers ask; they never touch widgets) --

    def _next_request(self) -> int:
        self._request += 1
        return self._request

    @work(exclusive=True, group="conversation", exit_on_error=False)
    async def _fetch_sessions(self, request: int) -> None:
        self.post_message(await list_sessions(self.client, request, self.snapshot))

    @work(exclusive=True, group="conversation", exit_on_error=False)
    async def _fetch_conversation(self, request: int, ref: str) -> None:
        self.post_message(await fetch_conversation(self.client, request, ref, self.snapshot, self.internal))

    def _open(self, session: SessionInfo) -> None:
        self.session = session
        self._focus_turns = self.has_focus_within
        self.query_one("#conversation-turns").loading = True
        self._fetch_conversation(self._next_request(), session.ref)

    # -- answers --

    @on(SessionsListed)
    def _sessions_listed(self, message: SessionsListed) -> None:
        if message.request != self._request:
            return
        table = self.query_one("#conversation-sessions", DataTable)
        table.loading = False
        if self._focus_wanted or self.has_focus_within or self.app.focused is None:
            table.focus()
        self._focus_wanted = False
        header = self.query_one("#conversation-list-header", Static)
        if message.answer is None:
            header.update(Text.assemble(("Could not list OpenClaw's sessions: ", "bold red"),
                                        shown(message.problem or "")))
            return
        listing = message.answer
        self.sessions = listing.sessions
        table.clear()
        for index, session in enumerate(self.sessions):
            table.add_row(*session_cells(session), key=str(index))
        where = "now" if self.snapshot is None else f"snapshot {shown(self.snapshot)}"
        words = Text.assemble(("OpenClaw's sessions", "bold"), f" · {counted(len(self.sessions), 'session')}"
                              f" · {where}")
        if not self.sessions:
            words.append("\nNo sessions: OpenClaw has kept no conversation here.", style="dim")
        for problem in listing.problems:
            words.append("\n" + shown(problem), style="yellow")
        header.update(words)

    @on(ConversationFetched)
    def _conversation_fetched(self, message: ConversationFetched) -> None:
        if message.request != self._request:
            return
        turns = self.query_one(TurnLog)
        turns.loading = False
        if message.answer is None:
            self.conversation = None
            problem = shown(message.problem or "")
            self._say(Text.assemble(("Could not read this session: ", "bold red"), problem))
            if self._focus_turns:
                turns.focus()  # Escape goes back to the list from here
            return
        conversation = self.conversation = message.answer
        header = conversation_header(conversation, self.internal)
        self.query_one("#conversation-header", Static).update(header)
        turns.show(conversation.turns, conversation.session.model)
        if not conversation.turns:
            turns.say(Text("No turns in this session.", style="dim"))
        if self._focus_turns:  # not when Escape went back to the list meanwhile
            turns.focus()
        self.post_message(self.SessionOpened(self, conversation.session))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A request that failed in a way the feeds did not foresee is said in place too."""
        if event.state is not WorkerState.ERROR:
            return
        event.stop()
        self.query_one("#conversation-sessions", DataTable).loading = False
        self.query_one("#conversation-turns").loading = False
        self._say(Text.assemble(("The console failed to read OpenClaw's sessions: ", "bold red"),
                                f"{event.worker.error!r}. This is a console bug; please report it."))

    # -- keys --

    @on(DataTable.RowSelected, "#conversation-sessions")
    def _session_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._open(self.sessions[int(str(event.row_key.value))])

    def action_toggle_internal(self) -> None:
        """Show or hide OpenClaw's internal entries (the open conversation is read again)."""
        self.internal = not self.internal
        self.notify("OpenClaw's internal entries " + ("shown" if self.internal else "hidden"), timeout=2)
        if self.session is not None:
            self._open(self.session)

    def action_back(self) -> None:
        """From the conversation to the list; from the list, Escape is the host's."""
        table = self.query_one("#conversation-sessions", DataTable)
        if table.has_focus:
            raise SkipAction()
        self._focus_turns = False
        table.focus()

    # -- drawing --

    def _say(self, text: Text) -> None:
        """Words in place of a conversation (none opened yet, or a problem)."""
        self.query_one("#conversation-header", Static).update(Text(""))
        self.query_one(TurnLog).say(text)
