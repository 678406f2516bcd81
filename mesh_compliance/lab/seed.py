"""Seed the drifted state: every control fails, each for a different documented reason.

Consul is seeded through its HTTP API with the management token, and the
target root through useradd, dpkg-deb, dpkg and file writes, as an admin
following the guide would have left them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mesh_compliance.lab import documented, seed_mesh
from mesh_compliance.lab import sitefile as s
from mesh_compliance.lab.consul import ConsulAdmin
from mesh_compliance.lab.debpkg import build_deb
from mesh_compliance.lab.rootfs import TargetRoot
from mesh_compliance.lab.sitefile import LabSite

logger = logging.getLogger("mesh_compliance.lab")

# The port the drifted registration uses: one the lab PostgreSQL never listens on.
DRIFTED_PORT = 5433

# What a failed "consul acl token create ... | jq .SecretID > token" leaves behind.
FAILED_TOKEN_TEXT = "null\n"


def seed_consul(admin: ConsulAdmin, site: LabSite) -> None:
    """Write the drifted policy, catalog registration and KV keys."""
    # The policy lacks write on carbonio-files-db.
    admin.put(
        "/acl/policy",
        json={"Name": s.POLICY, "Description": s.POLICY_DESCRIPTION, "Rules": documented.DRIFTED_RULES_TEXT},
    )

    # The registration has the wrong port and no external-probe meta.
    registration = documented.external_service_registration(site.db_host, DRIFTED_PORT, external_probe=False)
    admin.put("/catalog/register", json=registration)

    # The name and user are set, the password key is missing.
    admin.put(f"/kv/{s.KV_PREFIX}/db-name", data=s.DB_NAME.encode())
    admin.put(f"/kv/{s.KV_PREFIX}/db-username", data=s.DB_USERNAME.encode())

    # The gateway unit ran once and registered the gateway service with the agent.
    seed_mesh.register_gateway(admin)

    # No terminating-gateway config entry is written.
    logger.info("seeded Consul: policy %s, node %s, KV %s/", s.POLICY, s.EXTERNAL_NODE, s.KV_PREFIX)


def seed_root(root: TargetRoot, site: LabSite, build_dir: Path) -> None:
    """Write the drifted account, config files, unit and package into the target root."""
    root.add_system_user(s.GATEWAY_USER)
    _write_config_dir(root, site)

    # The unit's ExecStart lacks -token-file, and the unit is not enabled.
    unit_path = root / s.UNIT_PATH
    unit_path.write_text(documented.gateway_unit(with_token_file=False), encoding="utf-8")
    os.chmod(unit_path, 0o644)

    # The package that the external database replaces is installed.
    build_dir.mkdir(parents=True, exist_ok=True)
    root.install_deb(build_deb(documented.files_db_package(), build_dir))
    logger.info("seeded target root %s", root.path)


def _write_config_dir(root: TargetRoot, site: LabSite) -> None:
    config_dir = root / s.CONFIG_DIR
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o750)

    files = {
        "policies.json": (documented.policies_json(), 0o640),
        "carbonio-files-db-external.json": (documented.external_service_json(site.db_host, site.db_port), 0o640),
        "gateway-config.hcl": (documented.gateway_config_hcl(), 0o640),
        # The token file contains the output of a failed token pipeline.
        "token": (FAILED_TOKEN_TEXT, 0o600),
    }
    for name, (text, mode) in files.items():
        path = config_dir / name
        path.write_text(text, encoding="utf-8")
        os.chmod(path, mode)

    for relative in [s.CONFIG_DIR, *(f"{s.CONFIG_DIR}/{name}" for name in files)]:
        root.chown(relative, s.GATEWAY_USER, s.GATEWAY_USER)
