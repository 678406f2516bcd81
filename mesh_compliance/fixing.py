"""What fixers stand on: the fix context, backups and atomic file writes.

A fixer reads the actual state, compares it with the site, applies only the
difference and reports each change. A file is copied next to itself before
it is replaced. A Consul object is written to the backup directory as JSON
before it is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mesh_compliance.consul import ConsulClient
from mesh_compliance.errors import FixError
from mesh_compliance.log import logger
from mesh_compliance.redact import redact
from mesh_compliance.site import Site
from mesh_compliance.target import Target

# Changes that need an explicit --allow KIND before a fixer may make them.
OPT_IN_KINDS = {
    "remove-package": "remove (purge) a package that must be absent",
    "remove-unit-override": "move aside an admin copy or drop-in of the gateway unit, kept as .bak",
    "delete-token": "delete ACL tokens linked to the gateway policy, in the decommissioned profile",
}


class FixRefused(Exception):
    """The fixer will not act: an opt-in or an operator-supplied value is missing."""


@dataclass(frozen=True)
class Change:
    object: str
    action: str
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.action} {self.object}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class FixContext:
    site: Site
    consul: ConsulClient
    target: Target | None
    allow: frozenset[str]
    backup_dir: Path
    run_id: str
    changes: list[Change] = field(default_factory=list)

    def changed(self, obj: str, action: str, detail: str = "") -> None:
        change = Change(obj, action, redact(detail))
        logger.info("fix: %s", change.describe())
        self.changes.append(change)

    def require_opt_in(self, kind: str) -> None:
        if kind not in self.allow:
            raise FixRefused(f"this fix needs the explicit opt-in --allow={kind} ({OPT_IN_KINDS[kind]})")

    def require_target(self) -> Target:
        if self.target is None:
            raise FixError("this fix changes the node, but no node is under audit")
        return self.target

    # -- backups ---------------------------------------------------------

    def keep_consul_object(self, kind: str, name: str, obj) -> Path:
        """Write the previous version of a Consul object before it is replaced."""
        folder = self.backup_dir / self.run_id / "consul"
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.backup_dir / self.run_id, 0o700)
        path = folder / f"{kind}--{_safe(name)}.json"
        path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        logger.info("fix: kept previous %s %s in %s", kind, name, path)
        return path

    def keep_file(self, node_path: str) -> str | None:
        """Copy a node file next to itself, keeping owner and mode; return the copy's path."""
        target = self.require_target()
        local = target.path(node_path)
        if not os.path.lexists(local):
            return None
        _require_local(target)
        backup = _free_name(local, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        shutil.copy2(local, backup)
        stat = os.stat(local)
        os.chown(backup, stat.st_uid, stat.st_gid)
        logger.info("fix: backed up %s to %s", local, backup)
        return backup

    def write_file(self, node_path: str, content: str, *, owner: str, group: str, mode: int) -> None:
        """Atomically replace a node file: temp file in the same directory, fsync, rename."""
        target = self.require_target()
        _require_local(target)
        uid, gid = _ids(target, owner, group)
        local = target.path(node_path)
        directory = os.path.dirname(local)
        if not os.path.isdir(directory):
            raise FixError(f"directory {directory} does not exist; create it before this fix can write {node_path}")

        handle, temporary = tempfile.mkstemp(prefix=".mesh-compliance-", dir=directory)
        try:
            os.fchmod(handle, mode)
            os.fchown(handle, uid, gid)
            os.write(handle, content.encode("utf-8"))
            os.fsync(handle)
        except OSError as exc:
            os.close(handle)
            os.unlink(temporary)
            raise FixError(f"cannot write {local}: {exc.strerror}") from exc
        os.close(handle)
        os.replace(temporary, local)
        _fsync_directory(directory)


def _require_local(target: Target) -> None:
    # NOTE: file writes go through the runner's own filesystem, so they need
    # the local backend (optionally with --root). Remote writes would need a
    # channel that keeps secrets off command lines.
    if target.host.backend.NAME != "local":
        raise FixError(f"file fixes are supported on the local backend only, not on {target.name}")


def _ids(target: Target, owner: str, group: str) -> tuple[int, int]:
    account = target.account(owner)
    gid = target.group_id(group)
    if account is None:
        raise FixError(f"user {owner} does not exist on {target.name}; create the account first")
    if gid is None:
        raise FixError(f"group {group} does not exist on {target.name}; create the group first")
    return account.uid, gid


def _free_name(path: str, stamp: str) -> str:
    """Return ``path.STAMP.bak``, or with a counter when that backup already exists."""
    candidate, counter = f"{path}.{stamp}.bak", 1
    while os.path.lexists(candidate):
        candidate = f"{path}.{stamp}-{counter}.bak"
        counter += 1
    return candidate


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
