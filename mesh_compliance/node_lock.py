"""The fixing run's file lock on a remote node, held through the node's own connection.

A shell on the node opens the lock file, waits for ``flock`` on it, writes
the holder, prints ``locked`` and then reads its stdin until the runner
closes it. The lock is released when that shell exits: on ``release``, or
when the connection drops because the runner died.
"""

from __future__ import annotations

import json
import shlex
import subprocess

from mesh_compliance.errors import TargetError
from mesh_compliance.locking import LockBusy, describe_holder
from mesh_compliance.log import logger
from mesh_compliance.node_input import ssh_argv
from mesh_compliance.target import Target, ssh_failed, unreachable_errors

BUSY_EXIT = 75

# $1 lock file, $2 seconds to wait, $3 holder record. fd 9 carries the lock,
# and cat inherits it, so the lock lasts as long as cat reads its stdin.
_HOLD = f'''set -eu
mkdir -p -- "$(dirname -- "$1")"
exec 9<>"$1"
if ! flock -w "$2" 9; then
    printf 'busy %s\\n' "$(cat -- "$1")"
    exit {BUSY_EXIT}
fi
printf '%s' "$3" > "$1"
echo locked
exec cat > /dev/null
'''


class RemoteNodeLock:
    def __init__(self, target: Target, holder: dict, timeout: float, lock_file: str):
        self.target = target
        self.path = target.path(lock_file)
        self.holder = holder
        self.timeout = timeout
        self._process: subprocess.Popen | None = None
        self._channel = None

    def acquire(self) -> None:
        """Take the lock, or raise LockBusy after the timeout.

        An unreachable node, or a connection type without stdin, is logged and
        left unlocked. Any other failure raises TargetError.
        """
        backend = self.target.host.backend
        command = backend.get_command(
            shlex.join(["sh", "-c", _HOLD, "lock", self.path, str(int(self.timeout)), json.dumps(self.holder)]))
        try:
            if backend.NAME in ("ssh", "safe-ssh"):
                first_line = self._start_ssh(backend, command)
            elif backend.NAME == "paramiko":
                first_line = self._start_paramiko(backend, command)
            else:
                first_line = None
        except unreachable_errors() as exc:
            first_line = f"unreachable: {exc}"
        if first_line is None:
            # NOTE: other testinfra backends have no stdin channel to hold the lock with.
            logger.warning("lock: node %s is not locked, because its %s:// connection cannot hold a lock",
                           self.target.name, backend.NAME)
            return

        if first_line == "locked":
            logger.debug("lock: holding %s on %s", self.path, self.target.name)
            return
        self.release()
        if first_line.startswith("unreachable") or ssh_failed(first_line):
            # Every control on the node is ERROR, so no fixer changes it.
            logger.warning("lock: node %s is not locked, because it is unreachable: %s", self.target.name, first_line)
            return
        if first_line.startswith("busy"):
            raise LockBusy(f"lock {self.path} on {self.target.name} is busy: another fixing run has it "
                           f"({describe_holder(first_line.removeprefix('busy').strip())}); "
                           "wait for it to finish or raise --lock-timeout")
        raise TargetError(f"cannot lock {self.path} on node {self.target.name}: {first_line or 'no output'}")

    def release(self) -> None:
        if self._process is not None:
            self._process.stdin.close()
            self._process.wait(timeout=30)
            self._process = None
        if self._channel is not None:
            try:
                self._channel.shutdown_write()
                self._channel.recv_exit_status()
            except unreachable_errors() as exc:
                logger.debug("lock: connection to %s closed before release: %s", self.target.name, exc)
            self._channel.close()
            self._channel = None

    def _start_ssh(self, backend, command: str) -> str:
        self._process = subprocess.Popen([*ssh_argv(backend), backend.host.name, command], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._process.stdout.readline().strip()
        if not line:
            # stdout closed before "locked": ssh or the shell exited, and stderr contains the reason.
            self._process.wait(timeout=30)
            line = self._process.stderr.read().strip()[:300]
        return line

    def _start_paramiko(self, backend, command: str) -> str:
        self._channel = backend.client.get_transport().open_session()
        self._channel.exec_command(command)
        line = self._channel.makefile("r").readline().strip()
        if not line:
            self._channel.recv_exit_status()
            line = self._channel.makefile_stderr("r").read().strip()[:300]
        return line
