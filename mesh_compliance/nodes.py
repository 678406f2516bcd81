"""The nodes a run audits, and which node controls run on which of them.

Nodes come from the site file's ``[[nodes]]`` tables (name, roles,
testinfra connection string), else from an Ansible inventory, else from
testinfra's ``--hosts``, else the local host. A node control runs on every node that has one of its roles;
the role ``*`` means every node. Cluster controls (Consul, database) run
once, on no node.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass

import testinfra

from mesh_compliance.inventory import InventoryError, InventoryHost, read_inventory
from mesh_compliance.log import logger

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

    def root_for(self, runner_root: str | None) -> str:
        """Return the node's root; ``--root`` is a path on the runner, so it applies to local nodes only."""
        return self.root or (runner_root if self.connection.startswith("local") else None) or ""

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


# Variables that give a host's SSH connection, newest name first.
ADDRESS_VARIABLES = ("ansible_host", "ansible_ssh_host")
USER_VARIABLES = ("ansible_user", "ansible_ssh_user")
PORT_VARIABLES = ("ansible_port", "ansible_ssh_port")
# The suite's own host variable: the directory where the node's filesystem is mounted, as [[nodes]] root.
ROOT_VARIABLE = "carbonio_mesh_root"


def inventory_nodes(path: str) -> list[NodeSpec]:
    """Read the nodes and their roles from an Ansible inventory (INI or YAML).

    A host's roles come from the groups it belongs to, child groups included
    (see GROUP_ROLES); hosts in no such group get the role ``other``.
    ``ansible_host``, ``ansible_user`` and ``ansible_port``, from the host or
    its groups, build its SSH connection string; the user defaults to root.
    ``ansible_connection=local`` gives ``local://`` and ``paramiko`` a
    paramiko:// connection; ``carbonio_mesh_root`` sets the node's root.
    """
    hosts = read_inventory(path)
    if not hosts:
        raise InventoryError(f"Ansible inventory {path} lists no host")

    nodes = []
    for host in hosts:
        roles = sorted({GROUP_ROLES[group.lower()] for group in host.groups if group.lower() in GROUP_ROLES})
        root = str(host.variables.get(ROOT_VARIABLE) or "")
        nodes.append(NodeSpec(host.name, tuple(roles) or ("other",), _connection(path, host), root))
    return nodes


def _connection(path: str, host: InventoryHost) -> str:
    kind = str(host.variables.get("ansible_connection") or "ssh")
    if kind == "local":
        return "local://"
    if kind not in ("ssh", "paramiko"):
        raise InventoryError(f"Ansible inventory {path}: host {host.name} has ansible_connection={kind}; "
                             "the suite reaches inventory hosts over ssh, paramiko or local only")

    address = _first(host.variables, ADDRESS_VARIABLES) or host.name
    user = _first(host.variables, USER_VARIABLES) or "root"
    port = _first(host.variables, PORT_VARIABLES)
    return f"{kind}://{user}@{address}" + (f":{port}" if port else "")


def _first(variables: dict, names: tuple[str, ...]) -> str:
    for name in names:
        if variables.get(name) not in (None, ""):
            return str(variables[name])
    return ""


def _label(spec: str) -> str:
    spec = spec.strip()
    return "local" if spec in ("local://", "local") else spec.split("://", 1)[-1]


def open_host(config, site, node: NodeSpec):
    """Return the testinfra host of ``node``; testinfra caches it, so SSH connections are reused."""
    option = config.option
    ssh_config = getattr(option, "ssh_config", None) or site.fleet.ssh_config or None
    extra = {}
    if node.connection.startswith(("ssh://", "safe-ssh://")) and not configured_control_path(node.connection, ssh_config):
        extra["controlpath"] = ssh_control_path(node.connection)
    return testinfra.get_host(
        node.connection,
        ssh_config=ssh_config,
        ssh_identity_file=getattr(option, "ssh_identity_file", None),
        sudo=getattr(option, "sudo", False),
        sudo_user=getattr(option, "sudo_user", None),
        connection=getattr(option, "connection", None),
        **extra,
    )


# ssh binds a master socket at ControlPath plus 17 characters, and a Unix
# socket path is at most 107 bytes long on Linux.
SOCKET_NAME_LENGTH = len("cmc-") + 24
MAX_CONTROL_DIRECTORY_LENGTH = 107 - 17 - 1 - SOCKET_NAME_LENGTH


def ssh_control_path(connection: str) -> str:
    """Return the ControlPath of an ssh:// node, so every command to it reuses one connection.

    testinfra passes ControlMaster=auto to ssh but sets no ControlPath, without
    which ssh opens a connection per command. A ControlPath from the user's
    ssh configuration is kept (see configured_control_path). The socket is
    named after a digest of the connection string, because testinfra formats
    its ssh command with ``%`` and ssh's own ``%C`` would break it. It lies in
    a directory only this user can enter: $XDG_RUNTIME_DIR, else ~/.ssh, else
    a new temporary directory when those paths are too long for a socket.
    """
    directory = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.ssh")
    if len(directory) > MAX_CONTROL_DIRECTORY_LENGTH:
        directory = _private_temporary_directory()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, "cmc-" + hashlib.sha256(connection.encode()).hexdigest()[:24])


@functools.lru_cache(maxsize=None)
def configured_control_path(connection: str, ssh_config: str | None) -> bool:
    """Return True when the ssh client configuration already names a ControlPath for the node.

    ``ssh -G`` prints the configuration ssh would use, without connecting.
    """
    address = urllib.parse.urlsplit(connection)
    argv = ["ssh", "-G", *(["-F", ssh_config] if ssh_config else [])]
    if address.username:
        argv += ["-l", address.username]
    if address.port:
        argv += ["-p", str(address.port)]
    try:
        result = subprocess.run([*argv, address.hostname or ""], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("ssh -G for %s failed: %s", connection, exc)
        return False
    options = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return options.get("controlpath", "none") != "none"


def _private_temporary_directory() -> str:
    if not _TEMPORARY:
        _TEMPORARY.append(tempfile.mkdtemp(prefix="cmc-"))
    return _TEMPORARY[0]


_TEMPORARY: list[str] = []


def open_target(config, site, node: NodeSpec):
    """Return the Target of ``node``, below its root when it has one."""
    from mesh_compliance.target import Target

    return Target(open_host(config, site, node), node.root_for(config.option.mesh_root) or None, label=node.name)
