"""The lab directory's layout and its lab.json record (pids, ports, paths; no secret values)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mesh_compliance.lab.errors import LabError

STATE_FILE = "lab.json"

STARTING = "starting"
UP = "up"
FAILED = "failed"


@dataclass(frozen=True)
class LabPaths:
    """Every path inside one lab directory."""

    dir: Path

    @property
    def state_file(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def secrets(self) -> Path:
        return self.dir / "secrets"

    @property
    def pg_admin_password(self) -> Path:
        return self.secrets / "pg-admin-password"

    @property
    def db_password(self) -> Path:
        return self.secrets / "db-password"

    @property
    def postgres(self) -> Path:
        return self.dir / "postgres"

    @property
    def postgres_log(self) -> Path:
        return self.logs / "postgres.log"

    @property
    def consul(self) -> Path:
        return self.dir / "consul"

    @property
    def management_token(self) -> Path:
        return self.consul / "management-token"

    @property
    def consul_ready(self) -> Path:
        return self.consul / "ready.json"

    @property
    def consul_pid(self) -> Path:
        return self.consul / "double.pid"

    @property
    def consul_log(self) -> Path:
        return self.logs / "consul-double.log"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def build(self) -> Path:
        return self.dir / "build"

    @property
    def site_file(self) -> Path:
        return self.dir / "site.toml"

    @property
    def pytest_args(self) -> Path:
        return self.dir / "pytest.args"


def read_state(paths: LabPaths) -> dict:
    """Return the lab.json record; raise LabError when it is missing or invalid."""
    try:
        record = json.loads(paths.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LabError(f"{paths.dir} is not a lab directory: {STATE_FILE} not found; start one with mesh-lab up") from exc
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {paths.state_file}: {exc}; remove the directory by hand") from exc

    if not isinstance(record, dict):
        raise LabError(f"{paths.state_file} does not contain a JSON object; remove the directory by hand")
    return record


def write_state(paths: LabPaths, record: dict) -> None:
    """Replace lab.json atomically, so a reader never sees half a record."""
    temporary = paths.state_file.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, paths.state_file)
