"""Dependencies run one way: the console and the backend both use the shared package, never
each other, and the shared package uses neither (nor any of their heavy libraries).

Every ``import`` and ``from ... import`` in the three packages is read with ``ast``, including
the ones inside functions, so a late import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package directory -> top-level modules it must never import
FORBIDDEN: dict[Path, frozenset[str]] = {
    ROOT / "moltconsole": frozenset({"moltconsole_backend"}),
    ROOT / "backend" / "moltconsole_backend": frozenset({"moltconsole", "textual"}),
    ROOT / "shared" / "moltconsole_shared": frozenset(
        {"moltconsole", "moltconsole_backend", "textual", "docker", "starlette", "httpx", "uvicorn"}
    ),
}


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every absolute import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def violations(package: Path, forbidden: frozenset[str]) -> list[tuple[Path, int, str]]:
    """(file, line, module) of each import of a forbidden top-level module under ``package``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in sorted(imported_modules(tree)):
            if module.split(".")[0] in forbidden:
                found.append((path, line, module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(package: Path) -> None:
    assert package.is_dir(), f"{package} is missing"
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path, line, module in violations(package, FORBIDDEN[package])
    ]
    assert not problems, "imports against the direction console -> shared <- backend:\n" + "\n".join(
        problems
    )


def test_the_check_sees_late_and_dotted_imports(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "import os\n\ndef late():\n    from moltconsole.settings import Settings\n"
        "    import moltconsole_backend.cli as cli\n    from . import sibling\n"
    )
    found = violations(tmp_path, frozenset({"moltconsole", "moltconsole_backend"}))
    assert [(line, module) for _, line, module in found] == [
        (4, "moltconsole.settings"), (5, "moltconsole_backend.cli"),
    ]
