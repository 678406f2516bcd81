"""File contents of the documented Carbonio gateway setup, as the lab writes them.

The source is the Carbonio CE admin guide page "Integration of External
Services" (Carbonio Mesh section).
"""

from __future__ import annotations

import json

from mesh_compliance.lab import sitefile as s
from mesh_compliance.lab.debpkg import PackageFile, PackageSpec

TOKEN_FILE = s.CONFIG_DIR + "/token"

# The full documented rules: the gateway may write its own service and the
# external database service, and read its KV prefix and every node.
DOCUMENTED_RULES = {
    "key_prefix": {s.KV_GATEWAY_PREFIX: {"policy": "read"}},
    "node_prefix": {"": {"policy": "read"}},
    "service": {
        s.GATEWAY_SERVICE: {"policy": "write"},
        s.EXTERNAL_SERVICE: {"policy": "write"},
    },
}

# Drift: the JSON list form of the rules, without write on carbonio-files-db.
DRIFTED_RULES_TEXT = (
    '{"key_prefix":[{"carbonio-gateway/":{"policy":"read"}}],'
    '"node_prefix":[{"":{"policy":"read"}}],'
    '"service":[{"carbonio-gateway":{"policy":"write"}}]}'
)


def policies_json() -> str:
    return json.dumps(DOCUMENTED_RULES, indent=2) + "\n"


def external_service_registration(address: str, port: int, external_probe: bool = True) -> dict:
    """Return the catalog registration body for the external database service."""
    node_meta = {"external-node": "true"}
    if external_probe:
        node_meta["external-probe"] = "true"
    return {
        "Node": s.EXTERNAL_NODE,
        "Address": address,
        "NodeMeta": node_meta,
        "Service": {"ID": s.EXTERNAL_SERVICE_ID, "Service": s.EXTERNAL_SERVICE, "Port": port},
    }


def external_service_json(address: str, port: int) -> str:
    return json.dumps(external_service_registration(address, port), indent=2) + "\n"


def gateway_config_hcl() -> str:
    return (
        'Kind = "terminating-gateway"\n'
        f'Name = "{s.GATEWAY_SERVICE}"\n'
        "Services = [\n"
        "  {\n"
        f'    Name = "{s.EXTERNAL_SERVICE}"\n'
        "  }\n"
        "]\n"
    )


def gateway_unit(with_token_file: bool = True) -> str:
    """Return the systemd unit text; without ``with_token_file`` ExecStart lacks -token-file."""
    token_option = f"-token-file {TOKEN_FILE} " if with_token_file else ""
    exec_start = (
        f"{s.CONSUL_BINARY} connect envoy {token_option}"
        f"-admin-bind localhost:0 -gateway=terminating -register -service {s.GATEWAY_SERVICE}"
    )
    return f"""\
[Unit]
Description=Carbonio gateway for external services
Documentation=https://docs.zextras.com/
Requires=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
Restart=on-failure
RestartSec=15
User={s.GATEWAY_USER}
KillMode=process
KillSignal=SIGKILL
LimitNOFILE=65536
TimeoutSec=120
TimeoutStopSec=120

[Install]
WantedBy=multi-user.target
"""


FILES_DB_CONFFILE = "/etc/zextras/service-discover/carbonio-files-db.hcl"
FILES_DB_SCRIPT = "/usr/bin/carbonio-files-db"


def files_db_package() -> PackageSpec:
    """Return a stand-in for the carbonio-files-db package, which the external DB replaces."""
    return PackageSpec(
        name=s.ABSENT_PACKAGE,
        version="0.1.0-1",
        description=(
            "Lab stand-in for Carbonio Files' bundled database service\n"
            "Installs the service-discover registration and a launcher script."
        ),
        files=(
            PackageFile(
                FILES_DB_CONFFILE,
                'services {\n  name = "carbonio-files-db"\n  port = 5432\n}\n',
            ),
            PackageFile(FILES_DB_SCRIPT, "#!/bin/sh\nexec echo carbonio-files-db lab stand-in\n", 0o755),
        ),
        conffiles=(FILES_DB_CONFFILE,),
    )


def role_package(name: str) -> PackageSpec:
    """Return an empty stand-in for a package a Files or Proxy node has installed."""
    return PackageSpec(
        name=name,
        version="0.1.0-1",
        description=f"Lab stand-in for {name}\nAn empty package, so that the role's package control passes.",
    )
