"""Build small real .deb files with dpkg-deb for the lab's target root."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mesh_compliance.lab.commands import run


@dataclass(frozen=True)
class PackageFile:
    """One file a package installs: absolute path inside the target, content and mode."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class PackageSpec:
    """Description dpkg-deb needs for a package without maintainer scripts."""

    name: str
    version: str
    description: str
    files: tuple[PackageFile, ...] = ()
    conffiles: tuple[str, ...] = field(default=())
    architecture: str = "all"
    maintainer: str = "mesh-lab <root@localhost>"

    def control(self) -> str:
        summary, _, details = self.description.partition("\n")
        text = (
            f"Package: {self.name}\n"
            f"Version: {self.version}\n"
            f"Architecture: {self.architecture}\n"
            f"Maintainer: {self.maintainer}\n"
            f"Description: {summary}\n"
        )
        for line in details.splitlines():
            text += f" {line or '.'}\n"
        return text


def build_deb(spec: PackageSpec, work_dir: Path) -> Path:
    """Build ``spec`` under ``work_dir`` and return the path of the .deb."""
    tree = work_dir / spec.name
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "DEBIAN").mkdir(parents=True)

    (tree / "DEBIAN" / "control").write_text(spec.control(), encoding="utf-8")
    if spec.conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(f"{path}\n" for path in spec.conffiles), encoding="utf-8")

    for package_file in spec.files:
        target = tree / package_file.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(package_file.content, encoding="utf-8")
        os.chmod(target, package_file.mode)

    # The lab's tree belongs to whoever runs it; the package's files belong to root.
    deb_file = work_dir / f"{spec.name}_{spec.version}_{spec.architecture}.deb"
    run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb_file)])
    return deb_file
