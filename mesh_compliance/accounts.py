"""System accounts on the audited node: the system id range and no-login shells.

shadow-utils (useradd, groupadd) take the system range from the node's own
/etc/login.defs; without SYS_UID_MAX or SYS_GID_MAX there they use 999.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_compliance.errors import TargetError
from mesh_compliance.target import Target

DEFAULT_SYS_ID_MAX = 999

# Shells that refuse a login. The documented account uses /sbin/nologin;
# Debian installs nologin under /usr/sbin.
NOLOGIN_SHELLS = ("/sbin/nologin", "/usr/sbin/nologin", "/bin/false")
DOCUMENTED_SHELL = "/sbin/nologin"


@dataclass(frozen=True)
class SystemRange:
    """The highest uid and gid of system accounts, and where they were read."""

    uid_max: int
    gid_max: int
    source: str

    def uid_ok(self, uid: int) -> bool:
        return 0 < uid <= self.uid_max

    def gid_ok(self, gid: int) -> bool:
        return 0 < gid <= self.gid_max


def system_range(target: Target) -> SystemRange:
    """Read SYS_UID_MAX and SYS_GID_MAX from the node's /etc/login.defs."""
    text = target.read_text("/etc/login.defs")
    settings = _settings(text or "")
    uid_max = _number(settings, "SYS_UID_MAX")
    gid_max = _number(settings, "SYS_GID_MAX")

    found = [f"{key} {settings[key]}" for key in ("SYS_UID_MAX", "SYS_GID_MAX") if key in settings]
    if text is None:
        source = f"/etc/login.defs is absent, so the default {DEFAULT_SYS_ID_MAX} applies"
    elif not found:
        source = f"/etc/login.defs sets neither SYS_UID_MAX nor SYS_GID_MAX, so the default {DEFAULT_SYS_ID_MAX} applies"
    else:
        source = "/etc/login.defs: " + ", ".join(found)
    return SystemRange(uid_max, gid_max, source)


def nologin_shell(target: Target) -> str:
    """Return the no-login shell the node has: the documented one, else Debian's, else the documented path."""
    for shell in (DOCUMENTED_SHELL, "/usr/sbin/nologin"):
        if target.file_state(shell).exists:
            return shell
    return DOCUMENTED_SHELL


def _settings(text: str) -> dict[str, str]:
    settings = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            settings[fields[0]] = fields[1]
    return settings


def _number(settings: dict[str, str], key: str) -> int:
    value = settings.get(key)
    if value is None:
        return DEFAULT_SYS_ID_MAX
    # shadow-utils reads these with strtol base 0, so 0x3e7 is 999; a
    # leading zero is taken as decimal here.
    for base in (0, 10):
        try:
            return int(value, base)
        except ValueError:
            continue
    raise TargetError(f"/etc/login.defs sets {key} to {value!r}, which is not a number")
