"""Which binding ids exist, so ``[console] keymap`` entries that name none can be reported.

Textual's ``set_keymap`` ignores an id no binding has, so a typo in the config would change
nothing and say nothing. The ids are read from the classes themselves: every screen and widget
module of the console is imported, and the ``BINDINGS`` of each Textual class defined in the
console are collected. Importing them all costs a little time, so this runs only when the
config has a keymap.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterator, Mapping

from textual.binding import Binding
from textual.dom import DOMNode

# The packages whose modules define the console's screens and widgets.
_PACKAGES = ("moltconsole.screens", "moltconsole.widgets")


def _subclasses(cls: type[DOMNode]) -> Iterator[type[DOMNode]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def binding_ids(extra: tuple[type[DOMNode], ...] = ()) -> frozenset[str]:
    """The id of every binding of the console's screens and widgets, and of ``extra`` classes."""
    for package_name in _PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__, f"{package_name}."):
            importlib.import_module(module.name)
    classes = [cls for cls in _subclasses(DOMNode) if cls.__module__.startswith("moltconsole.")]
    return frozenset(
        binding.id
        for cls in (*classes, *extra)
        for binding in cls.BINDINGS
        if isinstance(binding, Binding) and binding.id
    )


def unknown_keymap_ids(keymap: Mapping[str, str], known: frozenset[str]) -> list[str]:
    """One line per id in ``keymap`` that no binding has, with the ids it may have meant."""
    lines = []
    for name in sorted(set(keymap) - known):
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.85)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else (
            "press ? on a screen to see its binding ids"
        )
        lines.append(f"unknown binding id {name!r} in console.keymap; {hint}")
    return lines
