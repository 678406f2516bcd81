"""Check and stop the background processes the lab started, by pid."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

logger = logging.getLogger("mesh_compliance.lab")

STOP_TIMEOUT_SECONDS = 10

# Children started by this Python process, kept so they can be reaped and do
# not linger as zombies that still look alive under /proc.
_children: dict[int, subprocess.Popen] = {}


def adopt(process: subprocess.Popen) -> None:
    _children[process.pid] = process


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def command_line(pid: int) -> str:
    """Return the pid's command line with spaces between arguments, or "" if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def is_alive(pid: int | None, expected_text: str | None = None) -> bool:
    """Return whether ``pid`` runs (zombies excluded) and its command line contains ``expected_text``.

    ``expected_text`` guards against a pid that the kernel has reused for an
    unrelated process after the lab's own process ended.
    """
    if not pid:
        return False
    _reap(pid)

    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        return False

    return expected_text is None or expected_text in command_line(pid)


def terminate(pid: int | None, expected_text: str | None = None) -> bool:
    """Send SIGTERM to ``pid``, then SIGKILL after a timeout; return whether it was running."""
    if not is_alive(pid, expected_text):
        return False

    logger.debug("send SIGTERM to pid %d", pid)
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, STOP_TIMEOUT_SECONDS):
        return True

    logger.warning("pid %d still runs %d s after SIGTERM; sending SIGKILL", pid, STOP_TIMEOUT_SECONDS)
    _signal(pid, signal.SIGKILL)
    _wait_gone(pid, STOP_TIMEOUT_SECONDS)
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)
