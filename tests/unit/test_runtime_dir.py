"""The runtime directory ``moltconsole serve`` binds its socket in is its owner's alone."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from moltconsole_backend.api.service import BackendStartError, prepare_runtime_dir


def test_runtime_dir_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "run"
    link.symlink_to(real)
    with pytest.raises(BackendStartError) as caught:
        prepare_runtime_dir(link)
    message = str(caught.value)
    assert str(link) in message and "symbolic link" in message
    assert "Remove it or set paths.runtime_dir" in message


def test_runtime_dir_dangling_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BackendStartError, match="symbolic link"):
        prepare_runtime_dir(link)
    assert not (tmp_path / "elsewhere").exists()


def test_runtime_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run"
    path.write_text("")
    with pytest.raises(BackendStartError, match="not a directory"):
        prepare_runtime_dir(path)


def test_runtime_dir_is_created_and_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "run"
    prepare_runtime_dir(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    path.chmod(0o755)
    prepare_runtime_dir(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
