"""Access to the audited node: a testinfra host plus an optional root directory.

With ``--root DIR`` the node's filesystem is mounted at DIR (an image, a
chroot, the lab). Paths are then resolved below DIR, users and groups are
looked up in DIR's own passwd and group files, and the real tools are pointed
at DIR through their own root options (``systemctl --root``,
``dpkg-query --admindir``, ``rpm --root``).
"""

from __future__ import annotations

import posixpath
import shlex
import sys
from dataclasses import dataclass

from mesh_compliance.errors import TargetError
from mesh_compliance.log import logger
from mesh_compliance.node_input import run_with_input


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Return the exceptions a backend raises when its node cannot be reached.

    paramiko's own exception counts only once testinfra's paramiko backend
    has imported it. Importing it here would load paramiko and its
    cryptography libraries into every run.
    """
    paramiko_errors = sys.modules.get("paramiko.ssh_exception")
    if paramiko_errors is None:
        return (OSError, EOFError)
    return (OSError, EOFError, paramiko_errors.SSHException)

SSH_FAILURES = ("Connection timed out", "Connection refused", "No route to host", "Could not resolve hostname",
                "Permission denied (publickey", "Connection closed by", "kex_exchange_identification", "Host key verification failed")


def ssh_failed(stderr: str) -> bool:
    """True when ssh itself failed (exit 255) rather than the remote command."""
    return any(marker in stderr for marker in SSH_FAILURES)


# testinfra hosts (by id, since testinfra caches one per connection) that ran a command once in this process.
_REACHABLE: set[int] = set()


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class FileState:
    path: str
    exists: bool
    is_file: bool = False
    is_dir: bool = False
    owner: str = ""
    group: str = ""
    uid: int = -1
    gid: int = -1
    mode: int = 0
    size: int = 0

    def describe(self) -> str:
        if not self.exists:
            return f"{self.path}: absent"
        return f"{self.path}: {self.owner}:{self.group} {self.mode:04o} {self.size} bytes"


class Target:
    """One audited node."""

    def __init__(self, host, root: str | None = None, label: str | None = None):
        self.host = host
        self.root = root.rstrip("/") if root else None
        self.label = label
        # passwd and group, read once; a fixer that changes accounts calls forget_accounts.
        self._databases: dict[str, list[list[str]]] = {}

    @property
    def name(self) -> str:
        backend = self.host.backend
        label = self.label or (backend.get_pytest_id() if hasattr(backend, "get_pytest_id") else "local")
        return f"{label} root={self.root}" if self.root else label

    def path(self, node_path: str) -> str:
        """Return where ``node_path`` of the node lives for the runner's tools."""
        if not self.root:
            return node_path
        return posixpath.join(self.root, node_path.lstrip("/"))

    # -- commands --------------------------------------------------------

    def run(self, *argv: str):
        """Run a command on the node; the result keeps rc, stdout and stderr."""
        command = shlex.join(argv)
        try:
            result = self.host.run(command)
        except unreachable_errors() as exc:
            raise TargetError(f"node {self.name} is unreachable: {exc}") from exc
        except RuntimeError as exc:
            # testinfra's ssh backend raises with the CommandResult when ssh exits 255.
            failed = exc.args[0] if exc.args else None
            stderr = getattr(failed, "stderr", "") or str(exc)
            raise TargetError(f"node {self.name} is unreachable over SSH: {stderr.strip()[:300]}") from exc
        logger.debug("target %s: %s -> rc=%s", self.name, command, result.rc)
        self._raise_if_ssh_failed(result)
        return result

    def run_with_input(self, *argv: str, data: bytes):
        """Run a command on the node with ``data`` on its stdin, which never appears in a log or process list."""
        command = shlex.join(argv)
        try:
            result = run_with_input(self.host, command, data)
        except unreachable_errors() as exc:
            raise TargetError(f"node {self.name} is unreachable: {exc}") from exc
        logger.debug("target %s: %s (%d bytes on stdin) -> rc=%s", self.name, command, len(data), result.rc)
        self._raise_if_ssh_failed(result)
        return result

    def _raise_if_ssh_failed(self, result) -> None:
        """Raise TargetError when ssh itself failed (exit 255 with ssh's own message), not the command."""
        if result.rc == 255 and self.host.backend.NAME in ("ssh", "safe-ssh") and ssh_failed(result.stderr):
            raise TargetError(f"node {self.name} is unreachable over SSH: {result.stderr.strip()[:300]}")

    def check_reachable(self) -> None:
        """Raise TargetError when the node cannot be reached; a reachable node is not asked again.

        A control that needs nothing from its node in some configurations
        would otherwise pass on a node that is down.
        """
        if self.is_local or id(self.host) in _REACHABLE:
            return
        self.run("true")
        _REACHABLE.add(id(self.host))

    def exists_command(self, name: str) -> bool:
        return self.host.exists(name)

    @property
    def is_local(self) -> bool:
        return self.host.backend.NAME == "local"

    def run_as(self, user: str, *argv: str):
        """Run a command as ``user`` of the node, with that user's groups.

        Under --root the ids come from the root's own passwd and group files
        and setpriv switches to them, since the runner's account names may differ.
        """
        if not self.root:
            return self.run("runuser", "-u", user, "--", *argv)

        account = self.account(user)
        if account is None:
            raise TargetError(f"user {user} does not exist in {self.root}/etc/passwd")
        groups = sorted({account.gid, *self.supplementary_groups(user)})
        return self.run(
            "setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
            f"--groups={','.join(map(str, groups))}", "--", *argv,
        )

    def supplementary_groups(self, user: str) -> list[int]:
        found = []
        for fields in self._database("group"):
            if len(fields) >= 4 and user in fields[3].split(","):
                found.append(int(fields[2]))
        return found

    def systemd_running(self) -> bool:
        """True when systemd manages the node now (never for a root directory)."""
        if self.root:
            return False
        state = self.run("systemctl", "is-system-running").stdout.strip()
        return state not in ("offline", "unknown", "")

    # -- files -----------------------------------------------------------

    def file_state(self, node_path: str) -> FileState:
        path = self.path(node_path)
        result = self.run("stat", "-L", "-c", "%F|%u|%g|%a|%s", path)
        if result.rc != 0:
            if "No such file" in result.stderr:
                return FileState(node_path, exists=False)
            raise TargetError(f"cannot stat {path} on {self.name}: {result.stderr.strip()}")

        kind, uid, gid, mode, size = result.stdout.strip().split("|")
        uid, gid = int(uid), int(gid)
        return FileState(
            node_path, True,
            is_file=kind.startswith("regular"), is_dir=kind == "directory",
            owner=self.user_name(uid), group=self.group_name(gid),
            uid=uid, gid=gid, mode=int(mode, 8), size=int(size),
        )

    def read_text(self, node_path: str) -> str | None:
        """Return a file's content, or None when it does not exist."""
        path = self.path(node_path)
        result = self.run("cat", "--", path)
        if result.rc == 0:
            return result.stdout
        if "No such file" in result.stderr:
            return None
        raise TargetError(f"cannot read {path} on {self.name}: {result.stderr.strip()}")

    # -- accounts --------------------------------------------------------

    def account(self, name: str) -> Account | None:
        for fields in self._database("passwd"):
            if fields[0] == name and len(fields) >= 7:
                return Account(fields[0], int(fields[2]), int(fields[3]), fields[5], fields[6])
        return None

    def group_id(self, name: str) -> int | None:
        for fields in self._database("group"):
            if fields[0] == name and len(fields) >= 3:
                return int(fields[2])
        return None

    def user_name(self, uid: int) -> str:
        for fields in self._database("passwd"):
            if len(fields) >= 3 and fields[2] == str(uid):
                return fields[0]
        return str(uid)

    def group_name(self, gid: int) -> str:
        for fields in self._database("group"):
            if len(fields) >= 3 and fields[2] == str(gid):
                return fields[0]
        return str(gid)

    def forget_accounts(self) -> None:
        """Drop the cached passwd and group entries, after a command that may have changed them."""
        self._databases.clear()

    def _database(self, name: str) -> list[list[str]]:
        if name not in self._databases:
            self._databases[name] = self._read_database(name)
        return self._databases[name]

    def _read_database(self, name: str) -> list[list[str]]:
        if self.root:
            text = self.read_text(f"/etc/{name}") or ""
        else:
            result = self.run("getent", name)
            if result.rc not in (0, 2):
                raise TargetError(f"getent {name} failed on {self.name}: {result.stderr.strip()}")
            text = result.stdout
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]

    # -- systemd ---------------------------------------------------------

    def systemctl(self, *args: str):
        root = (f"--root={self.root}",) if self.root else ()
        return self.run("systemctl", *root, *args)

    def unit_enabled_state(self, unit: str) -> str:
        """Return what ``systemctl is-enabled`` prints (enabled, disabled, ...)."""
        result = self.systemctl("is-enabled", unit)
        state = result.stdout.strip()
        if state:
            return state
        if "No such file" in result.stderr or "not found" in result.stderr:
            return "not-found"
        raise TargetError(f"systemctl is-enabled {unit} gave no state on {self.name}: {result.stderr.strip()}")

    # -- packages --------------------------------------------------------

    def dpkg_admindir(self) -> str:
        return self.path("/var/lib/dpkg")

    def dpkg_root_args(self) -> tuple[str, ...]:
        """Return dpkg's root options; without --log, dpkg writes to the host's log."""
        if not self.root:
            return ()
        return (f"--root={self.root}", f"--admindir={self.dpkg_admindir()}", f"--log={self.path('/var/log/dpkg.log')}")

    def rpm_root_args(self) -> tuple[str, ...]:
        return (f"--root={self.root}",) if self.root else ()
