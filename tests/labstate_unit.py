"""Unit file states for a lab root: admin copies and drop-ins, removed again on restore."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.labstate import LabState


def write_unit_file(state: LabState, node_path: str, text: str) -> Path:
    """Write a unit file or drop-in below the lab root, creating its directory.

    Restore removes the file, any ``.bak`` copy a fixer made of it, and each
    directory this call created.
    """
    path = state.root_path(node_path)
    _make_directories(state, path.parent)
    state.on_restore(lambda: _remove_backups(path))
    state.write_file(node_path, text)
    return path


def link_to_dev_null(state: LabState, node_path: str) -> Path:
    """Mask a unit file or drop-in with a symlink to /dev/null."""
    path = state.root_path(node_path)
    _make_directories(state, path.parent)
    path.symlink_to("/dev/null")
    state.on_restore(lambda: path.unlink(missing_ok=True))
    return path


def backups_of(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.bak"))


def _make_directories(state: LabState, directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir()
        state.on_restore(lambda created=created: shutil.rmtree(created, ignore_errors=True))


def _remove_backups(path: Path) -> None:
    for backup in backups_of(path):
        backup.unlink()
