"""Lab state helpers for the node file controls: accounts, directories and backups in the target root.

Each helper takes a LabState and registers the undo step with it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.labstate import LabState

ACCOUNT_FILES = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow")


def account_line(state: LabState, name: str, database: str = "/etc/passwd") -> list[str]:
    """Return the fields of ``name``'s line in an account file of the root."""
    for line in state.root_path(database).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise LookupError(f"{name} not in {database}")


def set_account_field(state: LabState, name: str, index: int, value: str) -> None:
    """Change one field of ``name``'s /etc/passwd line (2 uid, 6 shell)."""
    path = state.root_path("/etc/passwd")
    lines = []
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            fields[index] = value
        lines.append(":".join(fields))
    state.write_file("/etc/passwd", "\n".join(lines) + "\n")


def remove_account_lines(state: LabState, name: str, databases: tuple[str, ...] = ACCOUNT_FILES) -> None:
    """Delete ``name``'s lines from the root's account files; restore puts them back."""
    for database in databases:
        state.keep_file(database)
        remove_if_created(state, database + "-")
        path = state.root_path(database)
        remaining = [line for line in path.read_text().splitlines() if line.split(":")[0] != name]
        path.write_text("".join(f"{line}\n" for line in remaining))


def remove_if_created(state: LabState, node_path: str) -> None:
    """Remove a file that a tool may create (for example useradd's /etc/passwd-) unless it existed."""
    path = state.root_path(node_path)
    if not path.exists():
        state.on_restore(lambda: path.unlink(missing_ok=True))


def keep_directory(state: LabState, node_path: str) -> Path:
    """Remember a directory's owner and mode so restore puts them back."""
    path = state.root_path(node_path)
    info = path.stat()

    def put_back():
        os.chown(path, info.st_uid, info.st_gid)
        os.chmod(path, info.st_mode & 0o7777)

    state.on_restore(put_back)
    return path


def set_directory(state: LabState, node_path: str, mode: int, uid: int | None = None, gid: int | None = None) -> None:
    """Change a directory's mode and optionally its owner; restore puts both back."""
    path = keep_directory(state, node_path)
    if uid is not None:
        os.chown(path, uid, gid if gid is not None else uid)
    os.chmod(path, mode)


def make_directory(state: LabState, node_path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Path:
    """Create a directory in the root; restore removes it with its content."""
    path = state.root_path(node_path)
    created = next((parent for parent in [path, *path.parents] if parent.parent.exists()), path)
    path.mkdir(parents=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    state.on_restore(lambda: shutil.rmtree(created, ignore_errors=True))
    return path


def put_file(state: LabState, node_path: str, text: str, mode: int, uid: int = 0, gid: int = 0) -> Path:
    """Write a root file with an owner and mode; restore puts the previous one back or removes it."""
    path = state.keep_file(node_path)
    path.write_text(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def move_aside(state: LabState, node_path: str) -> None:
    """Rename a root path out of the way; restore moves it back."""
    path = state.root_path(node_path)
    aside = path.with_name(path.name + ".moved-by-test")
    path.rename(aside)

    def put_back():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        aside.rename(path)

    state.on_restore(put_back)


def forget_backups(state: LabState, node_path: str) -> None:
    """Remove the ``<file>.<time>.bak`` copies that fixers leave next to a root file."""
    path = state.root_path(node_path)
    before = set(path.parent.glob(f"{path.name}.*.bak"))

    def remove_new():
        for backup in set(path.parent.glob(f"{path.name}.*.bak")) - before:
            backup.unlink()

    state.on_restore(remove_new)


def gateway_ids(state: LabState, name: str = "carbonio-gateway") -> tuple[int, int]:
    """Return the uid and gid of the gateway account in the root."""
    return int(account_line(state, name)[2]), int(account_line(state, name, "/etc/group")[2])
