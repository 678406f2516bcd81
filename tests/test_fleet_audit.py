"""Fleet audits: node controls on every node of their role, over real SSH to test hosts."""

import os
import shutil
import subprocess

import pytest

from tests.conftest import needs_root
from tests.labstate import build_package
from tests.suite import run_suite

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
