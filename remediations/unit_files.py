"""Unit file changes shared by the unit fixers: moving files aside and calling systemctl."""

from __future__ import annotations

import os
import time

from mesh_compliance.errors import FixError
from mesh_compliance.fixing import FixContext
from mesh_compliance.target import Target


def move_aside(ctx: FixContext, node_path: str) -> str:
    """Rename a node file to ``<file>.<UTC time>.bak`` and return that node path.

    The file is kept, never deleted, and systemd ignores it under the new
    name because the name no longer ends in a unit suffix or ``.conf``.
    """
    target = ctx.require_target()
    if not target.is_local:
        raise FixError(f"moving unit files is supported on the local backend only, not on {target.name}")

    local = target.path(node_path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup, counter = f"{node_path}.{stamp}.bak", 1
    while os.path.lexists(target.path(backup)):
        backup = f"{node_path}.{stamp}-{counter}.bak"
        counter += 1

    try:
        os.rename(local, target.path(backup))
    except OSError as exc:
        raise FixError(f"cannot move {local} aside: {exc.strerror}") from exc
    return backup


def systemctl(target: Target, *args: str) -> None:
    """Run ``systemctl [--root] ARGS`` and raise FixError when it fails."""
    result = target.systemctl(*args)
    if result.rc != 0:
        raise FixError(f"systemctl {' '.join(args)} failed on {target.name}: {result.stderr.strip()}")


def live_systemd(target: Target) -> bool:
    """Tell whether the node's systemd runs, so reloads and stops apply now."""
    return not target.root and target.systemd_running()
