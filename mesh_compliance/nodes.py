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
    if site.fleet.ansible_inventory:
        return inventory_nodes(site.fleet.ansible_inventory)
    hosts = config.option.hosts.split(",") if getattr(config.option, "hosts", None) else ["local://"]
    # Without a node list in the site file, the audited hosts are gateways:
    # the suite then audits the gateway node it runs on.
    return [NodeSpec(_label(spec), ("gateway",), spec.strip()) for spec in hosts]


# Inventory groups, by their name in this suite and in Carbonio's install playbooks.
GROUP_ROLES = {
    "gateway": "gateway", "gatewayservers": "gateway",
    "files": "files", "filesservers": "files",
    "proxy": "proxy", "proxyservers": "proxy",
    "database": "database", "postgresservers": "database",
}


class InventoryError(ValueError):
    """The Ansible inventory cannot be read or names no node of a known role."""


def inventory_nodes(path: str) -> list[NodeSpec]:
    """Read the nodes and their roles from an INI Ansible inventory.

    A host's role comes from the groups it is listed in (see GROUP_ROLES);
    ``ansible_host``, ``ansible_user`` and ``ansible_port`` build its SSH
    connection string. Hosts only in other groups get the role ``other``.
    """
    # NOTE: YAML inventories and group children ([group:children]) are not read.
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as exc:
        raise InventoryError(f"cannot read Ansible inventory {path}: {exc.strerror}") from exc

    roles: dict[str, set[str]] = {}
    connections: dict[str, str] = {}
    group = "ungrouped"
    for raw in lines:
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            continue
        if ":" in group:
            continue
        name, *variables = line.split()
        settings = dict(item.split("=", 1) for item in variables if "=" in item)
        user = settings.get("ansible_user", "root")
        port = settings.get("ansible_port")
        address = settings.get("ansible_host", name)
        # A host listed again in another group keeps the variables it was given.
        if name not in connections or settings:
            connections[name] = f"ssh://{user}@{address}" + (f":{port}" if port else "")
        roles.setdefault(name, set())
        role = GROUP_ROLES.get(group.lower())
        if role:
            roles[name].add(role)

    if not connections:
        raise InventoryError(f"Ansible inventory {path} lists no host")
    return [NodeSpec(name, tuple(sorted(roles[name])) or ("other",), connections[name]) for name in connections]


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

