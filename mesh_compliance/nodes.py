"""The nodes a run audits, and which node controls run on which of them.

Nodes come from the site file's ``[[nodes]]`` tables (name, roles,
testinfra connection string), else from testinfra's ``--hosts``, else the
local host. A node control runs on every node that has one of its roles;
the role ``*`` means every node. Cluster controls (Consul, database) run
once, on no node.
"""

from __future__ import annotations

from dataclasses import dataclass

import testinfra

ROLES = ("gateway", "files", "proxy", "database", "other")
EVERY_NODE = "*"


@dataclass(frozen=True)
class NoNode:
    """Placeholder parameter of a node control that no node of the run has a role for."""

    roles: tuple[str, ...]
    name: str = "no node"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    roles: tuple[str, ...]
    connection: str
    root: str = ""

    def has_any(self, roles: tuple[str, ...]) -> bool:
        return EVERY_NODE in roles or bool(set(roles) & set(self.roles))


def run_nodes(config, site) -> list[NodeSpec]:
    """Return the nodes of this run, in the order the site lists them."""
    if site.nodes:
        return [NodeSpec(node.name, node.roles, node.connection, node.root) for node in site.nodes]
    hosts = config.option.hosts.split(",") if getattr(config.option, "hosts", None) else ["local://"]
    # Without a node list in the site file, the audited hosts are gateways:
    # the suite then audits the gateway node it runs on.
    return [NodeSpec(_label(spec), ("gateway",), spec.strip()) for spec in hosts]


def _label(spec: str) -> str:
    spec = spec.strip()
    return "local" if spec in ("local://", "local") else spec.split("://", 1)[-1]


def open_host(config, site, node: NodeSpec):
    """Return the testinfra host of ``node``; testinfra caches it, so SSH connections are reused."""
    option = config.option
    return testinfra.get_host(
        node.connection,
        ssh_config=getattr(option, "ssh_config", None) or site.fleet.ssh_config or None,
        ssh_identity_file=getattr(option, "ssh_identity_file", None),
        sudo=getattr(option, "sudo", False),
        sudo_user=getattr(option, "sudo_user", None),
        connection=getattr(option, "connection", None),
    )

