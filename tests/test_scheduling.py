"""The systemd units, the cron line and the wrapper that rotates report directories."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import promtext
from tests.conftest import needs_root
from tests.suite import CHECKOUT

CONTRIB = CHECKOUT / "contrib"
WRAPPER = CONTRIB / "mesh-compliance-cron"
INSTALL_DIR = "/opt/carbonio-mesh-compliance"
UNITS = ("carbonio-mesh-compliance.service", "carbonio-mesh-compliance.timer")

# Stands in for .venv/bin/pytest: writes the files it is given and exits with FAKE_EXIT.
FAKE_PYTEST = """#!/usr/bin/env bash
for arg in "$@"; do
    case $arg in
        --html=*|--results-json=*|--junitxml=*) echo "$arg" > "${arg#*=}" ;;
    esac
done
echo "$*" > "$MESH_REPORTS_DIR/arguments"
echo "=== compliance verdicts ==="
echo "FAIL acl-policy policy missing"
exit "${FAKE_EXIT:-0}"
"""


def unit_lines(name: str) -> list[str]:
    return (CONTRIB / "systemd" / name).read_text().splitlines()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists and is executable, so the install
    # directory is moved to one the test creates.
    install = tmp_path / "install"
    (install / "contrib").mkdir(parents=True)
    shutil.copy2(WRAPPER, install / "contrib" / WRAPPER.name)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = (CONTRIB / "systemd" / name).read_text().replace(INSTALL_DIR, str(install))
        (units / name).write_text(text)

    completed = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(units / name) for name in UNITS)],
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "carbonio-mesh-compliance" not in completed.stdout + completed.stderr


def test_service_is_oneshot_running_the_wrapper():
    lines = unit_lines(UNITS[0])

    assert "Type=oneshot" in lines
    assert f"ExecStart={INSTALL_DIR}/contrib/mesh-compliance-cron" in lines
    assert f"WorkingDirectory={INSTALL_DIR}" in lines


def test_timer_is_daily_persistent_and_randomized():
    lines = unit_lines(UNITS[1])

    assert "OnCalendar=daily" in lines
    assert "Persistent=true" in lines
    assert any(line.startswith("RandomizedDelaySec=") for line in lines)
    assert "WantedBy=timers.target" in lines


def test_cron_file_has_one_job_line():
    lines = (CONTRIB / "cron.d" / "carbonio-mesh-compliance").read_text().splitlines()
    jobs = [line for line in lines if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]

    assert len(jobs) == 1
    fields = jobs[0].split()
    assert all(re.fullmatch(r"[0-9*/,-]+", field) for field in fields[:5])
    assert fields[5] == "root"
    assert fields[-1] == f"{INSTALL_DIR}/contrib/mesh-compliance-cron"
    assert "MAILTO=root" in lines


# -- the wrapper ----------------------------------------------------------------

@pytest.fixture
def fake_install(tmp_path):
    install = tmp_path / "install"
    (install / ".venv" / "bin").mkdir(parents=True)
    fake = install / ".venv" / "bin" / "pytest"
    fake.write_text(FAKE_PYTEST)
    fake.chmod(0o755)
    return install


def run_wrapper(install: Path, reports: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MESH_INSTALL_DIR": str(install), "MESH_REPORTS_DIR": str(reports), **env}
    return subprocess.run([str(WRAPPER), *args], capture_output=True, text=True, env=environment, timeout=300)


def test_wrapper_keeps_newest_runs(fake_install, tmp_path):
    reports = tmp_path / "reports"
    old = [f"2026010{day}T030000Z" for day in range(1, 6)]
    for name in old + ["journal", "backups"]:
        (reports / name).mkdir(parents=True)

    completed = run_wrapper(fake_install, reports, MESH_KEEP="3")

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    newest = os.readlink(reports / "latest")
    assert sorted(p.name for p in reports.iterdir() if p.is_dir() and not p.is_symlink()) == sorted(
        [newest, old[-1], old[-2], "journal", "backups"])
    assert sorted(p.name for p in (reports / newest).iterdir()) == [
        "audit.html", "audit.json", "audit.xml", "exit-code", "output.txt"]


def test_wrapper_passes_exit_code_and_prints(fake_install, tmp_path):
    reports = tmp_path / "reports"
    completed = run_wrapper(fake_install, reports, "--baseline=base.json", FAKE_EXIT="10",
                            MESH_PROMETHEUS_TEXTFILE="/tmp/mesh.prom")

    assert completed.returncode == 10
    assert completed.stdout.startswith("carbonio-mesh-compliance: exit code 10; reports in ")
    assert "FAIL acl-policy policy missing" in completed.stdout
    arguments = (reports / "arguments").read_text()
    assert "--prometheus-textfile=/tmp/mesh.prom" in arguments
    assert arguments.rstrip().endswith("--baseline=base.json")
    assert (reports / "latest" / "exit-code").read_text() == "10\n"


@pytest.mark.parametrize("keep", ["0", "-1", "two"])
def test_wrapper_rejects_invalid_keep(fake_install, tmp_path, keep):
    completed = run_wrapper(fake_install, tmp_path / "reports", MESH_KEEP=keep)

    assert completed.returncode == 2
    assert "MESH_KEEP must be a positive whole number" in completed.stderr
    assert not (tmp_path / "reports").exists()


@needs_root
@pytest.mark.lab
def test_wrapper_audits_the_lab(compliant_lab, tmp_path):
    reports = tmp_path / "reports"
    textfile = tmp_path / "textfile" / "mesh.prom"
    lab_args = [arg for arg in compliant_lab.pytest_args if not arg.startswith("--site=")]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONSUL_")}
    environment.update(MESH_INSTALL_DIR=str(CHECKOUT), MESH_REPORTS_DIR=str(reports),
                       MESH_SITE=str(compliant_lab.site_file), MESH_PROMETHEUS_TEXTFILE=str(textfile))

    completed = subprocess.run([str(WRAPPER), *lab_args, "--control=acl-policy", f"--backup-dir={tmp_path / 'backups'}"],
                               capture_output=True, text=True, env=environment, timeout=300)

    assert completed.returncode == 0, completed.stdout + (reports / "latest" / "output.txt").read_text()
    assert completed.stdout == ""
    document = json.loads((reports / "latest" / "audit.json").read_text())
    assert [record["verdict"] for record in document["results"]] == ["PASS"]
    assert (reports / "latest" / "audit.html").is_file()
    families = promtext.parse(textfile.read_text())
    assert families["carbonio_mesh_compliance_exit_code"].samples == [({}, 0)]
