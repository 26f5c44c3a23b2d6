"""The right side of the Memory screen: one file, shown the way its kind reads best.

:meth:`FileView.show` chooses by :class:`~moltconsole.widgets.memory_kinds.FileKind`:

- markdown rendered (Textual's ``Markdown``, links not followed), or its text when ``raw``;
- JSON re-indented and coloured (JSON5 coloured as written), or its text when ``raw``;
- other text as text, with line numbers (a read-only ``TextArea``: it draws only the lines in
  view, so a 4 MiB file scrolls as fast as a short one);
- a binary file: what it is and its size;
- a SQLite database: the widget :func:`~moltconsole.widgets.memory_database.database_view`
  returns (the seam where the database browser plugs in);
- a file too large to fetch: its size, and what to do instead.

A file opened at a line (a search match) shows its text with that line selected and centred.
The file's text came from the sandbox: each line is made inert before it is shown, and the
markdown view does not open links. Each view is mounted the first time it is needed, so the
screen's first frame does not wait for widgets it may never show.
"""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Markdown, Static, TextArea

from moltconsole.widgets.memory_database import DatabaseRef, database_view
from moltconsole.widgets.memory_format import size
from moltconsole.widgets.memory_kinds import (
    MARKDOWN_RENDER_LIMIT,
    PRETTY_LIMIT,
    READ_LIMIT,
    FileKind,
    OpenedFile,
    as_text,
    binary_name,
    pretty_json,
)
from moltconsole_shared.untrusted import sanitize

RENDERED = (FileKind.MARKDOWN, FileKind.JSON, FileKind.JSON5)  # the kinds r switches to text and back


def inert(text: str) -> str:
    """``text`` with every control character of each line made visible; line ends kept."""
    return "\n".join(sanitize(line.removesuffix("\r")) for line in text.split("\n"))


class FileView(Vertical):
    """One file of the memory, by kind; ``source`` is the memory client a database view reads."""

    class Placed(Message):
        """A file opened at a line has that line in the middle of the view (its size is known
        only once it is laid out, after :meth:`FileView.show` returned)."""

    def __init__(self, source: object, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.opened: OpenedFile | None = None
        self.raw = False
        self.mode = "note"  # which view shows: note, markdown, text, pretty, database

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="memory-note", id="memory-views"):
            with VerticalScroll(id="memory-note"):
                yield Static(id="memory-note-text")

    async def _view(self, mode: str) -> None:
        """Mount the view for ``mode`` if it is not there yet."""
        switcher = self.query_one(ContentSwitcher)
        if switcher.query(f"#memory-{mode}"):
            return
        if mode == "markdown":
            view: Widget = VerticalScroll(Markdown(open_links=False, id="memory-markdown-body"),
                                          id="memory-markdown")
        elif mode == "text":
            view = TextArea(read_only=True, show_line_numbers=True, soft_wrap=True, id="memory-text")
            view.cursor_blink = False  # read-only: a blinking cursor only distracts
        elif mode == "pretty":
            view = VerticalScroll(Static(id="memory-pretty-body"), id="memory-pretty")
        else:
            view = Container(id="memory-database")
        await switcher.mount(view)

    def _switch(self, mode: str) -> None:
        self.mode = mode
        self.query_one(ContentSwitcher).current = f"memory-{mode}"

    def note(self, text: Text, title: str = "", subtitle: str = "") -> None:
        """Words in place of a file (nothing chosen yet, a problem, a binary file)."""
        self.query_one("#memory-note-text", Static).update(text)
        self.border_title = title
        self.border_subtitle = subtitle
        self._switch("note")

    async def show(self, opened: OpenedFile, raw: bool, where: str = "", hint: str | None = None) -> bool:
        """Show ``opened`` (its text when ``raw``, or when it was opened at a line); ``where`` names
        the view in a few words (default: now, or the snapshot's id); ``hint`` says what to do
        with a file that is not shown (default: its versions, or restore it). True when its line
        is still to be put in the middle: :class:`Placed` comes when it is."""
        hint = hint or "t shows its versions; R restores it."
        self.opened = opened
        self.raw = raw
        kind = opened.kind
        where = where or ("now" if opened.snapshot is None else f"snapshot {sanitize(opened.snapshot)}")
        self.border_title = sanitize(opened.path)
        named = kind not in (FileKind.BINARY, FileKind.LARGE)  # a note says what those are
        facts = [kind.value if named else "", size(opened.size), where]
        if kind in RENDERED:
            facts.append("r rendered" if raw or opened.line else "r raw")
        self.border_subtitle = " · ".join(f for f in facts if f)
        if kind is FileKind.SQLITE:
            await self._show_database(opened)
            return False
        content = opened.content
        if kind is FileKind.LARGE or content is None:
            self.note(Text(
                f"{size(opened.size)}: too large to show here (the console shows files up to "
                f"{size(READ_LIMIT)}). {hint}",
            ), self.border_title, self.border_subtitle)
            return False
        if kind is FileKind.BINARY:
            self.note(Text.assemble((binary_name(content), "bold"), f", {size(opened.size)}\n\n",
                                    f"Not text, so not shown. {hint}"),
                      self.border_title, self.border_subtitle)
            return False
        text = as_text(content) or ""
        if opened.line is not None or raw or kind is FileKind.TEXT:
            return await self._show_text(text, opened.line)
        if kind is FileKind.MARKDOWN:
            await self._show_markdown(text, opened)
        else:
            await self._show_pretty(text, kind)
        return False

    async def _show_text(self, text: str, line: int | None) -> bool:
        await self._view("text")
        area = self.query_one(TextArea)
        area.load_text(inert(text))
        self._switch("text")
        if line is None:
            area.move_cursor((0, 0))
            area.scroll_home(animate=False)
            return False
        target = max(0, min(line - 1, area.document.line_count - 1))
        area.select_line(target)

        def centre(again: bool) -> None:
            area.scroll_cursor_visible(center=True, animate=False)
            if again:  # shown just now, its size and wrapping can take one more pass to settle
                area.call_after_refresh(centre, False)
            else:
                self.post_message(self.Placed())

        # It needs its size, which it has once laid out: after this returns, never awaited here
        # (the screen lays it out only when its handler is done).
        area.call_after_refresh(centre, True)
        return True

    async def _show_markdown(self, text: str, opened: OpenedFile) -> None:
        if len(text) > MARKDOWN_RENDER_LIMIT:
            limit = size(MARKDOWN_RENDER_LIMIT)
            self.border_subtitle = f"{self.border_subtitle} · over {limit}: not rendered"
            await self._show_text(text, None)
            return
        await self._view("markdown")
        self._switch("markdown")
        await self.query_one(Markdown).update(inert(text))
        self.query_one("#memory-markdown", VerticalScroll).scroll_home(animate=False)

    async def _show_pretty(self, text: str, kind: FileKind) -> None:
        if len(text) > PRETTY_LIMIT:
            await self._show_text(text, None)
            return
        pretty = pretty_json(text) if kind is FileKind.JSON else None
        lexer = "json" if pretty is not None else "json5"
        if kind is FileKind.JSON and pretty is None:
            self.border_subtitle = f"{self.border_subtitle} · not strict JSON: as written"
        syntax = Syntax(inert(pretty if pretty is not None else text), lexer, theme="ansi_dark",
                        background_color="default", word_wrap=True)
        await self._view("pretty")
        self.query_one("#memory-pretty-body", Static).update(syntax)
        self._switch("pretty")
        self.query_one("#memory-pretty", VerticalScroll).scroll_home(animate=False)

    async def _show_database(self, opened: OpenedFile) -> None:
        await self._view("database")
        slot = self.query_one("#memory-database", Container)
        await slot.remove_children()
        await slot.mount(database_view(DatabaseRef(opened.path, opened.snapshot, opened.size), self.source))
        self._switch("database")

    @property
    def text_area(self) -> TextArea:
        """The text view (tests read the selected line from it)."""
        return self.query_one(TextArea)
