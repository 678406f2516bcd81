"""Run external commands with a redacted debug trace."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from mesh_compliance.lab.errors import LabError

logger = logging.getLogger("mesh_compliance.lab")

MASK = "<redacted>"

# initdb, pg_ctl and postgres reject root, so the lab runs them as this user.
UNPRIVILEGED_USER = "nobody"


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_unprivileged(args: Sequence[str]) -> list[str]:
    """Prefix ``args`` with runuser when the lab runs as root."""
    if running_as_root():
        return ["runuser", "-u", UNPRIVILEGED_USER, "--", *args]
    return list(args)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def run(
    args: Sequence[str],
    *,
    secrets: Iterable[str] = (),
    cwd: str | Path | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` and return the result, raising LabError on a non-zero exit if ``check`` is set.

    Values in ``secrets`` are masked in the debug trace and in error messages.
    """
    secrets = tuple(secrets)
    command_line = redact(shlex.join(args), secrets)
    logger.debug("run: %s", command_line)

    try:
        result = subprocess.run(
            list(args),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {args[0]}; install the package that provides it") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:g} s: {command_line}") from exc

    logger.debug("exit %d: %s", result.returncode, command_line)
    if check and result.returncode != 0:
        output = redact((result.stderr or result.stdout).strip(), secrets)
        last_line = output.splitlines()[-1] if output else "no output"
        raise LabError(f"command failed with exit {result.returncode}: {command_line}: {last_line}")
    return result
