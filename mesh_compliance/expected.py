"""The documented end state, derived once from the site model.

Controls compare against these values and fixers write them, so the two can
never disagree about what "compliant" means.
"""

from __future__ import annotations

import json

from mesh_compliance.acl_rules import Grant
from mesh_compliance.site import Site

KV_NAMES = ("db-name", "db-username", "db-password")
NODE_META = {"external-node": "true", "external-probe": "true"}


def required_grants(site: Site) -> list[Grant]:
    return [
        Grant("key", site.acl.kv_prefix, True, "read"),
        Grant("node", "", True, "read"),
        Grant("service", site.gateway.service, False, "write"),
        Grant("service", site.external_service.name, False, "write"),
    ]


def policy_rules(site: Site) -> str:
    """Return the rules as the documented policies.json contains them."""
    rules = {
        "key_prefix": {site.acl.kv_prefix: {"policy": "read"}},
        "node_prefix": {"": {"policy": "read"}},
        "service": {
            site.gateway.service: {"policy": "write"},
            site.external_service.name: {"policy": "write"},
        },
    }
    return json.dumps(rules, indent=2) + "\n"


def registration(site: Site, extra_meta: dict | None = None) -> dict:
    """Return the catalog registration body of the external service."""
    service = site.external_service
    return {
        "Node": service.node,
        "Address": service.address,
        "NodeMeta": {**(extra_meta or {}), **NODE_META},
        "Service": {"ID": service.id, "Service": service.name, "Port": service.port},
    }


def linked_service(site: Site) -> dict:
    """Return the terminating-gateway entry item for the external service."""
    item = {"Name": site.external_service.name}
    if site.gateway_entry.ca_file:
        item["CAFile"] = site.gateway_entry.ca_file
    if site.gateway_entry.sni:
        item["SNI"] = site.gateway_entry.sni
    return item


def exec_start_flags(site: Site) -> dict[str, str | bool]:
    """Return the flags the unit's ``consul connect envoy`` must carry."""
    return {
        "token-file": site.gateway.token_file,
        "admin-bind": "localhost:0",
        "gateway": "terminating",
        "register": True,
        "service": site.gateway.service,
    }


def unit_text(site: Site) -> str:
    gateway = site.gateway
    return (
        "[Unit]\n"
        "Description=Carbonio gateway for external services\n"
        "Documentation=https://docs.zextras.com/\n"
        "Requires=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={gateway.consul_binary} connect envoy -token-file {gateway.token_file} "
        f"-admin-bind localhost:0 -gateway=terminating -register -service {gateway.service}\n"
        "Restart=on-failure\n"
        "RestartSec=15\n"
        f"User={gateway.user}\n"
        "KillMode=process\n"
        "KillSignal=SIGKILL\n"
        "LimitNOFILE=65536\n"
        "TimeoutSec=120\n"
        "TimeoutStopSec=120\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
