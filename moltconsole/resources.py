"""Files shipped beside the code: the console's stylesheets."""

from __future__ import annotations

from pathlib import Path


def styles_dir() -> Path:
    """The .tcss directory: ``moltconsole/styles`` (a symlink to ``styles/`` in a checkout)."""
    packaged = Path(__file__).parent / "styles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "styles"
