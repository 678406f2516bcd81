"""The fix context that fixers use: backups, journalled and planned changes.

A fixer reads the actual state, compares it with the site, applies only the
difference and reports each change. Every change goes through this context:
- in a dry run (``--fix --dry-run``) it is recorded as a planned change with a
  before/after diff and not made;
- in a real run it is made, and the journal records the state before it and
  how ``--rollback`` undoes it. A file is copied next to itself before it is
  replaced; a Consul object is also written to the backup directory as JSON.
File changes run on the node through its own connection (mesh_compliance.node_writes).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mesh_compliance import node_writes
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
        # Fixers report actions in the past tense, so a dry run marks them as not done.
        change = Change(obj, ("(dry run, not done) " + action) if self.dry_run else action, redact(detail))
        logger.info("fix: %s", change.describe())
        self.changes.append(change)

    def require_opt_in(self, kind: str) -> None:
        if kind not in self.allow:
            raise FixRefused(f"this fix needs the explicit opt-in --allow={kind} ({OPT_IN_KINDS[kind]})")

    def account_ids(self, user: str, group: str) -> tuple[int, int]:
        """Return the uid of ``user`` and the gid of ``group`` on the node, which must both exist."""
        target = self.require_target()
        account = target.account(user)
        gid = target.group_id(group)
        if account is None:
            raise FixError(f"user {user} does not exist on {target.name}; "
                           "the fixer of control gateway-account creates it, or create it by hand")
        if gid is None:
            raise FixError(f"group {group} does not exist on {target.name}; "
                           "the fixer of control gateway-account creates it, or create it by hand")
        return account.uid, gid

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
        path = target.path(node_path)
        if not node_writes.exists(target, path):
            return None
        if self.dry_run:
            return f"{path}.<time>.bak"
        backup = node_writes.copy_aside(target, path, _stamp())
        logger.info("fix: backed up %s to %s on %s", path, backup, target.name)
        return backup

    def write_file(self, node_path: str, content: str, *, owner: str, group: str, mode: int) -> str | None:
        """Atomically replace a node file: temp file in the same directory, fsync, rename.

        The previous file is copied next to itself first; its copy's path is returned.
        """
        target = self.require_target()
        path = target.path(node_path)
        before = target.read_text(node_path)

        if self.dry_run:
            self.log.plan("file", node_path, "write" if before is not None else "create",
                          _mask(before), _mask(content) + f"\n(owner {owner}:{group}, mode {mode:04o})")
            return None

        uid, gid = self.account_ids(owner, group)

        backup = self.keep_file(node_path) if before is not None else None
        node_writes.replace(target, path, content, uid, gid, mode)
        undo = {"restore_file": path, "backup": backup} if backup else {"remove_file": path}
        self.log.journal_entry(kind="file", obj=node_path, action="write", before=_digest_text(before),
                               after=_digest_text(content), backup=backup, undo=undo)
        return backup

    def move_aside(self, node_path: str) -> str:
        """Rename a node file to ``<file>.<UTC time>.bak`` (kept, never deleted); return that path."""
        target = self.require_target()
        path = target.path(node_path)
        if self.dry_run:
            planned = f"{node_path}.{_stamp()}.bak"
            self.log.plan("file", node_path, f"move aside to {planned}")
            return planned

        backup = node_writes.move_aside(target, path, _stamp())
        node_backup = path_below_root(target, backup)
        self.log.journal_entry(kind="file", obj=node_path, action=f"moved to {node_backup}",
                               backup=backup, undo={"restore_file": path, "backup": backup})
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
        target.forget_accounts()
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




def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def path_below_root(target: Target, path: str) -> str:
    """Return the node path of ``path``, a path the node's tools see below ``--root``."""
    if target.root and path.startswith(target.root + "/"):
        return path[len(target.root):]
    return path


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
