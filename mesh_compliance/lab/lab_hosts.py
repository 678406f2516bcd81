"""Test hosts of a lab: SSH nodes in network namespaces, listed in the lab's site file.

``mesh-lab up --hosts N`` starts N test hosts (mesh_compliance.lab.fleet)
beside the lab's gateway root. Odd hosts are Files nodes and even hosts
Proxy nodes, each with empty stand-ins of its role's packages. The first
host also has ``carbonio-files-db`` installed, so a fleet audit finds drift
on a remote node and ``--fix --allow=remove-package`` repairs it over SSH.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from mesh_compliance.lab.commands import run
from mesh_compliance.lab.debpkg import build_deb
from mesh_compliance.lab.documented import files_db_package, role_package
from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.fleet import TestHost, TestHosts
from mesh_compliance.site import Packages

logger = logging.getLogger("mesh_compliance.lab")

ROLES = ("files", "proxy")
# The packages each role's node has installed, as the site file's defaults expect.
ROLE_PACKAGES = {"files": Packages().files_nodes, "proxy": Packages().proxy_nodes}
MAX_HOSTS = 20


def host_role(host: TestHost) -> str:
    return ROLES[(host.index - 1) % len(ROLES)]


def host_node_name(host: TestHost) -> str:
    """Return the node name of a test host in the site file: files-1, proxy-1, files-2, ..."""
    return f"{host_role(host)}-{(host.index - 1) // len(ROLES) + 1}"


def start_hosts(directory: Path, build_dir: Path, count: int) -> TestHosts:
    """Start ``count`` test hosts under ``directory`` with their role's packages, plus carbonio-files-db on the first."""
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"invalid host count {count}; use 1 to {MAX_HOSTS} test hosts")

    hosts = TestHosts.up(directory, count)
    try:
        for host in hosts.hosts:
            specs = [role_package(name) for name in ROLE_PACKAGES[host_role(host)]]
            if host.index == 1:
                specs.append(files_db_package())
            _install(hosts, host, [build_deb(spec, build_dir) for spec in specs])
    except BaseException:
        hosts.down()
        raise
    return hosts


def node_tables(hosts: TestHosts, gateway_root: Path) -> str:
    """Return the site file's [fleet] and [[nodes]] tables: the local gateway root, then every host."""
    lines = ["", "[fleet]", f'ssh_config = "{hosts.ssh_config}"', "",
             "[[nodes]]", 'name = "gateway"', 'roles = ["gateway"]', 'connection = "local://"', f'root = "{gateway_root}"']
    for host in hosts.hosts:
        lines += ["", "[[nodes]]", f'name = "{host_node_name(host)}"', f'roles = ["{host_role(host)}"]',
                  f'connection = "{host.connection}"']
    return "\n".join(lines) + "\n"


def stop_hosts(record: dict) -> None:
    """Stop and remove the hosts a lab record describes; a host that is already gone is skipped."""
    TestHosts.adopt(record).down()


def _install(hosts: TestHosts, host: TestHost, debs: list[Path]) -> None:
    ssh = ["-F", str(hosts.ssh_config)]
    run(["scp", "-q", *ssh, *map(str, debs), f"{host.address}:/tmp/"])
    remote = [f"/tmp/{deb.name}" for deb in debs]
    run(["ssh", *ssh, host.address, shlex.join(["dpkg", "-i", *remote]) + " && " + shlex.join(["rm", *remote])])
    logger.info("test host %s: installed %s", host.name, ", ".join(deb.name for deb in debs))
