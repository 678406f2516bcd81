"""The fix context that fixers use: backups, journalled and planned changes.

A fixer reads the actual state, compares it with the site, applies only the
difference and reports each change. Every change goes through this context:
- in a dry run (``--fix --dry-run``) it is recorded as a planned change with a
  before/after diff and not made;
- in a real run it is made, and the journal records the state before it and
  how ``--rollback`` undoes it. A file is copied next to itself before it is
  replaced; a Consul object is also written to the backup directory as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mesh_compliance.changes import AGENT_UNITS, ChangeLog, GuardedConsul
from mesh_compliance.errors import FixError
from mesh_compliance.log import logger
from mesh_compliance.redact import known_secrets, redact
from mesh_compliance.site import Site
from mesh_compliance.target import Target

# Changes that need an explicit --allow KIND before a fixer may make them.
OPT_IN_KINDS = {
    "remove-package": "remove (purge) a package that must be absent",
    "deregister-service": "remove a catalog registration whose ServiceID differs from the site's",
    "remove-unit-override": "move aside an admin copy or drop-in of the gateway unit, kept as .bak",
    "delete-token": "delete ACL tokens linked to the gateway policy, in the decommissioned profile",
    "create-db-role": "create the database role and database named in KV, with the site's DB admin credentials",
}


class FixRefused(Exception):
    """The fixer will not act: an opt-in, a prerequisite or an operator-supplied value is missing."""


@dataclass(frozen=True)
class Change:
    object: str
    action: str
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.action} {self.object}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class CommandResult:
    """Result of a planned command in a dry run, shaped like testinfra's result."""

    rc: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass
class FixContext:
    site: Site
    consul: GuardedConsul
    target: Target | None
    allow: frozenset[str]
    backup_dir: Path
    run_id: str
    # A context made outside a run (for example by a test) applies its
    # changes and journals nothing.
    log: ChangeLog = field(default_factory=lambda: ChangeLog("", dry_run=False, journal=None))
    changes: list[Change] = field(default_factory=list)

    @property
    def dry_run(self) -> bool:
        return self.log.dry_run

    def changed(self, obj: str, action: str, detail: str = "") -> None:
        change = Change(obj, ("would " + action) if self.dry_run else action, redact(detail))
        logger.info("fix: %s", change.describe())
        self.changes.append(change)

    def require_opt_in(self, kind: str) -> None:
        if kind not in self.allow:
            raise FixRefused(f"this fix needs the explicit opt-in --allow={kind} ({OPT_IN_KINDS[kind]})")

    def require_target(self) -> Target:
        if self.target is None:
            raise FixError("this fix changes the node, but no node is under audit")
        return self.target

    # -- Consul backups -------------------------------------------------------

    def keep_consul_object(self, kind: str, name: str, obj) -> Path | None:
        """Write the previous version of a Consul object before it is replaced."""
        if self.dry_run:
            return None
        folder = self.backup_dir / self.run_id / "consul"
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.backup_dir / self.run_id, 0o700)
        path = folder / f"{kind}--{_safe(name)}.json"
        path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        logger.info("fix: kept previous %s %s in %s", kind, name, path)
        return path

    # -- files ------------------------------------------------------------------

    def keep_file(self, node_path: str) -> str | None:
        """Copy a node file next to itself, keeping owner and mode; return the copy's path."""
        target = self.require_target()
        local = target.path(node_path)
        if not os.path.lexists(local):
            return None
        if self.dry_run:
            return f"{local}.<time>.bak"
        _require_local(target)
        backup = _free_name(local, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        shutil.copy2(local, backup)
        stat = os.stat(local)
        os.chown(backup, stat.st_uid, stat.st_gid)
        logger.info("fix: backed up %s to %s", local, backup)
        return backup

    def write_file(self, node_path: str, content: str, *, owner: str, group: str, mode: int) -> str | None:
        """Atomically replace a node file: temp file in the same directory, fsync, rename.

        The previous file is copied next to itself first; its copy's path is returned.
        """
        target = self.require_target()
        _require_local(target)
        local = target.path(node_path)
        before = _read(local)

        if self.dry_run:
            self.log.plan("file", node_path, "write" if before is not None else "create",
                          _mask(before), _mask(content) + f"\n(owner {owner}:{group}, mode {mode:04o})")
            return None

        uid, gid = _ids(target, owner, group)

        backup = self.keep_file(node_path) if before is not None else None
        _atomic_write(local, content, uid, gid, mode)
        undo = {"restore_file": local, "backup": backup} if backup else {"remove_file": local}
        self.log.journal_entry(kind="file", obj=node_path, action="write", before=_digest_text(before),
                               after=_digest_text(content), backup=backup, undo=undo)
        return backup

    def move_aside(self, node_path: str) -> str:
        """Rename a node file to ``<file>.<UTC time>.bak`` (kept, never deleted); return that path."""
        target = self.require_target()
        _require_local(target)
        local = target.path(node_path)
        backup = _free_name(local, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        node_backup = backup[len(target.root):] if target.root else backup
        if self.dry_run:
            self.log.plan("file", node_path, f"move aside to {node_backup}")
            return node_backup
        try:
            os.rename(local, backup)
        except OSError as exc:
            raise FixError(f"cannot move {local} aside: {exc.strerror}") from exc
        self.log.journal_entry(kind="file", obj=node_path, action=f"moved to {node_backup}",
                               backup=backup, undo={"restore_file": local, "backup": backup})
        return node_backup

    # -- commands and SQL ---------------------------------------------------------

    def run(self, *argv: str, undo: tuple[str, ...] | None = None):
        """Run a command that changes the node; ``undo`` is the command that reverses it."""
        target = self.require_target()
        _guard_agent(argv)
        if self.dry_run:
            self.log.plan("command", " ".join(argv), "run")
            return CommandResult()
        result = target.run(*argv)
        if result.rc != 0:
            raise FixError(f"{' '.join(argv)} failed on {target.name}: {(result.stderr or result.stdout).strip()}")
        self.log.journal_entry(kind="command", obj=" ".join(argv), action="ran",
                               undo={"argv": list(undo)} if undo else None)
        return result

    def systemctl(self, *args: str, undo: tuple[str, ...] | None = None):
        target = self.require_target()
        root = (f"--root={target.root}",) if target.root else ()
        return self.run("systemctl", *root, *args, undo=("systemctl", *root, *undo) if undo else None)

    def sql(self, conn, statement, shown: str) -> None:
        """Execute one administrative SQL statement; ``shown`` is its text with secrets masked."""
        if self.dry_run:
            self.log.plan("sql", shown, "execute")
            return
        logger.debug("db admin: %s", shown)
        conn.execute(statement)
        self.log.journal_entry(kind="sql", obj=shown, action="executed")


def _guard_agent(argv: tuple[str, ...]) -> None:
    if argv and argv[0] == "systemctl" and any(word in ("stop", "kill", "disable", "mask") for word in argv):
        if any(arg in AGENT_UNITS for arg in argv):
            raise FixError("refusing to stop or disable the Consul agent this run talks to")


def _require_local(target: Target) -> None:
    # NOTE: file writes go through the runner's own filesystem, so they need
    # the local backend (optionally with --root). Remote writes would need a
    # channel that keeps secrets off command lines.
    if not target.is_local:
        raise FixError(f"file fixes are supported on the local backend only, not on {target.name}")


def _ids(target: Target, owner: str, group: str) -> tuple[int, int]:
    account = target.account(owner)
    gid = target.group_id(group)
    if account is None:
        raise FixError(f"user {owner} does not exist on {target.name}; create the account first")
    if gid is None:
        raise FixError(f"group {group} does not exist on {target.name}; create the group first")
    return account.uid, gid


def _atomic_write(local: str, content: str, uid: int, gid: int, mode: int) -> None:
    directory = os.path.dirname(local)
    if not os.path.isdir(directory):
        raise FixError(f"directory {directory} does not exist; create it before this fix can write {local}")

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


def _read(local: str) -> str | None:
    try:
        with open(local, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _mask(text: str | None) -> str | None:
    if text is None:
        return None
    for secret in known_secrets():
        text = text.replace(secret, "<secret>")
    return text


def _digest_text(text: str | None) -> dict | None:
    """Describe file content for the journal: its digest, and the text unless it contains a secret."""
    if text is None:
        return None
    from mesh_compliance.journal import digest

    masked = _mask(text)
    return {"digest": digest(text), "text": masked if masked == text else None}


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

