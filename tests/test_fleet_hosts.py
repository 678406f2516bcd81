"""Test hosts in network namespaces, reached over real SSH with testinfra."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import testinfra

from mesh_compliance.lab import fleet as fleet_module
from mesh_compliance.lab.debpkg import build_deb
from mesh_compliance.lab.documented import FILES_DB_SCRIPT, files_db_package
from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.fleet import TestHosts, namespace_pids

MACHINE_DPKG_LOG = Path("/var/log/dpkg.log")


def _namespaces_unavailable() -> str | None:
    """Return why test hosts cannot start on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "test hosts need root for ip netns, mounts and chroot"
    if not os.access(fleet_module.SSHD, os.X_OK):
        return f"{fleet_module.SSHD} is missing; scripts/bootstrap installs openssh-server"

    probe = f"{fleet_module.NAME_PREFIX}probe-{uuid.uuid4().hex[:6]}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"ip netns add is not permitted here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)

    unshared = subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", "true"], capture_output=True, text=True)
    if unshared.returncode != 0:
        return f"unshare --mount is not permitted here: {unshared.stderr.strip()}"
    return None


_SKIP_REASON = _namespaces_unavailable()
pytestmark = pytest.mark.skipif(_SKIP_REASON is not None, reason=_SKIP_REASON or "")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    fleet = TestHosts.up(tmp_path_factory.mktemp("fleet") / "hosts", 2)
    yield fleet
    fleet.down()


def _testinfra_host(fleet: TestHosts, index: int, **kwargs):
    host = fleet.hosts[index]
    return testinfra.get_host(host.connection, ssh_config=str(fleet.ssh_config), **kwargs)


def _accepted_logins(log: Path) -> int:
    return sum("Accepted publickey for root" in line for line in log.read_text(encoding="utf-8").splitlines())


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def _machine_has_package(name: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", name], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.endswith(" installed")


def test_hosts_run_commands_over_ssh(hosts):
    assert len(hosts) == 2
    assert hosts.hosts[0].address != hosts.hosts[1].address

    for index, host in enumerate(hosts):
        remote = _testinfra_host(hosts, index)

        assert remote.check_output("hostname") == host.name
        assert remote.check_output("id -u") == "0"
        assert remote.check_output("id -un") == "root"


def test_hosts_have_no_route_out(hosts):
    for index, host in enumerate(hosts):
        remote = _testinfra_host(hosts, index)
        addresses = remote.check_output("ip -4 -o addr show scope global")

        assert f"{host.address}/30" in addresses
        assert hosts.hosts[1 - index].address not in addresses
        assert remote.check_output("ip -4 route show default") == ""


def test_package_installs_on_one_host_only(hosts, tmp_path):
    spec = files_db_package()
    deb = build_deb(spec, tmp_path)
    machine_log_before = _file_digest(MACHINE_DPKG_LOG)
    assert not _machine_has_package(spec.name), f"{spec.name} is installed on this machine; the test needs it absent"

    first, second = hosts.hosts
    copied = subprocess.run(
        ["scp", "-q", "-F", str(hosts.ssh_config), str(deb), f"{first.address}:/tmp/{deb.name}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert copied.returncode == 0, copied.stderr
    installed = _testinfra_host(hosts, 0).run(f"dpkg -i /tmp/{deb.name}")
    assert installed.rc == 0, installed.stderr

    assert _testinfra_host(hosts, 0).package(spec.name).is_installed
    assert _testinfra_host(hosts, 0).file(FILES_DB_SCRIPT).exists
    assert not _testinfra_host(hosts, 1).package(spec.name).is_installed
    assert not _testinfra_host(hosts, 1).file(FILES_DB_SCRIPT).exists

    assert not _machine_has_package(spec.name)
    assert not Path(FILES_DB_SCRIPT).exists()
    assert _file_digest(MACHINE_DPKG_LOG) == machine_log_before

    assert (first.root / FILES_DB_SCRIPT.lstrip("/")).exists()
    assert not (second.root / FILES_DB_SCRIPT.lstrip("/")).exists()
    assert (first.upper / FILES_DB_SCRIPT.lstrip("/")).exists()
    assert f"install {spec.name}" in (first.upper / "var/log/dpkg.log").read_text(encoding="utf-8")
    assert not (second.upper / "var/log/dpkg.log").exists()


def test_host_writes_stay_in_upper_dir(hosts):
    first = hosts.hosts[0]
    path = f"/etc/meshlab-write-{uuid.uuid4().hex[:8]}"

    _testinfra_host(hosts, 0).check_output(f"echo written-on-host > {path}")

    assert (first.upper / path.lstrip("/")).read_text(encoding="utf-8") == "written-on-host\n"
    assert not Path(path).exists()
    assert not _testinfra_host(hosts, 1).file(path).exists


def test_stopped_host_fails_fast(hosts):
    first, second = hosts.hosts
    hosts.stop(second.name)
    try:
        assert not namespace_pids(second)

        started = time.monotonic()
        with pytest.raises(RuntimeError):
            _testinfra_host(hosts, 1, timeout=2).run("true")
        assert time.monotonic() - started < 10

        assert _testinfra_host(hosts, 0).check_output("hostname") == first.name
    finally:
        hosts.start(second.name)

    assert _testinfra_host(hosts, 1).check_output("hostname") == second.name


def test_control_master_reuses_connection(hosts):
    host = hosts.hosts[0]
    subprocess.run(["ssh", "-F", str(hosts.ssh_config), "-O", "exit", host.address], capture_output=True, timeout=10)
    logins_before = _accepted_logins(host.sshd_log)

    remote = _testinfra_host(hosts, 0)
    outputs = [remote.check_output(f"echo command-{number}") for number in range(20)]

    assert outputs == [f"command-{number}" for number in range(20)]
    assert _accepted_logins(host.sshd_log) - logins_before == 1


def test_login_count_without_control_master(hosts):
    host = hosts.hosts[1]
    logins_before = _accepted_logins(host.sshd_log)

    remote = _testinfra_host(hosts, 1, ssh_extra_args="-o ControlMaster=no -o ControlPath=none")
    for number in range(3):
        assert remote.check_output(f"echo command-{number}") == f"command-{number}"

    assert _accepted_logins(host.sshd_log) - logins_before == 3


def _leftovers(names: list[str], veths: list[str], directory: Path, control_dir: Path, pids: list[int]) -> dict:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    mounts = Path("/proc/mounts").read_text(encoding="utf-8")
    ssh_clients = subprocess.run(["pgrep", "-f", str(control_dir)], capture_output=True, text=True).stdout
    return {
        "namespaces": [name for name in names if name in namespaces],
        "veths": [veth for veth in veths if f" {veth}@" in links or f" {veth}:" in links],
        "mounts": [line for line in mounts.splitlines() if str(directory) in line],
        "processes": [pid for pid in pids if Path(f"/proc/{pid}").exists()],
        "ssh clients": ssh_clients.split(),
        "paths": [path for path in (directory, control_dir) if path.exists()],
    }


def test_down_leaves_nothing(tmp_path):
    fleet = TestHosts.up(tmp_path / "hosts", 2)
    names = [host.name for host in fleet]
    veths = [host.veth for host in fleet]
    directory, control_dir = fleet.directory, fleet.control_dir
    for index in range(2):
        _testinfra_host(fleet, index).check_output("true")
    pids = [pid for host in fleet for pid in namespace_pids(host)]
    assert pids

    fleet.down()

    leftovers = _leftovers(names, veths, directory, control_dir, pids)
    assert leftovers == {key: [] for key in leftovers}


def test_failed_up_removes_everything(tmp_path, monkeypatch):
    started_hosts = []
    wait_for_ssh_port = fleet_module._wait_for_ssh_port

    def fail_on_second_host(host):
        started_hosts.append(host)
        if host.index == 2:
            raise LabError("simulated sshd start failure")
        wait_for_ssh_port(host)

    control_dirs = []
    control_dir = fleet_module._control_dir

    def record_control_dir(directory, lab_id):
        control_dirs.append(control_dir(directory, lab_id))
        return control_dirs[-1]

    monkeypatch.setattr(fleet_module, "_wait_for_ssh_port", fail_on_second_host)
    monkeypatch.setattr(fleet_module, "_control_dir", record_control_dir)
    directory = tmp_path / "hosts"

    with pytest.raises(LabError, match="simulated"):
        TestHosts.up(directory, 2)

    assert [host.index for host in started_hosts] == [1, 2]
    pids = [host.process.pid for host in started_hosts if host.process is not None]
    leftovers = _leftovers([h.name for h in started_hosts], [h.veth for h in started_hosts], directory, control_dirs[0], pids)
    assert leftovers == {key: [] for key in leftovers}


def test_up_rejects_zero_hosts(tmp_path):
    with pytest.raises(LabError, match="invalid host count"):
        TestHosts.up(tmp_path / "hosts", 0)

    assert not (tmp_path / "hosts").exists()


def test_scp_reaches_host_root(hosts, tmp_path):
    source = tmp_path / "payload.txt"
    source.write_text("payload\n", encoding="utf-8")
    machine_path = Path(f"/root/meshlab-payload-{uuid.uuid4().hex[:8]}.txt")

    copied = subprocess.run(
        ["scp", "-q", "-F", str(hosts.ssh_config), str(source), f"{hosts.hosts[1].address}:{machine_path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert copied.returncode == 0, copied.stderr
    assert (hosts.hosts[1].root / str(machine_path).lstrip("/")).read_text(encoding="utf-8") == "payload\n"
    assert not machine_path.exists()
