"""Unit file changes shared by the unit fixers: moving files aside and calling systemctl."""

from __future__ import annotations


from mesh_compliance.fixing import FixContext
from mesh_compliance.target import Target


def move_aside(ctx: FixContext, node_path: str) -> str:
    """Rename a node file to ``<file>.<UTC time>.bak`` and return that node path.

    The file is kept, never deleted, and systemd ignores it under the new
    name because the name no longer ends in a unit suffix or ``.conf``.
    """
    return ctx.move_aside(node_path)


UNDO_VERBS = {"enable": "disable", "disable": "enable", "start": "stop", "stop": "start"}


def systemctl(ctx: FixContext, *args: str) -> None:
    """Run ``systemctl [--root] ARGS`` through the fix context; raise FixError when it fails."""
    verb = UNDO_VERBS.get(args[0]) if args else None
    ctx.systemctl(*args, undo=(verb, *args[1:]) if verb else None)


def live_systemd(target: Target) -> bool:
    """Tell whether the node's systemd runs, so reloads and stops apply now."""
    return not target.root and target.systemd_running()
