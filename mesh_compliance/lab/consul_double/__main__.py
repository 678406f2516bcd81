"""Run the Consul double as a daemon process for the lab.

Example:
    python -m mesh_compliance.lab.consul_double --bind 127.0.0.1 --port 0 \\
        --management-token-file token.txt --version 1.21.4 --ready-file ready.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .double import ConsulDouble

LOGGER = logging.getLogger("mesh_compliance.lab.consul_double")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mesh_compliance.lab.consul_double",
        description="Serve a test double of the Consul HTTP API on a loopback address.",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="loopback IP address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free port (default 0)")
    parser.add_argument(
        "--management-token-file", required=True, type=Path, help="file holding the management token secret"
    )
    parser.add_argument("--version", default="1.21.4", help="Consul version whose behaviour to imitate")
    parser.add_argument(
        "--ready-file", required=True, type=Path, help='file that receives {"url": ..., "pid": ...} once listening'
    )
    parser.add_argument("--node-name", default="lab-gateway", help="node name of the modelled agent")
    parser.add_argument("--datacenter", default="dc1", help="datacenter name")
    parser.add_argument("--default-policy", choices=("allow", "deny"), default="deny", help="acl.default_policy")
    parser.add_argument("--acl-disabled", action="store_true", help="run with ACLs disabled")
    return parser.parse_args(argv)


def read_token(path: Path) -> str:
    """Read and strip the management token; raise ValueError if the file is empty."""
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"management token file {path} is empty")
    return token


def write_ready_file(path: Path, url: str) -> None:
    """Write the ready file atomically so a reader never sees partial JSON."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    arguments = parse_arguments(argv)
    try:
        token = read_token(arguments.management_token_file)
        double = ConsulDouble(
            management_token=token,
            version=arguments.version,
            datacenter=arguments.datacenter,
            node_name=arguments.node_name,
            default_policy=arguments.default_policy,
            acl_enabled=not arguments.acl_disabled,
        )
        double.start(host=arguments.bind, port=arguments.port)
    except (OSError, ValueError) as exc:
        LOGGER.error("cannot start the Consul double: %s", exc)
        return 2
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda number, frame: stop_requested.set())
    try:
        write_ready_file(arguments.ready_file, double.url)
        stop_requested.wait()
        LOGGER.info("stop signal received, shutting down")
    finally:
        double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
