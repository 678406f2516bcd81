"""Run the Consul HTTP API double as a background process, and talk to it as an admin."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from mesh_compliance.lab import processes
from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.secretfiles import read_secret_file, write_secret_file

logger = logging.getLogger("mesh_compliance.lab")

DOUBLE_MODULE = "mesh_compliance.lab.consul_double"
NODE_NAME = "lab-gateway"
READY_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 10

# The directory that contains the mesh_compliance package, so the child
# process imports the same code even without an installed distribution.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def write_management_token(path: Path) -> Path:
    """Write a new management token (a UUID, as Consul's SecretIDs are) to ``path`` (0600)."""
    return write_secret_file(path, str(uuid.uuid4()))


def double_command(token_file: Path, ready_file: Path, version: str) -> list[str]:
    return [
        sys.executable,
        "-m", DOUBLE_MODULE,
        "--bind", "127.0.0.1",
        "--port", "0",
        "--management-token-file", str(token_file),
        "--version", version,
        "--ready-file", str(ready_file),
        "--node-name", NODE_NAME,
    ]


def start_double(token_file: Path, ready_file: Path, pid_file: Path, log_file: Path, version: str) -> dict:
    """Start the double in its own session and return its ready record ({"url", "pid"}).

    The pid goes to ``pid_file`` at once, so a lab stopped before the double is
    ready can still be cleaned up.
    """
    command = double_command(token_file, ready_file, version)
    logger.debug("start: %s", " ".join(command))

    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), environment.get("PYTHONPATH")]))

    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    processes.adopt(process)
    pid_file.write_text(f"{process.pid}\n", encoding="utf-8")

    return wait_for_ready(process, ready_file, log_file)


def wait_for_ready(process: subprocess.Popen, ready_file: Path, log_file: Path) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabError(f"the Consul double exited with code {process.returncode} before it was ready; see {log_file}")
        record = read_ready_file(ready_file)
        if record is not None:
            return record
        time.sleep(0.1)

    processes.terminate(process.pid)
    raise LabError(f"the Consul double wrote no ready file {ready_file} within {READY_TIMEOUT_SECONDS} s; see {log_file}")


def read_ready_file(ready_file: Path) -> dict | None:
    """Return the ready record, or None while it is missing or half written."""
    try:
        record = json.loads(ready_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and "url" in record and "pid" in record:
        return record
    return None


class ConsulAdmin:
    """A requests session that sends the management token, as an admin's curl would."""

    def __init__(self, url: str, token_file: Path) -> None:
        self.url = url.rstrip("/")
        self._token = read_secret_file(token_file)
        self.session = requests.Session()
        self.session.headers["X-Consul-Token"] = self._token

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Send one request to ``/v1`` + ``path`` and raise LabError unless it returns 200."""
        url = f"{self.url}/v1{path}"
        logger.debug("%s %s", method, url)
        try:
            response = self.session.request(method, url, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
        except requests.RequestException as exc:
            raise LabError(f"{method} {url} failed: {exc}; check that the Consul double runs") from exc

        logger.debug("%s %s -> %d", method, url, response.status_code)
        if response.status_code != 200:
            raise LabError(f"{method} {url} returned {response.status_code}: {response.text.strip()[:200]}")
        return response

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def close(self) -> None:
        self.session.close()
