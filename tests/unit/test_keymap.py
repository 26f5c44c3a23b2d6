"""Keymap ids from the config are checked against the ids the console's bindings really have."""

from __future__ import annotations

import ast
from pathlib import Path

from moltconsole.app import MoltConsole
from moltconsole.keymap import binding_ids, unknown_keymap_ids

CONSOLE = Path(__file__).resolve().parents[2] / "moltconsole"


def ids_in_source() -> set[str]:
    """Every ``id=`` given to a ``Binding(...)`` anywhere in the console's source."""
    found = set()
    for path in CONSOLE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Binding":
                for keyword in node.keywords:
                    if keyword.arg == "id" and isinstance(keyword.value, ast.Constant):
                        found.add(str(keyword.value.value))
    return found


def test_every_binding_of_the_console_is_known() -> None:
    assert binding_ids((MoltConsole,)) == ids_in_source()


def test_unknown_ids_are_named_with_what_they_may_have_meant() -> None:
    known = binding_ids((MoltConsole,))
    lines = unknown_keymap_ids({"logs.pase": "p", "logs.pause": "space", "nothing.like.it": "x"}, known)
    assert lines == [
        "unknown binding id 'logs.pase' in console.keymap; did you mean 'logs.pause'?",
        "unknown binding id 'nothing.like.it' in console.keymap; press ? on a screen to see its "
        "binding ids",
    ]
