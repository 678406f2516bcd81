"""A target root directory that useradd, dpkg and systemctl handle through their root options.

Nothing here touches the host's own accounts, dpkg database, log or units:
every tool gets the root directory (``--root``, ``--admindir``, ``--log``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mesh_compliance.lab.commands import run
from mesh_compliance.lab.errors import LabError

logger = logging.getLogger("mesh_compliance.lab")

PASSWD = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\nnogroup:*::\n"

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

NOLOGIN_SHELL = "/sbin/nologin"


class TargetRoot:
    """A directory laid out like a small Debian system."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __truediv__(self, relative: str) -> Path:
        """Return the host path of ``relative``, an absolute path inside the root."""
        return self.path / relative.lstrip("/")

    @property
    def dpkg_admindir(self) -> Path:
        return self / "/var/lib/dpkg"

    @property
    def dpkg_log(self) -> Path:
        return self / "/var/log/dpkg.log"

    def create(self) -> None:
        """Write the minimal files the tools need: accounts, dpkg database, systemd dirs."""
        for directory in (
            "/etc",
            "/var/lib/dpkg/info",
            "/var/lib/dpkg/updates",
            "/var/log",
            "/lib/systemd/system",
            "/etc/systemd/system",
            "/usr/bin",
            "/sbin",
        ):
            (self / directory).mkdir(parents=True, exist_ok=True)

        self._write("/etc/passwd", PASSWD, 0o644)
        self._write("/etc/group", GROUP, 0o644)
        self._write("/etc/shadow", SHADOW, 0o640)
        self._write("/etc/gshadow", GSHADOW, 0o640)
        self._write("/etc/os-release", OS_RELEASE, 0o644)
        self._write("/var/lib/dpkg/status", "", 0o644)
        self._write("/var/lib/dpkg/available", "", 0o644)

    def _write(self, relative: str, text: str, mode: int) -> None:
        path = self / relative
        path.write_text(text, encoding="utf-8")
        os.chmod(path, mode)

    # Accounts

    def add_system_user(self, name: str) -> None:
        """Create a system user and its group in the root's account files."""
        run(
            [
                "useradd",
                "--root", str(self.path),
                "--system",
                "--no-create-home",
                "--shell", NOLOGIN_SHELL,
                "--user-group",
                name,
            ]
        )

    def uid(self, name: str) -> int:
        """Return the uid of ``name`` from the root's etc/passwd."""
        return self._lookup_id("/etc/passwd", name)

    def gid(self, name: str) -> int:
        """Return the gid of ``name`` from the root's etc/group."""
        return self._lookup_id("/etc/group", name)

    def _lookup_id(self, relative: str, name: str) -> int:
        for line in (self / relative).read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == name:
                return int(fields[2])
        raise LabError(f"{name} not found in {self / relative}; create it with add_system_user first")

    def chown(self, relative: str, user: str, group: str) -> None:
        """Give a path inside the root to an account of the root, by its numeric ids."""
        os.chown(self / relative, self.uid(user), self.gid(group))

    # Packages

    def install_deb(self, deb_file: Path) -> None:
        """Install ``deb_file`` with the real dpkg, into the root's own database and log."""
        run(
            [
                "dpkg",
                f"--root={self.path}",
                f"--admindir={self.dpkg_admindir}",
                f"--log={self.dpkg_log}",
                "--install",
                str(deb_file),
            ]
        )

    def package_status(self, package: str) -> str:
        """Return dpkg-query's Status field for ``package``, or "" when it is unknown."""
        result = run(
            ["dpkg-query", f"--admindir={self.dpkg_admindir}", "--show", "--showformat=${Status}", package],
            check=False,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    # systemd

    def systemctl(self, action: str, unit: str) -> str:
        """Run ``systemctl --root`` (enable, disable or is-enabled) and return its output.

        is-enabled exits 1 for a disabled unit, so its exit code is not checked.
        """
        result = run(["systemctl", f"--root={self.path}", action, unit], check=action != "is-enabled")
        return result.stdout.strip()
