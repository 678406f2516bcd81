"""A real PostgreSQL server for the lab, on 127.0.0.1 with scram-sha-256 only.

initdb, pg_ctl and postgres reject root, so when the lab runs as root they run
as the user ``nobody`` through ``runuser`` and their directories belong to it.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mesh_compliance.lab.commands import UNPRIVILEGED_USER, as_unprivileged, run, running_as_root
from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.secretfiles import read_secret_file

logger = logging.getLogger("mesh_compliance.lab")

POSTGRES_ROOT = Path("/usr/lib/postgresql")
HOST = "127.0.0.1"
ADMIN_USER = "postgres"
ADMIN_DATABASE = "postgres"

# Linux limits a unix socket path to 107 bytes (sun_path is 108 with the NUL).
MAX_SOCKET_PATH = 107

START_ATTEMPTS = 3
START_TIMEOUT_SECONDS = 60
CONNECT_TIMEOUT_SECONDS = 5

# A port the seeded drift registers in Consul; the lab server never uses it.
RESERVED_PORT = 5433

PG_HBA = """\
# Written by mesh-lab: scram-sha-256 only, local socket and 127.0.0.1.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
"""


def find_bin_dir() -> Path:
    """Return the bin directory of the newest PostgreSQL under /usr/lib/postgresql."""
    candidates = []
    for bin_dir in POSTGRES_ROOT.glob("*/bin"):
        version = bin_dir.parent.name
        if version.isdigit() and (bin_dir / "initdb").is_file():
            candidates.append((int(version), bin_dir))

    if not candidates:
        raise LabError(
            f"no PostgreSQL server found under {POSTGRES_ROOT}/*/bin; "
            "install the postgresql package (apt-get install postgresql)"
        )
    return max(candidates)[1]


def pick_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if port != RESERVED_PORT:
            return port


@dataclass
class PostgresServer:
    """One lab PostgreSQL cluster: its directories, port and admin credential."""

    base_dir: Path
    admin_password_file: Path
    log_file: Path
    bin_dir: Path | None = None
    host: str = HOST
    port: int | None = None
    admin_user: str = ADMIN_USER

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "run"

    def _bin(self, name: str) -> str:
        if self.bin_dir is None:
            self.bin_dir = find_bin_dir()
        return str(self.bin_dir / name)

    def _run(self, args: list[str], **kwargs):
        return run(as_unprivileged(args), cwd=self.base_dir, **kwargs)

    # Setup

    def init(self) -> None:
        """Create the cluster with initdb and write the lab's pg_hba.conf."""
        self._check_socket_path()
        self._make_dirs()

        # initdb reads the password from a file that only its user can read,
        # and the file is removed as soon as initdb is done.
        password = read_secret_file(self.admin_password_file)
        pwfile = self.base_dir / "initdb-pwfile"
        try:
            self._write_owned(pwfile, password + "\n", 0o600)
            self._run(
                [
                    self._bin("initdb"),
                    "--pgdata", str(self.data_dir),
                    "--auth=scram-sha-256",
                    "--username", self.admin_user,
                    "--pwfile", str(pwfile),
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                secrets=[password],
            )
        finally:
            pwfile.unlink(missing_ok=True)

        self._write_owned(self.data_dir / "pg_hba.conf", PG_HBA, 0o600)
        self._append_settings()

    def _check_socket_path(self) -> None:
        socket_path = self.socket_dir / ".s.PGSQL.65535"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise LabError(
                f"unix socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes; "
                "choose a shorter --dir"
            )

    def _make_dirs(self) -> None:
        for path in (self.base_dir, self.socket_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(mode=0o600)

        if running_as_root():
            account = pwd.getpwnam(UNPRIVILEGED_USER)
            for path in (self.base_dir, self.socket_dir, self.log_file):
                os.chown(path, account.pw_uid, account.pw_gid)
            self._check_reachable()

    def _check_reachable(self) -> None:
        result = run(as_unprivileged(["test", "-w", str(self.base_dir)]), check=False)
        if result.returncode != 0:
            raise LabError(
                f"user {UNPRIVILEGED_USER} cannot write {self.base_dir}; place the lab under "
                "directories that every user can search (mode o+x), e.g. --dir ./.mesh-lab"
            )

    def _write_owned(self, path: Path, text: str, mode: int) -> None:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        if running_as_root():
            account = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(path, account.pw_uid, account.pw_gid)

    def _append_settings(self) -> None:
        settings = (
            "\n# Written by mesh-lab. The port is given on the pg_ctl command line.\n"
            f"listen_addresses = '{self.host}'\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "password_encryption = 'scram-sha-256'\n"
            # The SQLSTATE in each log line shows why a login failed (28P01:
            # wrong password), which libpq does not pass to the client.
            "log_line_prefix = '%m [%p] sqlstate=%e '\n"
        )
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
            handle.write(settings)

    # Lifecycle

    def start(self) -> int:
        """Start the server on a free port, wait until it accepts logins, return the port."""
        last_error: LabError | None = None
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = pick_free_port()
            try:
                self._pg_ctl_start()
                self.wait_until_ready()
                return self.port
            except LabError as exc:
                # The free port may have been taken between the probe and the start.
                logger.warning("PostgreSQL start attempt %d on port %d failed: %s", attempt, self.port, exc)
                last_error = exc
                self.stop()
        raise LabError(f"PostgreSQL did not start after {START_ATTEMPTS} attempts; see {self.log_file}") from last_error

    def _pg_ctl_start(self) -> None:
        self._run(
            [
                self._bin("pg_ctl"),
                "start",
                "--pgdata", str(self.data_dir),
                "--log", str(self.log_file),
                "--options", f"-p {self.port}",
                "--wait",
                "--timeout", str(START_TIMEOUT_SECONDS),
            ],
            timeout=START_TIMEOUT_SECONDS + 10,
        )

    def wait_until_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Log in over TCP as the admin until it works or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(**self.connect_kwargs()) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise LabError(f"PostgreSQL on {self.host}:{self.port} did not accept logins: {exc}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server with ``pg_ctl stop -m fast`` if it runs."""
        if not self.is_running():
            return
        self._run([self._bin("pg_ctl"), "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait"])

    def is_running(self) -> bool:
        """Return whether ``pg_ctl status`` finds a running server (exit 0)."""
        if not (self.data_dir / "PG_VERSION").is_file():
            return False
        result = self._run([self._bin("pg_ctl"), "status", "--pgdata", str(self.data_dir)], check=False)
        return result.returncode == 0

    def pid(self) -> int | None:
        """Return the postmaster pid from postmaster.pid, or None without one."""
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    # Connecting

    def connect_kwargs(self, user: str | None = None, password: str | None = None, dbname: str = ADMIN_DATABASE) -> dict:
        """Return psycopg.connect keywords; without ``user`` they log in as the admin."""
        if user is None:
            user = self.admin_user
            password = read_secret_file(self.admin_password_file)
        return {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "dbname": dbname,
            "sslmode": "disable",
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        }
