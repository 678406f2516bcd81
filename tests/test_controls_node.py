"""Node controls against the lab root: the gateway unit and the package database."""

import pytest

from mesh_compliance.expected import unit_text
from mesh_compliance.site import Site
from tests.conftest import needs_root
from tests.labstate import build_package

pytestmark = [needs_root, pytest.mark.lab]

UNIT = "gateway-unit"
PACKAGE = "files-db-package-absent"
UNIT_PATH = "/lib/systemd/system/carbonio-gateway.service"
DOCUMENTED = unit_text(Site())


def test_unit_passes_when_compliant(suite):
    assert suite("--control", UNIT).verdict(UNIT) == "PASS"


def test_unit_with_continuation_and_equals_passes(state, suite):
    text = DOCUMENTED.replace(
        "-token-file /etc/carbonio/gateway/service-discover/token -admin-bind localhost:0",
        "-token-file=/etc/carbonio/gateway/service-discover/token \\\n    -admin-bind=localhost:0",
    ).replace("-service carbonio-gateway\n", "-service carbonio-gateway -- -l debug\n")
    state.write_file(UNIT_PATH, text)
    assert suite("--control", UNIT).verdict(UNIT) == "PASS"


def test_unit_without_token_file_fails(state, suite):
    state.write_file(UNIT_PATH, DOCUMENTED.replace("-token-file /etc/carbonio/gateway/service-discover/token ", ""))
    run = suite("--control", UNIT)
    assert run.verdict(UNIT) == "FAIL"
    assert "token-file" in run.message(UNIT)


def test_unit_with_other_token_path_fails(state, suite):
    state.write_file(UNIT_PATH, DOCUMENTED.replace("service-discover/token", "token"))
    run = suite("--control", UNIT)
    assert run.verdict(UNIT) == "FAIL"
    assert "/etc/carbonio/gateway/token" in run.message(UNIT)


def test_unit_running_as_root_fails(state, suite):
    state.write_file(UNIT_PATH, DOCUMENTED.replace("User=carbonio-gateway\n", ""))
    run = suite("--control", UNIT)
    assert run.verdict(UNIT) == "FAIL"
    assert "runs as root" in run.message(UNIT)


def test_unit_disabled_fails(state, suite):
    state.disable_unit()
    run = suite("--control", UNIT)
    assert run.verdict(UNIT) == "FAIL"
    assert "disabled" in run.message(UNIT)


def test_unit_file_missing_fails(state, suite):
    state.disable_unit()
    state.remove_file(UNIT_PATH)
    run = suite("--control", UNIT)
    assert run.verdict(UNIT) == "FAIL"
    assert "does not exist" in run.message(UNIT)


def test_unit_fix_rewrites_and_enables(state, suite):
    state.write_file(UNIT_PATH, DOCUMENTED.replace("-register ", ""))
    state.disable_unit()
    run = suite("--control", UNIT, "--fix")
    assert run.verdict(UNIT) == "FIXED"
    assert state.root_path(UNIT_PATH).read_text() == DOCUMENTED
    assert state.systemctl("is-enabled", "carbonio-gateway.service").stdout.strip() == "enabled"
    backups = list(state.root_path(UNIT_PATH).parent.glob("carbonio-gateway.service.*.bak"))
    assert any("-register" not in path.read_text() for path in backups)
    for path in backups:
        state.on_restore(path.unlink)
    assert suite("--control", UNIT, "--fix").record(UNIT)["fix"] is None


def test_package_absent_passes_when_compliant(suite):
    assert suite("--control", PACKAGE).verdict(PACKAGE) == "PASS"


def test_package_installed_fails(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    run = suite("--control", PACKAGE)
    assert run.verdict(PACKAGE) == "FAIL"
    assert "install ok installed" in run.message(PACKAGE)


def test_package_half_configured_fails(state, suite, tmp_path):
    completed = state.install_package(build_package(tmp_path, postinst="#!/bin/sh\nexit 1\n"))
    assert completed.returncode != 0
    assert state.package_status("carbonio-files-db") == "install ok half-configured"
    run = suite("--control", PACKAGE)
    assert run.verdict(PACKAGE) == "FAIL"
    assert "half-configured" in run.message(PACKAGE)


def test_package_config_files_left_warns(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    state.dpkg("--remove", "carbonio-files-db")
    assert state.package_status("carbonio-files-db") == "deinstall ok config-files"
    state.remove_file("/etc/zextras/service-discover/carbonio-files-db.hcl")
    run = suite("--control", PACKAGE)
    assert run.verdict(PACKAGE) == "WARN"
    assert "configuration files remain" in run.message(PACKAGE)


def test_package_database_unreadable_is_error(state, suite):
    state.keep_dpkg_database()
    with open(state.root_path("/var/lib/dpkg/status"), "a") as status:
        status.write("garbage-without-colon\n")
    run = suite("--control", PACKAGE)
    assert run.verdict(PACKAGE) == "ERROR"
    assert "cannot read the dpkg database" in run.message(PACKAGE)


def test_package_no_database_is_error(state, suite):
    state.keep_dpkg_database()
    state.root_path("/var/lib/dpkg/status").unlink()
    run = suite("--control", PACKAGE)
    assert run.verdict(PACKAGE) == "ERROR"
    assert "no package database" in run.message(PACKAGE)


def test_package_fix_needs_opt_in(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    run = suite("--control", PACKAGE, "--fix")
    assert run.verdict(PACKAGE) == "FAIL"
    assert "--allow=remove-package" in run.record(PACKAGE)["fix"]["reason"]
    assert state.package_status("carbonio-files-db") == "install ok installed"


def test_package_fix_purges_with_opt_in(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    run = suite("--control", PACKAGE, "--fix", "--allow", "remove-package")
    assert run.verdict(PACKAGE) == "FIXED"
    assert state.package_status("carbonio-files-db") == "not-installed"
    assert not state.root_path("/etc/zextras/service-discover/carbonio-files-db.hcl").exists()
