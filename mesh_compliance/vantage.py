"""Where the database login is tried from: the gateway node by default.

Through the mesh, the database sees the terminating gateway's address, so its
pg_hba and TLS rules apply to that address. When the gateway node is reached
over SSH, the login goes through an SSH local forward from that node
(``ssh -N -L 127.0.0.1:PORT:DBHOST:DBPORT``), so the database sees the
gateway's address too. A local gateway node is the runner itself.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from mesh_compliance.errors import DatabaseUnreachable
from mesh_compliance.log import logger
from mesh_compliance.nodes import NodeSpec

TUNNEL_START_SECONDS = 10


@dataclass(frozen=True)
class Vantage:
    description: str
    host: str
    port: int


def gateway_node(nodes: list[NodeSpec]) -> NodeSpec | None:
    return next((node for node in nodes if "gateway" in node.roles), None)


@contextlib.contextmanager
def from_node(node: NodeSpec | None, ssh_config: str | None, db_host: str, db_port: int):
    """Yield where to connect so the login starts at ``node``; None or a local node means here."""
    if node is None or not node.connection.startswith(("ssh://", "paramiko://")):
        name = node.name if node is not None else "the runner"
        yield Vantage(f"{name} (this host, {socket.gethostname()}); the database sees this host's address", db_host, db_port)
        return

    port = _free_port()
    parts = urlsplit(node.connection)
    destination = f"{parts.username or 'root'}@{parts.hostname}"
    # A connection of its own: through a ControlMaster the client would hand
    # the forward to the master and exit at once.
    argv = ["ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=no", "-o", "ControlPath=none", "-L", f"127.0.0.1:{port}:{db_host}:{db_port}"]
    if parts.port:
        argv += ["-p", str(parts.port)]
    if ssh_config:
        argv += ["-F", ssh_config]
    argv.append(destination)

    logger.debug("db vantage: %s", " ".join(argv))
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(process, port, node.name)
        yield Vantage(f"gateway node {node.name}, through an SSH forward; the database sees that node's address",
                      "127.0.0.1", port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for(process: subprocess.Popen, port: int, name: str) -> None:
    deadline = time.monotonic() + TUNNEL_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = (process.stderr.read() if process.stderr else "").strip()
            raise DatabaseUnreachable(f"cannot open an SSH forward from gateway node {name}: {error[:300] or 'ssh exited'}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DatabaseUnreachable(f"the SSH forward from gateway node {name} did not open within {TUNNEL_START_SECONDS}s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
