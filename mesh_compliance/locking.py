"""One fixing run at a time per target; audits are never blocked.

These locks are taken before any fixer runs:
- a file lock on each node (``flock`` on ``/run/lock/carbonio-mesh-compliance.lock``,
  below the root directory with ``--root``), so two runs against the same node
  never both change it. A remote node's lock is held through its connection
  (mesh_compliance.node_lock);
- a lock key in Consul KV, created with check-and-set index 0, so two runs
  against the same cluster from different machines never both change it. The
  key records who holds it and until when; an expired key is taken over.

A second ``--fix`` waits up to ``--lock-timeout`` seconds, then stops with a
message naming the holder. Read-only audits take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass

from mesh_compliance.consul import ConsulClient
from mesh_compliance.log import logger

LOCK_FILE = "/run/lock/carbonio-mesh-compliance.lock"
LOCK_KEY = "carbonio-mesh-compliance/fix-lock"
POLL_SECONDS = 0.5

# A holder that crashed leaves the KV key behind, so the key expires this
# many seconds after it was taken. A fixing run longer than that can lose it.
KV_LEASE_SECONDS = 900


class LockBusy(Exception):
    """Another fixing run holds the lock; the message names it."""


@dataclass
class FixLock:
    run_id: str
    file_path: str
    consul: ConsulClient | None
    timeout: float
    _handle: int | None = None
    _kv_index: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        self._acquire_file(deadline)
        try:
            if self.consul is not None:
                self._acquire_kv(deadline)
        except BaseException:
            self._release_file()
            raise

    def release(self) -> None:
        try:
            if self.consul is not None and self._kv_index is not None:
                self._release_kv()
        finally:
            self._release_file()

    # -- node file lock --------------------------------------------------

    def _acquire_file(self, deadline: float) -> None:
        os.makedirs(os.path.dirname(self.file_path), exist_ok=True)
        handle = os.open(self.file_path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(handle)
                    os.close(handle)
                    raise LockBusy(f"another fixing run holds {self.file_path} ({holder}); "
                                   "wait for it to finish or raise --lock-timeout") from None
                time.sleep(POLL_SECONDS)

        os.ftruncate(handle, 0)
        os.write(handle, json.dumps(_holder(self.run_id)).encode())
        self._handle = handle
        logger.debug("lock: holding %s", self.file_path)

    def _release_file(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None

    # -- cluster lock in Consul KV ---------------------------------------

    def _acquire_kv(self, deadline: float) -> None:
        while True:
            holder = {**_holder(self.run_id), "expires": time.time() + KV_LEASE_SECONDS}
            exists, value, index = self.consul.kv_read(LOCK_KEY)
            if not exists or _expired(value):
                if self.consul.kv_put(LOCK_KEY, json.dumps(holder), cas=index if exists else 0):
                    self._kv_index = self.consul.kv_read(LOCK_KEY)[2]
                    logger.debug("lock: holding Consul key %s", LOCK_KEY)
                    return
            elif time.monotonic() >= deadline:
                raise LockBusy(f"another fixing run holds the Consul key {LOCK_KEY} ({describe_holder(value)}); "
                               "wait for it to finish or raise --lock-timeout")
            time.sleep(POLL_SECONDS)

    def _release_kv(self) -> None:
        exists, value, index = self.consul.kv_read(LOCK_KEY)
        if exists and _owned_by(value, self.run_id):
            self.consul.request("DELETE", f"/v1/kv/{LOCK_KEY}", params={"cas": str(index)})
        self._kv_index = None


@dataclass
class RunLocks:
    """The locks of one fixing run, taken in order and released in reverse."""

    locks: list

    def acquire(self) -> None:
        taken = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()


def lock_for(config, run_id: str, settings, targets: list) -> RunLocks:
    """Return the locks of a fixing run: the runner's file lock, the Consul key and each remote node's file lock.

    The runner's lock file lies below --root and covers the local nodes.
    """
    from mesh_compliance.node_lock import RemoteNodeLock

    timeout = config.option.mesh_lock_timeout
    root = config.option.mesh_root or "/"
    consul = ConsulClient(settings) if settings.token else None
    locks: list = [FixLock(run_id, os.path.join(root, LOCK_FILE.lstrip("/")), consul, timeout)]
    for target in targets:
        if not target.is_local:
            locks.append(RemoteNodeLock(target, _holder(run_id), timeout, LOCK_FILE))
    return RunLocks(locks)


def _holder(run_id: str) -> dict:
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _read_holder(handle: int) -> str:
    os.lseek(handle, 0, os.SEEK_SET)
    return describe_holder(os.read(handle, 4096).decode(errors="replace"))


def describe_holder(value: str | None) -> str:
    try:
        holder = json.loads(value or "")
    except json.JSONDecodeError:
        return "holder unknown"
    if not isinstance(holder, dict):
        return "holder unknown"
    return f"run {holder.get('run_id')} on {holder.get('host')} pid {holder.get('pid')}"


def _expired(value: str | None) -> bool:
    try:
        return float(json.loads(value or "{}").get("expires", 0)) < time.time()
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return True


def _owned_by(value: str | None, run_id: str) -> bool:
    try:
        return json.loads(value or "{}").get("run_id") == run_id
    except (json.JSONDecodeError, AttributeError):
        return False
