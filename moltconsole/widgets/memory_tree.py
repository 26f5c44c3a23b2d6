"""The Memory screen's tree of files, built a folder at a time.

A state directory can hold 10,000 files; Textual's ``Tree`` takes about 25 µs per node added
and lays out every node it holds, so adding them all would cost a quarter of a second before
the first frame. Instead the listing is indexed once (:func:`index_files`, one pass over the
paths: each folder's files, subfolders, file count and bytes), and a folder's nodes are added
when it is first expanded, at most :data:`PAGE` at a time; a last "… N more" node adds the
next page when chosen. Only the top level and the workspace (expanded at once, as the first
thing a person reads) exist when the tree is first drawn.

Order within a folder is reading order: what holds workspace markdown first, then other
markdown, then the rest; files before folders within each, then by name. Every name came from
the sandbox and is made inert before it is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from moltconsole.widgets.cells import ELLIPSIS
from moltconsole.widgets.memory_format import reading_rank, size
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.memory import FileInfo

PAGE = 500  # nodes added to a folder at a time
TOGGLE_STYLE = Style.from_meta({"toggle": True})  # a click on the icon opens or closes, as in Tree
OPEN_FIRST = "workspace"  # the folder expanded when the tree is shown


@dataclass(eq=False)
class Folder:
    """One folder of a listing: its files and subfolders, and the count and bytes under it."""

    path: str  # '/'-separated; "" for the top
    folders: dict[str, Folder] = field(default_factory=dict)
    files: list[FileInfo] = field(default_factory=list)
    count: int = 0
    size: int = 0
    rank: int = 2  # the best reading rank of a file under it
    _ordered: list[Folder | FileInfo] | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def children(self) -> list[Folder | FileInfo]:
        """Files and subfolders in reading order (sorted once, when first asked)."""
        if self._ordered is None:
            def key(entry: Folder | FileInfo) -> tuple[int, int, str]:
                if isinstance(entry, Folder):
                    return entry.rank, 1, entry.name.casefold()
                return reading_rank(entry.path), 0, entry.path.rsplit("/", 1)[-1].casefold()

            self._ordered = sorted([*self.files, *self.folders.values()], key=key)
        return self._ordered


@dataclass(frozen=True, eq=False)
class More:
    """The "… N more" node at the end of a folder shown in part."""

    folder: Folder


Entry = Folder | FileInfo | More


def index_files(files: Iterable[FileInfo]) -> Folder:
    """The folders of a listing: one pass over the files (each to its folder, found by its
    path), then one over the folders, deepest first, to add up what is under each."""
    top = Folder("")
    by_path = {"": top}
    for info in files:
        path = info.path
        cut = path.rfind("/")
        where = path[:cut] if cut > 0 else ""
        folder = by_path.get(where) or _make_folder(by_path, where)
        folder.files.append(info)
        folder.count += 1
        folder.size += info.size
        if path.endswith(".md"):
            folder.rank = min(folder.rank, reading_rank(path))
    for where in sorted(by_path, key=lambda p: p.count("/") + (p != ""), reverse=True):
        if not where:
            continue
        folder = by_path[where]
        cut = where.rfind("/")
        parent = by_path[where[:cut] if cut > 0 else ""]
        parent.count += folder.count
        parent.size += folder.size
        parent.rank = min(parent.rank, folder.rank)
    return top


def first_to_read(top: Folder) -> FileInfo | None:
    """The file the tree's cursor goes to first: the first file on its lines when it is shown
    (the top level, with the workspace open), so it can be read before the tree is drawn."""
    for entry in top.children():
        if isinstance(entry, FileInfo):
            return entry
        if entry.path == OPEN_FIRST:
            inside = next((e for e in entry.children()[:PAGE] if isinstance(e, FileInfo)), None)
            if inside is not None:
                return inside
    return None


def _make_folder(by_path: dict[str, Folder], where: str) -> Folder:
    """The folder at ``where`` and those above it that are not there yet."""
    cut = where.rfind("/")
    above = where[:cut] if cut > 0 else ""
    parent = by_path.get(above) or _make_folder(by_path, above)
    folder = by_path[where] = parent.folders[where[cut + 1:]] = Folder(where)
    return folder


def label_parts(entry: Entry) -> tuple[str, str, str]:
    """(name, its style, the facts after it) of a node: a file's size; a folder's file count
    and the bytes under it."""
    if isinstance(entry, Folder):
        return sanitize(entry.name) + "/", "bold", f" ({entry.count:,})  {size(entry.size)}"
    if isinstance(entry, More):
        return "", "", ""
    return sanitize(entry.path.rsplit("/", 1)[-1]), "", f"  {size(entry.size)}"


def fitted_label(entry: Entry, room: int) -> Text:
    """The label in ``room`` cells: a long name loses its middle (its end, which holds the
    extension, and the facts stay) before anything is cut at the edge."""
    name, style, facts = label_parts(entry)
    spare = room - cell_len(facts)
    if cell_len(name) > spare and spare >= 8:
        keep_end = min(6, spare // 3)
        head = spare - keep_end - 1
        name = name[:head] + ELLIPSIS + name[len(name) - keep_end:]
    return Text.assemble((name, style), (facts, "dim"))


class MemoryTree(Tree[Entry]):
    """The files of one view (now, or a snapshot), folder by folder as they are opened."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("files"), id=id)
        self.show_root = False
        self.guide_depth = 2
        self.top: Folder | None = None
        self._shown: dict[int, int] = {}  # node id -> children of its folder added so far

    def show_files(self, top: Folder, opened: Iterable[str] = ()) -> None:
        """Show a new listing: its top level, with the workspace open, and the folders of
        ``opened`` that it has (those open before the listing was loaded again)."""
        self.top = top
        self._shown.clear()
        self.clear()
        self.root.data = top
        self._add_page(self.root, top)
        self.root.expand()
        for path in (OPEN_FIRST, *sorted(opened, key=lambda p: p.count("/"))):
            node = self._node(path)
            if node is not None and isinstance(node.data, Folder):
                node.expand()
                self._fill(node)
        self.move_cursor_to_line(0)

    def opened_folders(self) -> set[str]:
        """The paths of the folders open now."""
        found: set[str] = set()
        stack = list(self.root.children)
        while stack:
            node = stack.pop()
            if isinstance(node.data, Folder) and node.is_expanded:
                found.add(node.data.path)
                stack.extend(node.children)
        return found

    def _fill(self, node: TreeNode[Entry]) -> None:
        """Add a folder's first page of nodes, once."""
        if isinstance(node.data, Folder) and node.id not in self._shown:
            self._add_page(node, node.data)

    def _add_page(self, node: TreeNode[Entry], folder: Folder) -> None:
        children = folder.children()
        start = self._shown.get(node.id, 0)
        end = min(start + PAGE, len(children))
        for entry in children[start:end]:
            # The label is fitted to the width when drawn (render_label); this one is its text.
            label = fitted_label(entry, 1_000)
            if isinstance(entry, Folder):
                node.add(label, data=entry, allow_expand=True)
            else:
                node.add_leaf(label, data=entry)
        self._shown[node.id] = end
        if end < len(children):
            more = Text(f"… {len(children) - end:,} more (enter shows {PAGE} more)", style="italic dim")
            node.add_leaf(more, data=More(folder))

    def _show_more(self, more_node: TreeNode[Entry]) -> None:
        parent = more_node.parent
        if parent is None or not isinstance(more_node.data, More):
            return
        line = more_node.line
        more_node.remove()
        self._add_page(parent, more_node.data.folder)
        self.move_cursor_to_line(line)

    def render_label(self, node: TreeNode[Entry], base_style: Style, style: Style) -> Text:
        """A file's or folder's label, fitted to the room its line has."""
        data = node.data
        if not isinstance(data, Folder | FileInfo):
            return super().render_label(node, base_style, style)
        depth = 0
        parent = node.parent
        while parent is not None and parent is not self.root:
            depth += 1
            parent = parent.parent
        icon = cell_len(self.ICON_NODE) if node.allow_expand else 0
        room = self.scrollable_content_region.width - depth * self.guide_depth - icon
        label = fitted_label(data, room) if room > 0 else fitted_label(data, 1_000)
        label.stylize(style)
        if node.allow_expand:
            icon_text = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
            return Text.assemble((icon_text, base_style + TOGGLE_STYLE), label)
        return label

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Entry]) -> None:
        """A folder opened for the first time gets its nodes now."""
        self._fill(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Entry]) -> None:
        """Enter on "… N more" adds the next page in its place."""
        if isinstance(event.node.data, More):
            event.stop()
            self._show_more(event.node)

    @property
    def chosen(self) -> Folder | FileInfo | None:
        """The file or folder under the cursor (None on "… more" or an empty tree)."""
        node = self.cursor_node
        data = node.data if node is not None else None
        return data if isinstance(data, Folder | FileInfo) else None

    def reveal(self, path: str) -> bool:
        """Open the folders down to ``path`` and put the cursor on it; False if it is not listed."""
        node = self._node(path)
        if node is None:
            return False
        _ = self.last_line  # lays the lines out again, so the nodes just added have theirs
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)
        return True

    def _node(self, path: str) -> TreeNode[Entry] | None:
        """The node of ``path``, its folders opened (and filled) on the way; None if not listed."""
        node = self.root
        parts = path.split("/")
        for depth in range(len(parts)):
            self._fill(node)
            found = self._child(node, "/".join(parts[: depth + 1]))
            if found is None:
                return None
            node = found
            if depth < len(parts) - 1:
                node.expand()
        return node

    def _child(self, node: TreeNode[Entry], path: str) -> TreeNode[Entry] | None:
        """The child of ``node`` for ``path``, adding pages of a long folder until it is there."""
        while True:
            more = None
            for child in node.children:
                data = child.data
                if isinstance(data, More):
                    more = child
                elif (isinstance(data, Folder) and data.path == path) or (
                    isinstance(data, FileInfo) and data.path == path
                ):
                    return child
            if more is None or not isinstance(more.data, More):
                return None
            folder = more.data.folder
            more.remove()
            self._add_page(node, folder)
