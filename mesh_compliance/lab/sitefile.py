"""Write the lab's site file: TOML written by hand, secrets only as file references."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# The documented defaults that the lab does not change.
GATEWAY_SERVICE = "carbonio-gateway"
GATEWAY_USER = "carbonio-gateway"
CONFIG_DIR = "/etc/carbonio/gateway/service-discover"
UNIT = "carbonio-gateway.service"
UNIT_PATH = "/lib/systemd/system/carbonio-gateway.service"
CONSUL_BINARY = "/usr/bin/consul"
POLICY = "carbonio-gateway-policy"
POLICY_DESCRIPTION = "Policy for carbonio-gateway"
TOKEN_DESCRIPTION = "Token for carbonio-gateway"
KV_GATEWAY_PREFIX = "carbonio-gateway/"
EXTERNAL_SERVICE = "carbonio-files-db"
EXTERNAL_SERVICE_ID = "carbonio-gateway"
EXTERNAL_NODE = "external-files-db-node"
KV_PREFIX = "carbonio-files"
DB_NAME = "carbonio-files-adm"
DB_USERNAME = "carbonio-files-adm"
ABSENT_PACKAGE = "carbonio-files-db"


@dataclass(frozen=True)
class LabSite:
    """The values of the lab that vary from one lab to the next."""

    db_host: str
    db_port: int
    db_password_file: Path
    admin_user: str
    admin_password_file: Path
    admin_database: str = "postgres"


def toml_string(value: str) -> str:
    # A JSON string literal is a valid TOML basic string for the text the lab writes.
    return json.dumps(value)


def render_site(site: LabSite) -> str:
    """Return the site file text for ``site``."""
    q = toml_string
    return f"""\
# Site file written by mesh-lab for a disposable lab. Secrets are file references.

[gateway]
service = {q(GATEWAY_SERVICE)}
user = {q(GATEWAY_USER)}
group = {q(GATEWAY_USER)}
config_dir = {q(CONFIG_DIR)}
token_file = {q(CONFIG_DIR + "/token")}
unit = {q(UNIT)}
unit_path = {q(UNIT_PATH)}
consul_binary = {q(CONSUL_BINARY)}

[acl]
policy = {q(POLICY)}
policy_description = {q(POLICY_DESCRIPTION)}
token_description = {q(TOKEN_DESCRIPTION)}
kv_prefix = {q(KV_GATEWAY_PREFIX)}

[external_service]
name = {q(EXTERNAL_SERVICE)}
id = {q(EXTERNAL_SERVICE_ID)}
node = {q(EXTERNAL_NODE)}
address = {q(site.db_host)}
port = {site.db_port}

[gateway_entry]
# ca_file = "/etc/carbonio/external-db-ca.pem"
# sni = "external-db.local"

[kv]
layout = "flat"
prefix = {q(KV_PREFIX)}

[kv.values]
db_name = {q(DB_NAME)}
db_username = {q(DB_USERNAME)}
db_password = {{ file = {q(str(site.db_password_file))} }}

[database]
# host and port default to external_service.address and .port
sslmode = "disable"
connect_timeout = 5

[database.admin]
user = {q(site.admin_user)}
password = {{ file = {q(str(site.admin_password_file))} }}
database = {q(site.admin_database)}

[packages]
absent = [{q(ABSENT_PACKAGE)}]
manager = "auto"
"""


def write_site_file(path: Path, site: LabSite) -> Path:
    path.write_text(render_site(site), encoding="utf-8")
    return path
