"""Tests for the lab: lifecycle, PostgreSQL, target root, seeded Consul state, site file.

They start real PostgreSQL servers and the Consul double, so they run as root
(useradd --root needs chroot) and remove every lab they start.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import psycopg
import pytest
import requests

from mesh_compliance.lab import Lab, LabError, processes, seed
from mesh_compliance.lab.postgres import PostgresServer
from mesh_compliance.lab.secretfiles import generate_secret, make_private_dir, write_secret_file
from mesh_compliance.lab.state import LabPaths, write_state

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab runs useradd --root, which needs root")

MESH_LAB = [sys.executable, "-m", "mesh_compliance.lab.cli"]
REQUEST_TIMEOUT = 10

# The checkout root, so the CLI imports this code from any working directory.
CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def workspace():
    """A parent directory every user can search, since PostgreSQL runs as nobody."""
    path = Path(tempfile.mkdtemp(prefix="mesh-lab-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(workspace):
    started = Lab.up(workspace / "session-lab")
    yield started
    if started.dir.exists():
        started.down()


def mesh_lab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [*MESH_LAB, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env=environment,
        check=False,
    )


def lab_pids(directory: Path) -> list[int]:
    record = json.loads((directory / "lab.json").read_text())
    return [record["postgres"]["pid"], record["consul"]["pid"]]


def secret_values(lab: Lab) -> list[str]:
    return [path.read_text().strip() for path in (lab.dir / "secrets").iterdir()] + [
        lab.management_token_file.read_text().strip()
    ]


def consul_get(lab: Lab, path: str, token: bool = True) -> requests.Response:
    headers = {"X-Consul-Token": lab.management_token_file.read_text().strip()} if token else {}
    return requests.get(f"{lab.consul_url}/v1{path}", headers=headers, timeout=REQUEST_TIMEOUT)


# Lifecycle through the CLI


def test_cli_up_status_down(workspace):
    directory = workspace / "cli-lab"

    up = mesh_lab("up", "--dir", str(directory))
    assert up.returncode == 0, up.stderr
    assert "lab is up" in up.stdout
    pids = lab_pids(directory)

    status = mesh_lab("status", "--dir", str(directory), "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["up"] is True
    assert report["postgres"]["running"] is True
    assert report["consul"]["listening"] is True

    again = mesh_lab("up", "--dir", str(directory))
    assert again.returncode == 2
    assert "already up" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    down = mesh_lab("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert not directory.exists()
    for pid in pids:
        assert not processes.is_alive(pid)

    after = mesh_lab("status", "--dir", str(directory))
    assert after.returncode == 3


def test_cli_default_dir_in_cwd(workspace):
    cwd = workspace / "cwd"
    cwd.mkdir()

    status = mesh_lab("status", cwd=cwd)

    assert status.returncode == 3
    assert str(cwd / ".mesh-lab") in status.stdout


def test_cli_down_half_started_lab(workspace):
    """A lab stopped after PostgreSQL started and before Consul did still comes down whole."""
    paths = LabPaths(workspace / "half-lab")
    paths.dir.mkdir(mode=0o755)
    write_state(paths, {"state": "starting", "dir": str(paths.dir)})
    make_private_dir(paths.secrets)
    paths.logs.mkdir()
    write_secret_file(paths.pg_admin_password, generate_secret())
    server = PostgresServer(paths.postgres, paths.pg_admin_password, paths.postgres_log)
    server.init()
    server.start()
    pid = server.pid()
    assert processes.is_alive(pid)

    status = mesh_lab("status", "--dir", str(paths.dir))
    down = mesh_lab("down", "--dir", str(paths.dir))

    assert status.returncode == 3
    assert down.returncode == 0, down.stderr
    assert not paths.dir.exists()
    assert not processes.is_alive(pid)


def test_cli_down_rejects_non_lab_dir(workspace):
    directory = workspace / "not-a-lab"
    directory.mkdir()
    (directory / "keep.txt").write_text("data")

    down = mesh_lab("down", "--dir", str(directory))

    assert down.returncode == 2
    assert "lab.json not found" in down.stderr
    assert (directory / "keep.txt").exists()


def test_cli_up_rejects_non_empty_dir(workspace):
    directory = workspace / "occupied"
    directory.mkdir()
    (directory / "keep.txt").write_text("data")

    up = mesh_lab("up", "--dir", str(directory))

    assert up.returncode == 2
    assert "not empty" in up.stderr
    assert sorted(path.name for path in directory.iterdir()) == ["keep.txt"]


def test_cli_down_without_lab_is_noop(workspace):
    down = mesh_lab("down", "--dir", str(workspace / "never-created"))

    assert down.returncode == 0
    assert "nothing to stop" in down.stdout


# Lifecycle through the API


def test_api_up_down_leaves_nothing(workspace):
    started = Lab.up(workspace / "api-lab")
    pids = lab_pids(started.dir)
    assert Lab.open(started.dir).status()["up"] is True

    started.down()

    assert not started.dir.exists()
    for pid in pids:
        assert not processes.is_alive(pid)


def test_api_failed_up_stops_processes(workspace, monkeypatch):
    directory = workspace / "failing-lab"

    def fail_seed(admin, site):
        raise LabError("seeding failed on purpose")

    monkeypatch.setattr(seed, "seed_consul", fail_seed)
    with pytest.raises(LabError) as failure:
        Lab.up(directory)

    assert "seeding failed on purpose" in str(failure.value)
    assert f"mesh-lab down --dir {directory}" in str(failure.value)
    record = json.loads((directory / "lab.json").read_text())
    assert record["state"] == "failed"
    for pid in lab_pids(directory):
        assert not processes.is_alive(pid)

    Lab.open(directory).down()

    assert not directory.exists()


def test_api_attributes(lab):
    assert lab.dir.is_dir()
    assert lab.root == lab.dir / "root"
    assert lab.site_file == lab.dir / "site.toml"
    assert lab.consul_url.startswith("http://127.0.0.1:")
    assert lab.management_token_file == lab.dir / "consul" / "management-token"
    assert lab.pg.host == "127.0.0.1"
    assert lab.pg.admin_user == "postgres"
    assert lab.pg.admin_password_file == lab.dir / "secrets" / "pg-admin-password"
    assert lab.pytest_args == [
        f"--site={lab.site_file}",
        f"--root={lab.root}",
        f"--consul-addr={lab.consul_url}",
        f"--consul-token-file={lab.management_token_file}",
    ]


def test_api_status_up(lab):
    status = Lab.open(lab.dir).status()

    assert status["up"] is True
    assert status["postgres"]["port"] == lab.pg.port
    assert status["consul"]["url"] == lab.consul_url


def test_pytest_args_file(lab):
    lines = (lab.dir / "pytest.args").read_text().splitlines()

    assert lines == lab.pytest_args


# PostgreSQL


def test_postgres_right_password_connects(lab):
    with psycopg.connect(**lab.pg.connect_kwargs()) as connection:
        listen = connection.execute("SHOW listen_addresses").fetchone()[0]
        encryption = connection.execute("SHOW password_encryption").fetchone()[0]
        address = connection.execute("SELECT inet_server_addr()::text").fetchone()[0]

    assert listen == "127.0.0.1"
    assert encryption == "scram-sha-256"
    assert address.startswith("127.0.0.1")


def test_postgres_wrong_password_fails_28P01(lab):
    keywords = lab.pg.connect_kwargs(user="postgres", password="not-the-password")

    with pytest.raises(psycopg.OperationalError) as failure:
        psycopg.connect(**keywords)

    # libpq does not hand the SQLSTATE of a failed login to the client, so the
    # server log (its line prefix carries %e) is where 28P01 shows.
    assert "password authentication failed" in str(failure.value)
    log = (lab.dir / "logs" / "postgres.log").read_text()
    assert 'sqlstate=28P01 FATAL:  password authentication failed for user "postgres"' in log


def test_postgres_hba_scram_only(lab):
    data_dir = lab.dir / "postgres" / "data"
    rules = [
        line.split()
        for line in (data_dir / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert rules == [
        ["local", "all", "all", "scram-sha-256"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
    ]


def test_postgres_socket_in_lab_dir(lab):
    socket_path = lab.dir / "postgres" / "run" / f".s.PGSQL.{lab.pg.port}"

    assert stat.S_ISSOCK(socket_path.stat().st_mode)


def test_postgres_has_no_files_role_yet(lab):
    with psycopg.connect(**lab.pg.connect_kwargs()) as connection:
        roles = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = 'carbonio-files-adm'").fetchall()
        databases = connection.execute("SELECT 1 FROM pg_database WHERE datname = 'carbonio-files-adm'").fetchall()

    assert roles == []
    assert databases == []


def test_initdb_password_file_removed(lab):
    assert not (lab.dir / "postgres" / "initdb-pwfile").exists()


# Target root


def test_root_package_installed(lab):
    result = subprocess.run(
        ["dpkg-query", f"--admindir={lab.root}/var/lib/dpkg", "--show", "--showformat=${Status}", "carbonio-files-db"],
        capture_output=True,
        text=True,
        check=False,
    )
    conffiles = subprocess.run(
        ["dpkg-query", f"--admindir={lab.root}/var/lib/dpkg", "--show", "--showformat=${Conffiles}", "carbonio-files-db"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.stdout == "install ok installed"
    assert "/etc/zextras/service-discover/carbonio-files-db.hcl" in conffiles.stdout
    assert (lab.root / "usr/bin/carbonio-files-db").stat().st_mode & 0o111
    assert (lab.root / "var/log/dpkg.log").read_text().count("status installed carbonio-files-db") == 1


def test_root_unit_disabled(lab):
    result = subprocess.run(
        ["systemctl", f"--root={lab.root}", "is-enabled", "carbonio-gateway.service"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.stdout.strip() == "disabled"


def test_root_unit_lacks_token_file(lab):
    unit = (lab.root / "lib/systemd/system/carbonio-gateway.service").read_text()

    assert "ExecStart=/usr/bin/consul connect envoy -admin-bind localhost:0" in unit
    assert "-token-file" not in unit
    assert "User=carbonio-gateway" in unit


def test_root_user_in_passwd(lab):
    passwd = {line.split(":")[0]: line.split(":") for line in (lab.root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (lab.root / "etc/group").read_text().splitlines()}

    assert "carbonio-gateway" in passwd
    assert passwd["carbonio-gateway"][6] == "/sbin/nologin"
    assert int(passwd["carbonio-gateway"][2]) < 1000
    assert "carbonio-gateway" in groups


def test_root_token_file_drift(lab):
    config_dir = lab.root / "etc/carbonio/gateway/service-discover"
    passwd = {line.split(":")[0]: line.split(":") for line in (lab.root / "etc/passwd").read_text().splitlines()}
    uid = int(passwd["carbonio-gateway"][2])
    token = config_dir / "token"

    assert token.read_text() == "null\n"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.stat().st_uid == uid
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o750
    assert config_dir.stat().st_uid == uid


def test_root_config_files(lab):
    config_dir = lab.root / "etc/carbonio/gateway/service-discover"
    rules = json.loads((config_dir / "policies.json").read_text())
    registration = json.loads((config_dir / "carbonio-files-db-external.json").read_text())
    gateway_config = (config_dir / "gateway-config.hcl").read_text()

    assert rules["service"]["carbonio-files-db"] == {"policy": "write"}
    assert registration["Service"]["Port"] == lab.pg.port
    assert registration["NodeMeta"] == {"external-node": "true", "external-probe": "true"}
    assert 'Kind = "terminating-gateway"' in gateway_config


def test_root_leaves_host_untouched(lab):
    host_passwd = Path("/etc/passwd").read_text()
    host_dpkg_log = Path("/var/log/dpkg.log")

    assert "carbonio-gateway" not in host_passwd
    assert not Path("/lib/systemd/system/carbonio-gateway.service").exists()
    # Only an install writes this action line, and the lab's install logs to the root.
    if host_dpkg_log.exists():
        assert " install carbonio-files-db:" not in host_dpkg_log.read_text(errors="replace")


# Seeded Consul state


def test_consul_policy_drift(lab):
    response = consul_get(lab, "/acl/policy/name/carbonio-gateway-policy")

    assert response.status_code == 200
    policy = response.json()
    assert policy["Description"] == "Policy for carbonio-gateway"
    assert '"service":[{"carbonio-gateway":{"policy":"write"}}]' in policy["Rules"]
    assert "carbonio-files-db" not in policy["Rules"]


def test_consul_denies_anonymous(lab):
    response = consul_get(lab, "/acl/policy/name/carbonio-gateway-policy", token=False)

    assert response.status_code == 403


def test_consul_catalog_wrong_port(lab):
    response = consul_get(lab, "/catalog/service/carbonio-files-db")

    assert response.status_code == 200
    entries = response.json()
    assert len(entries) == 1
    assert entries[0]["Node"] == "external-files-db-node"
    assert entries[0]["ServiceID"] == "carbonio-gateway"
    assert entries[0]["ServicePort"] == 5433
    assert entries[0]["NodeMeta"] == {"external-node": "true"}
    assert entries[0]["Address"] == "127.0.0.1"


def test_consul_no_gateway_entry(lab):
    response = consul_get(lab, "/config/terminating-gateway/carbonio-gateway")

    assert response.status_code == 404


def test_consul_kv_without_password(lab):
    name = consul_get(lab, "/kv/carbonio-files/db-name?raw")
    username = consul_get(lab, "/kv/carbonio-files/db-username?raw")
    password = consul_get(lab, "/kv/carbonio-files/db-password")

    assert name.text == "carbonio-files-adm"
    assert username.text == "carbonio-files-adm"
    assert password.status_code == 404


# Site file and secrets


def test_site_file_parses(lab):
    site = tomllib.loads(lab.site_file.read_text())

    assert site["external_service"]["address"] == "127.0.0.1"
    assert site["external_service"]["port"] == lab.pg.port
    assert site["kv"]["values"]["db_password"] == {"file": str(lab.dir / "secrets" / "db-password")}
    assert site["database"]["admin"]["password"] == {"file": str(lab.pg.admin_password_file)}
    assert site["packages"]["absent"] == ["carbonio-files-db"]


def test_site_file_has_no_secrets(lab):
    text = lab.site_file.read_text()

    for secret in secret_values(lab):
        assert secret not in text


def test_lab_json_has_no_secrets(lab):
    text = (lab.dir / "lab.json").read_text()

    for secret in secret_values(lab):
        assert secret not in text


def test_secret_file_modes(lab):
    secrets_dir = lab.dir / "secrets"

    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for path in [*secrets_dir.iterdir(), lab.management_token_file]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
