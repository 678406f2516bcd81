"""Fleet audits: node controls on every node of their role, over real SSH to test hosts."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import needs_root
from tests.labstate import build_package
from tests.suite import CHECKOUT, run_suite

pytestmark = [needs_root, pytest.mark.lab]

sshd_missing = not os.path.exists("/usr/sbin/sshd")


@pytest.fixture(scope="module")
def fleet(lab_parent, compliant_lab):
    if sshd_missing:
        pytest.skip("OpenSSH server is not installed (scripts/bootstrap installs it)")
    from mesh_compliance.lab.fleet import TestHosts

    hosts = TestHosts.up(lab_parent / "fleet", 2)
    yield hosts
    hosts.down()


def fleet_site(compliant_lab, fleet, directory):
    files_host, proxy_host = fleet.hosts
    text = open(compliant_lab.site_file).read() + f"""
[fleet]
ssh_config = "{fleet.ssh_config}"

[[nodes]]
name = "gateway"
roles = ["gateway"]
connection = "local://"
root = "{compliant_lab.root}"

[[nodes]]
name = "files-1"
roles = ["files"]
connection = "{files_host.connection}"

[[nodes]]
name = "proxy-1"
roles = ["proxy"]
connection = "{proxy_host.connection}"
"""
    path = directory / "fleet-site.toml"
    path.write_text(text)
    return path


def records(run, control_id):
    return {record["node"]: record for record in run.document["results"] if record["control"] == control_id}


def test_package_absent_runs_on_every_node(compliant_lab, fleet, tmp_path):
    run = run_suite(compliant_lab, tmp_path, f"--site={fleet_site(compliant_lab, fleet, tmp_path)}",
                    "--control=files-db-package-absent")
    assert set(records(run, "files-db-package-absent")) == {"gateway root=" + str(compliant_lab.root), "files-1", "proxy-1"}
    assert {record["verdict"] for record in run.document["results"]} == {"PASS"}


def test_role_controls_run_on_their_nodes(compliant_lab, fleet, tmp_path):
    run = run_suite(compliant_lab, tmp_path, f"--site={fleet_site(compliant_lab, fleet, tmp_path)}",
                    "--control=files-node-packages", "--control=proxy-node-packages", "--control=gateway-unit")
    assert set(records(run, "files-node-packages")) == {"files-1"}
    assert set(records(run, "proxy-node-packages")) == {"proxy-1"}
    assert set(records(run, "gateway-unit")) == {"gateway root=" + str(compliant_lab.root)}
    assert records(run, "files-node-packages")["files-1"]["verdict"] == "FAIL"


def test_package_installed_on_one_node_fails_there(compliant_lab, fleet, tmp_path):
    files_host = fleet.hosts[0]
    deb = build_package(tmp_path)
    subprocess.run(["scp", "-F", str(fleet.ssh_config), str(deb), f"root@{files_host.address}:/tmp/files-db.deb"], check=True)
    subprocess.run(["ssh", "-F", str(fleet.ssh_config), f"root@{files_host.address}", "dpkg -i /tmp/files-db.deb"], check=True,
                   capture_output=True)
    try:
        run = run_suite(compliant_lab, tmp_path, f"--site={fleet_site(compliant_lab, fleet, tmp_path)}",
                        "--control=files-db-package-absent")
    finally:
        subprocess.run(["ssh", "-F", str(fleet.ssh_config), f"root@{files_host.address}", "dpkg --purge carbonio-files-db"],
                       capture_output=True)
    verdicts = {node: record["verdict"] for node, record in records(run, "files-db-package-absent").items()}
    assert verdicts["files-1"] == "FAIL"
    assert verdicts["proxy-1"] == "PASS"
    assert run.code == 10


def test_unreachable_node_is_error_not_skipped(compliant_lab, fleet, tmp_path):
    proxy_host = fleet.hosts[1]
    site = fleet_site(compliant_lab, fleet, tmp_path)
    fleet.stop(proxy_host.name)
    try:
        run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--control=files-db-package-absent",
                        "--control=proxy-node-packages")
    finally:
        fleet.start(proxy_host.name)
    for control_id in ("files-db-package-absent", "proxy-node-packages"):
        assert records(run, control_id)["proxy-1"]["verdict"] == "ERROR"
        assert "unreachable" in records(run, control_id)["proxy-1"]["message"]
    assert records(run, "files-db-package-absent")["files-1"]["verdict"] == "PASS"
    assert run.code == 11


def test_parallel_workers_give_one_combined_result(compliant_lab, fleet, tmp_path):
    run = run_suite(compliant_lab, tmp_path, f"--site={fleet_site(compliant_lab, fleet, tmp_path)}", "-n", "2")
    nodes = {record["node"] for record in run.document["results"]}
    assert {"files-1", "proxy-1"} <= nodes
    serial = run_suite(compliant_lab, tmp_path, f"--site={fleet_site(compliant_lab, fleet, tmp_path)}")
    assert sorted((r["control"], r["node"]) for r in run.document["results"]) == sorted(
        (r["control"], r["node"]) for r in serial.document["results"])


def test_yaml_inventory_drives_fleet_run(compliant_lab, fleet, tmp_path):
    files_host, proxy_host = fleet.hosts
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(f"""
all:
  children:
    carbonio:
      children:
        filesServers:
          hosts:
            files-1:
              ansible_host: {files_host.address}
        proxyServers:
          hosts:
            proxy-1:
              ansible_host: {proxy_host.address}
""")
    site = tmp_path / "inventory-site.toml"
    site.write_text(open(compliant_lab.site_file).read()
                    + f'\n[fleet]\nssh_config = "{fleet.ssh_config}"\nansible_inventory = "{inventory}"\n')

    run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--control=files-db-package-absent",
                    "--control=proxy-node-packages")

    assert set(records(run, "files-db-package-absent")) == {"files-1", "proxy-1"}
    assert records(run, "files-db-package-absent")["files-1"]["verdict"] == "PASS", run.output[-3000:]
    assert set(records(run, "proxy-node-packages")) == {"proxy-1"}


def accepted_logins(host) -> int:
    return host.sshd_log.read_text(encoding="utf-8").count("Accepted publickey for root")


def test_one_login_per_node_without_control_path_in_config(compliant_lab, fleet, tmp_path):
    plain_config = tmp_path / "ssh_config"
    plain_config.write_text("".join(line for line in fleet.ssh_config.read_text().splitlines(keepends=True)
                                    if not line.strip().startswith(("ControlMaster", "ControlPath", "ControlPersist"))))
    site = tmp_path / "plain-site.toml"
    site.write_text(fleet_site(compliant_lab, fleet, tmp_path).read_text().replace(str(fleet.ssh_config), str(plain_config)))
    from mesh_compliance.nodes import ssh_control_path

    for host in fleet.hosts:
        subprocess.run(["ssh", "-o", f"ControlPath={ssh_control_path(host.connection)}", "-O", "exit", host.address],
                       capture_output=True, timeout=10)
    before = [accepted_logins(host) for host in fleet.hosts]

    run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--control=files-db-package-absent",
                    "--control=files-node-packages", "--control=proxy-node-packages")

    assert records(run, "files-db-package-absent")["files-1"]["verdict"] == "PASS", run.output[-3000:]
    assert [accepted_logins(host) - count for host, count in zip(fleet.hosts, before)] == [1, 1]


class Relay:
    """TCP relay from a test host's link address on this machine to the lab's PostgreSQL on 127.0.0.1."""

    def __init__(self, listen_address: str, target_port: int):
        import socket
        import threading

        self.server = socket.create_server((listen_address, 0))
        self.port = self.server.getsockname()[1]
        self.target_port = target_port
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self):
        self.server.close()


def gateway_over_ssh_site(compliant_lab, fleet, directory, relay):
    gateway_host = fleet.hosts[0]
    text = open(compliant_lab.site_file).read().replace(
        "[database]", f'[database]\nhost = "{gateway_host.peer_address}"\nport = {relay.port}', 1)
    text += f"""
[fleet]
ssh_config = "{fleet.ssh_config}"

[[nodes]]
name = "remote-gateway"
roles = ["gateway"]
connection = "{gateway_host.connection}"
"""
    path = directory / "gateway-site.toml"
    path.write_text(text)
    return path


def test_db_login_runs_from_gateway_node(compliant_lab, fleet, tmp_path):
    relay = Relay(fleet.hosts[0].peer_address, compliant_lab.pg.port)
    try:
        run = run_suite(compliant_lab, tmp_path, f"--site={gateway_over_ssh_site(compliant_lab, fleet, tmp_path, relay)}",
                        "--control=db-login")
    finally:
        relay.close()
    record = records(run, "db-login")["cluster"]
    assert record["verdict"] == "PASS", run.output[-2000:]
    assert "gateway node remote-gateway, through an SSH forward" in record["evidence"]["observed"]["vantage point"]


def test_db_login_from_unreachable_gateway_is_error(compliant_lab, fleet, tmp_path):
    relay = Relay(fleet.hosts[0].peer_address, compliant_lab.pg.port)
    site = gateway_over_ssh_site(compliant_lab, fleet, tmp_path, relay)
    fleet.stop(fleet.hosts[0].name)
    try:
        run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--control=db-login")
    finally:
        fleet.start(fleet.hosts[0].name)
        relay.close()
    record = records(run, "db-login")["cluster"]
    assert record["verdict"] == "ERROR"
    assert "SSH forward" in record["message"]


# -- fixing a remote node ------------------------------------------------------------------------

POLICY_FILE = "/etc/carbonio/gateway/service-discover/policies.json"


def remote_gateway_site(compliant_lab, fleet, directory):
    """A site whose only node is a test host reached over SSH, with the lab's root inside it."""
    text = open(compliant_lab.site_file).read() + f"""
[fleet]
ssh_config = "{fleet.ssh_config}"

[[nodes]]
name = "remote-gateway"
roles = ["gateway"]
connection = "{fleet.hosts[0].connection}"
root = "{compliant_lab.root}"
"""
    path = directory / "remote-gateway-site.toml"
    path.write_text(text)
    return path


def rollback(compliant_lab, site, journal_dir, run_id):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={CHECKOUT}", *compliant_lab.pytest_args,
         f"--site={site}", f"--journal-dir={journal_dir}", f"--rollback={run_id}"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=300, env=environment,
    )


def drift_remote_file(fleet, path, content):
    subprocess.run(["ssh", "-F", str(fleet.ssh_config), f"root@{fleet.hosts[0].address}",
                    f"printf %s '{content}' > {path} && chmod 0644 {path}"], check=True)


def test_fix_and_rollback_on_remote_node(compliant_lab, fleet, tmp_path):
    host = fleet.hosts[0]
    site = remote_gateway_site(compliant_lab, fleet, tmp_path)
    file_on_runner = compliant_lab.root / POLICY_FILE.lstrip("/")
    file_on_host = host.root / str(file_on_runner).lstrip("/")
    expected = json.loads(file_on_runner.read_text())
    drift_remote_file(fleet, file_on_runner, "{}")

    fixed = run_suite(compliant_lab, tmp_path, f"--site={site}", "--fix", "--control=policy-file-matches",
                      f"--journal-dir={tmp_path / 'journal'}")

    record = records(fixed, "policy-file-matches")[f"remote-gateway root={compliant_lab.root}"]
    assert record["verdict"] == "FIXED", fixed.output[-3000:]
    assert json.loads(file_on_host.read_text()) == expected
    assert file_on_host.stat().st_mode & 0o777 == 0o640
    assert json.loads(file_on_runner.read_text()) == expected
    backups = list(file_on_host.parent.glob("policies.json.*.bak"))
    assert [backup.read_text() for backup in backups] == ["{}"]
    journal = (tmp_path / "journal" / f"{fixed.document['run_id']}.jsonl").read_text()
    assert '"node": "remote-gateway"' in journal

    undone = rollback(compliant_lab, site, tmp_path / "journal", fixed.document["run_id"])

    assert undone.returncode == 0, undone.stdout[-3000:]
    assert "on remote-gateway" in undone.stdout
    assert file_on_host.read_text() == "{}"
    assert json.loads(file_on_runner.read_text()) == expected


def test_rollback_without_node_in_site_restores_nothing(compliant_lab, fleet, tmp_path):
    site = remote_gateway_site(compliant_lab, fleet, tmp_path)
    file_on_runner = compliant_lab.root / POLICY_FILE.lstrip("/")
    drift_remote_file(fleet, file_on_runner, "[]")
    fixed = run_suite(compliant_lab, tmp_path, f"--site={site}", "--fix", "--control=policy-file-matches",
                      f"--journal-dir={tmp_path / 'journal'}")
    assert records(fixed, "policy-file-matches")[f"remote-gateway root={compliant_lab.root}"]["verdict"] == "FIXED", fixed.output[-3000:]

    undone = rollback(compliant_lab, compliant_lab.site_file, tmp_path / "journal", fixed.document["run_id"])

    assert undone.returncode == 14
    assert "node remote-gateway is not in this run's node list" in undone.stdout


def remote_lock(fleet, root, scheme, run_id, timeout=1):
    import testinfra

    from mesh_compliance.locking import LOCK_FILE
    from mesh_compliance.node_lock import RemoteNodeLock
    from mesh_compliance.target import Target

    connection = fleet.hosts[0].connection.replace("ssh://", f"{scheme}://")
    target = Target(testinfra.get_host(connection, ssh_config=str(fleet.ssh_config)), str(root), label="holder")
    holder = {"run_id": run_id, "host": "test", "pid": 1}
    return RemoteNodeLock(target, holder, timeout, LOCK_FILE)


@pytest.mark.parametrize("scheme", ["ssh", "paramiko"])
def test_remote_lock_stops_second_fix(compliant_lab, fleet, tmp_path, scheme):
    site = remote_gateway_site(compliant_lab, fleet, tmp_path)
    holder = remote_lock(fleet, compliant_lab.root, scheme, f"held-over-{scheme}")
    holder.acquire()
    try:
        blocked = run_suite(compliant_lab, tmp_path, f"--site={site}", "--fix", "--control=policy-file-matches",
                            "--lock-timeout=1")
    finally:
        holder.release()

    assert blocked.code == 13, blocked.output[-3000:]
    assert f"run held-over-{scheme}" in blocked.output
    assert "on remote-gateway" in blocked.output


def test_fix_releases_remote_lock(compliant_lab, fleet, tmp_path):
    site = remote_gateway_site(compliant_lab, fleet, tmp_path)
    run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--fix", "--control=policy-file-matches")
    assert run.code != 13, run.output[-3000:]

    after = remote_lock(fleet, compliant_lab.root, "ssh", "after-the-run")
    after.acquire()
    after.release()


def test_unreachable_node_does_not_stop_fix(compliant_lab, fleet, tmp_path):
    site = remote_gateway_site(compliant_lab, fleet, tmp_path)
    fleet.stop(fleet.hosts[0].name)
    try:
        run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--fix", "--control=policy-file-matches")
    finally:
        fleet.start(fleet.hosts[0].name)

    assert run.code == 11, run.output[-3000:]
    assert records(run, "policy-file-matches")[f"remote-gateway root={compliant_lab.root}"]["verdict"] == "ERROR"


def test_unreachable_gateway_tls_options_error(compliant_lab, fleet, tmp_path):
    site = remote_gateway_site(compliant_lab, fleet, tmp_path)
    fleet.stop(fleet.hosts[0].name)
    try:
        run = run_suite(compliant_lab, tmp_path, f"--site={site}", "--control=gateway-tls-options")
    finally:
        fleet.start(fleet.hosts[0].name)

    record = records(run, "gateway-tls-options")[f"remote-gateway root={compliant_lab.root}"]
    assert record["verdict"] == "ERROR", run.output[-3000:]
    assert "unreachable" in record["message"]
