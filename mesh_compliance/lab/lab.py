"""Start, inspect and remove one lab: PostgreSQL, the Consul double and a seeded target root."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from mesh_compliance.lab import consul, lab_hosts, processes, seed, state
from mesh_compliance.lab.commands import running_as_root
from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.fleet import TestHosts
from mesh_compliance.lab.postgres import PostgresServer
from mesh_compliance.lab.rootfs import TargetRoot
from mesh_compliance.lab.secretfiles import generate_secret, make_private_dir, write_secret_file
from mesh_compliance.lab.sitefile import LabSite, write_site_file
from mesh_compliance.lab.state import LabPaths

logger = logging.getLogger("mesh_compliance.lab")

DEFAULT_CONSUL_VERSION = "1.21.4"
DEFAULT_DIR = ".mesh-lab"


class Lab:
    """One lab directory and what runs for it.

    Use ``Lab.up`` to create one and ``Lab.open`` to attach to one that runs.
    """

    def __init__(self, directory: Path, record: dict) -> None:
        self.paths = LabPaths(Path(directory).absolute())
        self.record = record

    # Attributes the project's tests use

    @property
    def dir(self) -> Path:
        return self.paths.dir

    @property
    def root(self) -> Path:
        return self.paths.root

    @property
    def site_file(self) -> Path:
        return self.paths.site_file

    @property
    def management_token_file(self) -> Path:
        return self.paths.management_token

    @property
    def consul_url(self) -> str | None:
        return self.record.get("consul", {}).get("url")

    @property
    def consul_version(self) -> str:
        return self.record.get("consul", {}).get("version", DEFAULT_CONSUL_VERSION)

    @property
    def pg(self) -> PostgresServer:
        """The lab's PostgreSQL: host, port, admin_user, admin_password_file, connect_kwargs()."""
        postgres = self.record.get("postgres", {})
        bin_dir = postgres.get("bin_dir")
        return PostgresServer(
            base_dir=self.paths.postgres,
            admin_password_file=self.paths.pg_admin_password,
            log_file=self.paths.postgres_log,
            bin_dir=Path(bin_dir) if bin_dir else None,
            port=postgres.get("port"),
        )

    @property
    def target_root(self) -> TargetRoot:
        return TargetRoot(self.paths.root)

    @property
    def pytest_args(self) -> list[str]:
        """pytest arguments that point the suite at this lab."""
        return [
            f"--site={self.site_file}",
            f"--root={self.root}",
            f"--consul-addr={self.consul_url}",
            f"--consul-token-file={self.management_token_file}",
        ]

    # Lifecycle

    @classmethod
    def up(cls, directory: str | Path = DEFAULT_DIR, consul_version: str = DEFAULT_CONSUL_VERSION,
           hosts: int = 0) -> Lab:
        """Create ``directory``, start PostgreSQL and the Consul double, seed the drift.

        ``hosts`` test hosts reached over SSH are started too and listed in the
        site file (mesh_compliance.lab.lab_hosts). On a failure the started
        processes are stopped and the directory is kept for its logs; ``down``
        removes it.
        """
        paths = LabPaths(Path(directory).absolute())
        _check_can_start(paths)

        paths.dir.mkdir(parents=True, exist_ok=True)
        # PostgreSQL runs as nobody when the lab runs as root, so it must reach its directory.
        os.chmod(paths.dir, 0o755)
        lab = cls(paths.dir, {"state": state.STARTING, "dir": str(paths.dir)})
        lab._save()

        try:
            lab._start(consul_version)
            if hosts:
                lab._start_hosts(hosts)
        except LabError as exc:
            lab._mark_failed()
            raise LabError(
                f"{exc} (the lab is stopped; its logs are in {paths.logs}; "
                f"remove it with mesh-lab down --dir {paths.dir})"
            ) from exc
        except BaseException:
            lab._mark_failed()
            raise
        return lab

    @classmethod
    def open(cls, directory: str | Path = DEFAULT_DIR) -> Lab:
        """Attach to the lab in ``directory`` through its lab.json."""
        paths = LabPaths(Path(directory).absolute())
        return cls(paths.dir, state.read_state(paths))

    def down(self) -> None:
        """Stop every process of the lab and remove its directory, also after a failed start."""
        self._stop_processes()
        try:
            shutil.rmtree(self.dir)
        except OSError as exc:
            raise LabError(f"cannot remove {self.dir}: {exc.strerror}; remove it by hand") from exc
        logger.info("removed lab %s", self.dir)

    def status(self) -> dict:
        """Return what runs: the recorded state and whether each process is alive."""
        postgres = self.record.get("postgres", {})
        consul_record = self.record.get("consul", {})
        pg_running = self.pg.is_running() if postgres else False
        consul_running = processes.is_alive(self._consul_pid(), self._consul_command_marker())
        consul_listening = consul_running and _accepts_tcp(self.consul_url)
        hosts = self._host_status()
        hosts_running = all(host["running"] for host in hosts)

        return {
            "dir": str(self.dir),
            "state": self.record.get("state"),
            "up": self.record.get("state") == state.UP and pg_running and consul_listening and hosts_running,
            "postgres": {
                "running": pg_running,
                "pid": self.pg.pid() if pg_running else None,
                "host": postgres.get("host"),
                "port": postgres.get("port"),
            },
            "consul": {
                "running": consul_running,
                "listening": consul_listening,
                "pid": self._consul_pid(),
                "url": consul_record.get("url"),
                "version": consul_record.get("version"),
            },
            "site_file": str(self.site_file),
            "root": str(self.root),
            "hosts": hosts,
        }

    def _host_status(self) -> list[dict]:
        if not self.record.get("hosts"):
            return []
        fleet = TestHosts.adopt(self.record["hosts"])
        return [{"node": lab_hosts.host_node_name(host), "address": host.address, "running": host.running}
                for host in fleet.hosts]

    # Steps of up

    def _start(self, consul_version: str) -> None:
        self._write_secrets()
        self._start_postgres()
        self._start_consul(consul_version)
        site = self._lab_site()

        self.target_root.create()
        seed.seed_root(self.target_root, site, self.paths.build)
        admin = consul.ConsulAdmin(self.consul_url, self.management_token_file)
        try:
            seed.seed_consul(admin, site)
        finally:
            admin.close()

        write_site_file(self.site_file, site)
        self.paths.pytest_args.write_text("".join(f"{arg}\n" for arg in self.pytest_args), encoding="utf-8")
        self.record["state"] = state.UP
        self._save()
        logger.info("lab is up in %s", self.dir)

    def _start_hosts(self, count: int) -> None:
        hosts = lab_hosts.start_hosts(self.dir / "hosts", self.paths.build, count)
        self.record["hosts"] = hosts.record()
        self._save()
        with open(self.site_file, "a", encoding="utf-8") as site:
            site.write(lab_hosts.node_tables(hosts, self.root))
        logger.info("%d test hosts are up", count)

    def _write_secrets(self) -> None:
        self.paths.logs.mkdir(exist_ok=True)
        make_private_dir(self.paths.secrets)
        write_secret_file(self.paths.pg_admin_password, generate_secret())
        write_secret_file(self.paths.db_password, generate_secret())

    def _start_postgres(self) -> None:
        pg = self.pg
        pg.init()
        self.record["postgres"] = {"host": pg.host, "bin_dir": str(pg.bin_dir), "admin_user": pg.admin_user}
        self._save()

        pg.start()
        self.record["postgres"].update(port=pg.port, pid=pg.pid())
        self._save()
        logger.info("PostgreSQL %s runs on %s:%d", pg.bin_dir.parent.name, pg.host, pg.port)

    def _start_consul(self, version: str) -> None:
        make_private_dir(self.paths.consul)
        consul.write_management_token(self.paths.management_token)
        self.record["consul"] = {"version": version}
        self._save()

        ready = consul.start_double(
            self.paths.management_token,
            self.paths.consul_ready,
            self.paths.consul_pid,
            self.paths.consul_log,
            version,
        )
        self.record["consul"].update(url=ready["url"], pid=ready["pid"])
        self._save()
        logger.info("Consul double %s listens on %s", version, ready["url"])

    def _lab_site(self) -> LabSite:
        pg = self.pg
        return LabSite(
            db_host=pg.host,
            db_port=pg.port,
            db_password_file=self.paths.db_password,
            admin_user=pg.admin_user,
            admin_password_file=self.paths.pg_admin_password,
        )

    # Helpers

    def _consul_pid(self) -> int | None:
        pid = self.record.get("consul", {}).get("pid")
        if pid:
            return int(pid)
        try:
            return int(self.paths.consul_pid.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def _consul_command_marker(self) -> str:
        # The ready file path is unique to this lab and is on the double's command line.
        return str(self.paths.consul_ready)

    def _stop_processes(self) -> None:
        if self.record.get("hosts"):
            try:
                lab_hosts.stop_hosts(self.record["hosts"])
            except LabError as exc:
                logger.error("stopping the test hosts of %s failed: %s", self.dir, exc)

        if (self.paths.postgres / "data" / "PG_VERSION").is_file():
            try:
                self.pg.stop()
            except LabError as exc:
                logger.error("stopping PostgreSQL in %s failed: %s", self.paths.postgres, exc)

        pid = self._consul_pid()
        if processes.terminate(pid, self._consul_command_marker()):
            logger.info("stopped the Consul double (pid %d)", pid)

    def _mark_failed(self) -> None:
        self.record["state"] = state.FAILED
        self._save()
        self._stop_processes()

    def _save(self) -> None:
        state.write_state(self.paths, self.record)


def _check_can_start(paths: LabPaths) -> None:
    if not running_as_root():
        raise LabError(
            "mesh-lab up must run as root: useradd --root needs chroot and the seeded files "
            "belong to carbonio-gateway; run it as root or with sudo"
        )

    if paths.state_file.exists():
        record = state.read_state(paths)
        if record.get("state") == state.UP:
            raise LabError(f"a lab is already up in {paths.dir}; run mesh-lab down --dir {paths.dir} first")
        raise LabError(f"a stopped or half-started lab is in {paths.dir}; run mesh-lab down --dir {paths.dir} first")

    if paths.dir.exists() and any(paths.dir.iterdir()):
        raise LabError(f"{paths.dir} exists and is not empty; choose another --dir or remove it")


def _accepts_tcp(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return True
    except OSError:
        return False
