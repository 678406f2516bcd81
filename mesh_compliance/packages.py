"""Package state from the node's own package database (dpkg or rpm).

Unlike a plain "is installed" flag, the state keeps dpkg's full status so
that half-installed and config-files states are visible, and a database that
cannot be read raises instead of reading as "not installed".
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_compliance.errors import TargetError
from mesh_compliance.target import Target

# dpkg states in which the package's files are (at least partly) on disk and
# dpkg considers it present. "config-files" is handled separately: only the
# conffiles are left.
DPKG_PRESENT_STATES = ("installed", "half-installed", "half-configured", "unpacked", "triggers-awaited", "triggers-pending")


@dataclass(frozen=True)
class PackageState:
    name: str
    manager: str
    status: str          # dpkg: "install ok installed"; rpm: "installed" or "not-installed"
    evidence: str        # the command and its output

    @property
    def present(self) -> bool:
        """True when the package's files are on the node (fully or partly)."""
        if self.manager == "rpm":
            return self.status == "installed"
        return self.status.split(" ")[-1] in DPKG_PRESENT_STATES

    @property
    def config_files_only(self) -> bool:
        return self.manager == "dpkg" and self.status.endswith(" config-files")


def detect_manager(target: Target, preferred: str = "auto") -> str:
    """Pick dpkg or rpm by the package database the node actually has."""
    if preferred != "auto":
        return preferred
    if target.file_state("/var/lib/dpkg/status").exists:
        return "dpkg"
    for rpmdb in ("/var/lib/rpm", "/usr/lib/sysimage/rpm"):
        if target.file_state(rpmdb).exists:
            return "rpm"
    raise TargetError(
        f"no package database found on {target.name} (neither /var/lib/dpkg/status nor an rpm database); "
        "set packages.manager in the site file if the node uses another layout"
    )


def package_state(target: Target, name: str, manager: str) -> PackageState:
    if manager == "dpkg":
        return _dpkg_state(target, name)
    return _rpm_state(target, name)


def _dpkg_state(target: Target, name: str) -> PackageState:
    argv = ("dpkg-query", f"--admindir={target.dpkg_admindir()}", "-W", "-f=${Status}", name)
    result = target.run(*argv)
    evidence = _evidence(argv, result)

    if result.rc == 0 and result.stdout.strip():
        return PackageState(name, "dpkg", result.stdout.strip(), evidence)
    if result.rc == 1 and "no packages found matching" in result.stderr:
        return PackageState(name, "dpkg", "not-installed", evidence)
    if result.rc == 0:
        # Known to dpkg but with an empty status: treat as never installed.
        return PackageState(name, "dpkg", "not-installed", evidence)
    raise TargetError(f"cannot read the dpkg database on {target.name}: {evidence}")


def _rpm_state(target: Target, name: str) -> PackageState:
    argv = ("rpm", *target.rpm_root_args(), "-q", name)
    result = target.run(*argv)
    evidence = _evidence(argv, result)

    if result.rc == 0:
        return PackageState(name, "rpm", "installed", evidence)
    # rpm prints "package X is not installed" on stdout for a clean miss; any
    # other exit 1 (for example an rpmdb open error on stderr) is unknown.
    if result.rc == 1 and "is not installed" in result.stdout and not result.stderr.strip():
        return PackageState(name, "rpm", "not-installed", evidence)
    raise TargetError(f"cannot read the rpm database on {target.name}: {evidence}")


def _evidence(argv: tuple[str, ...], result) -> str:
    return f"$ {' '.join(argv)} -> rc={result.rc} stdout={result.stdout.strip()!r} stderr={result.stderr.strip()!r}"
