"""Generate secrets and store them in files only their owner can read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_BYTES = 24


def generate_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_secret_file(path: Path, value: str) -> Path:
    """Write ``value`` plus a newline to ``path`` with mode 0600 from creation on."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)
    return path


def read_secret_file(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()
