"""Checks of what an account of the audited node can really do with a path: search it, read it.

Permission bits alone do not decide that: parent directories, supplementary
groups, ACLs and mandatory access control all take part. So the test runs as
that account (``runuser`` on the node, ``setpriv`` with the root's own ids
under --root) and lets the kernel decide with ``test -x`` and ``test -r``.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from mesh_compliance.errors import TargetError
from mesh_compliance.target import Target

@dataclass(frozen=True)
class TreeEntry:
    """One path below a directory, as ``find -printf`` reports it."""

    path: str            # the node path
    uid: int
    gid: int
    kind: str            # find's %y: "d" directory, "f" regular file, "l" symbolic link, ...
    mode: int


def ancestors(node_path: str) -> list[str]:
    """Return "/" and every directory down to ``node_path``, in that order."""
    normalized = posixpath.normpath("/" + node_path.lstrip("/"))
    chain = ["/"]
    current = "/"
    for part in [part for part in normalized.split("/") if part]:
        current = posixpath.join(current, part)
        chain.append(current)
    return chain


def can_search(target: Target, user: str, node_path: str) -> bool:
    """True when ``user`` may search (traverse) the directory ``node_path``."""
    return _test_as(target, user, "-x", node_path)


def can_read(target: Target, user: str, node_path: str) -> bool:
    """True when ``user`` may open ``node_path`` for reading."""
    return _test_as(target, user, "-r", node_path)


def unsearchable(target: Target, user: str, node_path: str) -> list[str]:
    """Return the directories from "/" down to ``node_path`` that ``user`` cannot search."""
    return [directory for directory in ancestors(node_path) if not can_search(target, user, directory)]


def _test_as(target: Target, user: str, flag: str, node_path: str) -> bool:
    _require_root_reachable(target, user)
    result = target.run_as(user, "test", flag, target.path(node_path))
    if result.rc == 0:
        return True
    # test exits 1 without output for "no". Any other result means runuser
    # or setpriv failed, which says nothing about the path.
    if result.rc == 1 and not result.stderr.strip():
        return False
    raise TargetError(f"cannot run test {flag} {node_path} as {user} on {target.name}: rc={result.rc} {result.stderr.strip()}")


def _require_root_reachable(target: Target, user: str) -> None:
    """Under --root, raise TargetError when the runner's directories above the root block the user."""
    if not target.root:
        return
    above = posixpath.dirname(target.root) or "/"
    result = target.run_as(user, "test", "-x", above)
    if result.rc != 0:
        raise TargetError(
            f"{user} of {target.root} cannot search {above} on the runner, so no path below the root can be "
            f"tested as that user; make the directories above {target.root} searchable (for example mode 0755)"
        )


def tree(target: Target, node_path: str) -> list[TreeEntry]:
    """List ``node_path`` and everything below it without following symbolic links."""
    local = target.path(node_path)
    result = target.run("find", "-P", local, "-printf", r"%U %G %y %m %p\0")
    if result.rc != 0:
        raise TargetError(f"cannot list {local} on {target.name}: {result.stderr.strip()}")

    entries = []
    for record in filter(None, result.stdout.split("\0")):
        uid, gid, kind, mode, path = record.split(" ", 4)
        entries.append(TreeEntry(_node_path(target, path), int(uid), int(gid), kind, int(mode, 8)))
    return entries


def _node_path(target: Target, local: str) -> str:
    if not target.root:
        return local
    relative = posixpath.relpath(local, target.root)
    return "/" if relative == "." else "/" + relative
