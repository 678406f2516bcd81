"""mesh-lab up --hosts: a lab whose site file lists test hosts reached over SSH."""

import subprocess

import pytest

from tests.conftest import ALL_OPT_INS, needs_root
from tests.suite import run_suite
from tests.test_fleet_hosts import _SKIP_REASON

pytestmark = [needs_root, pytest.mark.lab,
              pytest.mark.skipif(_SKIP_REASON is not None, reason=_SKIP_REASON or "")]


@pytest.fixture(scope="module")
def host_lab(lab_parent):
    from mesh_compliance.lab import Lab

    lab = Lab.up(lab_parent / "with-hosts", hosts=2)
    yield lab
    lab.down()


def verdicts(run, control_id):
    return {record["node"]: record["verdict"] for record in run.document["results"] if record["control"] == control_id}


def test_status_lists_running_hosts(host_lab):
    from mesh_compliance.lab import Lab

    status = Lab.open(host_lab.dir).status()

    assert [host["node"] for host in status["hosts"]] == ["files-1", "proxy-1"]
    assert all(host["running"] for host in status["hosts"])
    assert status["up"]


def test_audit_finds_package_on_first_host(host_lab, tmp_path):
    run = run_suite(host_lab, tmp_path, "--control=files-db-package-absent", "--control=files-node-packages",
                    "--control=proxy-node-packages")

    assert verdicts(run, "files-db-package-absent")["files-1"] == "FAIL", run.output[-3000:]
    assert verdicts(run, "files-db-package-absent")["proxy-1"] == "PASS"
    assert verdicts(run, "files-node-packages") == {"files-1": "PASS"}
    assert verdicts(run, "proxy-node-packages") == {"proxy-1": "PASS"}


def test_parallel_fix_repairs_whole_lab(host_lab, tmp_path):
    fixed = run_suite(host_lab, tmp_path, "--fix", "-n", "2", *ALL_OPT_INS)
    audit = run_suite(host_lab, tmp_path)

    assert fixed.code == 0, fixed.output[-3000:]
    assert verdicts(fixed, "files-db-package-absent")["files-1"] == "FIXED"
    assert audit.code == 0, audit.output[-3000:]


def test_down_removes_hosts(lab_parent):
    from mesh_compliance.lab import Lab

    lab = Lab.up(lab_parent / "hosts-down", hosts=1)
    names = [host["name"] for host in lab.record["hosts"]["hosts"]]
    pids = [host["pid"] for host in lab.record["hosts"]["hosts"]]

    Lab.open(lab.dir).down()

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [name for name in names if name in namespaces]
    assert not [pid for pid in pids if subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0]
    assert not lab.dir.exists()


def test_host_count_is_checked(lab_parent):
    from mesh_compliance.lab.errors import LabError
    from mesh_compliance.lab.lab_hosts import start_hosts

    with pytest.raises(LabError, match="invalid host count 21"):
        start_hosts(lab_parent / "too-many", lab_parent / "build", 21)
