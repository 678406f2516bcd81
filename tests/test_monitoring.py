"""Prometheus textfile and Nagios line: the rendering alone, then runs against the lab."""

import os
import stat
from pathlib import Path

import pytest

from mesh_compliance.reporting import monitoring
from tests import promtext
from tests.conftest import needs_root

VERDICT_METRIC = "carbonio_mesh_compliance_control_verdict"
COUNT_METRIC = "carbonio_mesh_compliance_controls"
EXIT_METRIC = "carbonio_mesh_compliance_exit_code"
TIME_METRIC = "carbonio_mesh_compliance_last_run_timestamp_seconds"


def record(control: str, verdict: str, node: str = "cluster") -> dict:
    return {"control": control, "node": node, "verdict": verdict}


def current_verdicts(families) -> dict[tuple[str, str], str]:
    """Return the verdict whose series is 1 for each control and node; fail on anything but one."""
    ones: dict[tuple[str, str], list[str]] = {}
    for labels, value in families[VERDICT_METRIC].samples:
        key = (labels["control"], labels["node"])
        ones.setdefault(key, [])
        if value == 1:
            ones[key].append(labels["verdict"])
        else:
            assert value == 0
    assert all(len(verdicts) == 1 for verdicts in ones.values()), ones
    return {key: verdicts[0] for key, verdicts in ones.items()}


# -- rendering ----------------------------------------------------------------

def test_textfile_one_current_verdict_each():
    records = [record("acl-policy", "PASS"), record("gateway-unit", "FAIL", node="gw1"),
               record("db-login", "ERROR")]
    families = promtext.parse(monitoring.render_textfile(records, 11, 1796000000.5))

    assert current_verdicts(families) == {("acl-policy", "cluster"): "PASS", ("gateway-unit", "gw1"): "FAIL",
                                          ("db-login", "cluster"): "ERROR"}
    assert len(families[VERDICT_METRIC].samples) == 3 * len(monitoring.VERDICTS)
    counts = {labels["verdict"]: value for labels, value in families[COUNT_METRIC].samples}
    assert counts == {verdict: (1 if verdict in ("PASS", "FAIL", "ERROR") else 0) for verdict in monitoring.VERDICTS}
    assert families[EXIT_METRIC].samples == [({}, 11)]
    assert families[TIME_METRIC].samples == [({}, 1796000000.5)]
    for name in (VERDICT_METRIC, COUNT_METRIC, EXIT_METRIC, TIME_METRIC):
        assert families[name].type == "gauge"
        assert families[name].help


def test_label_values_are_escaped():
    node = 'web "01"\\east\nrack'
    families = promtext.parse(monitoring.render_textfile([record("acl-policy", "WARN", node=node)], 0, 1.0))

    assert current_verdicts(families) == {("acl-policy", node): "WARN"}


def test_textfile_later_record_wins():
    records = [record("acl-policy", "FAIL"), record("acl-policy", "FIXED")]
    families = promtext.parse(monitoring.render_textfile(records, 0, 1.0))

    assert current_verdicts(families) == {("acl-policy", "cluster"): "FIXED"}


def test_textfile_is_replaced_atomically(tmp_path):
    path = tmp_path / "mesh.prom"
    path.write_text("old\n")
    monitoring.write_atomically(path, "carbonio_mesh_compliance_exit_code 0\n")

    assert path.read_text() == "carbonio_mesh_compliance_exit_code 0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.prom"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_textfile_failed_write_keeps_old(tmp_path, monkeypatch):
    path = tmp_path / "mesh.prom"
    path.write_text("old\n")

    def refuse(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(OSError):
        monitoring.write_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.prom"]


@pytest.mark.parametrize("verdicts, exit_code, state", [
    (["PASS", "FIXED", "N/A"], 0, monitoring.NAGIOS_OK),
    (["PASS", "WARN"], 0, monitoring.NAGIOS_WARNING),
    (["PASS", "WAIVED"], 0, monitoring.NAGIOS_OK),
    (["WARN", "FAIL"], 10, monitoring.NAGIOS_CRITICAL),
    (["FIX FAILED"], 10, monitoring.NAGIOS_CRITICAL),
    (["FAIL", "ERROR"], 11, monitoring.NAGIOS_UNKNOWN),
    (["PASS"], 12, monitoring.NAGIOS_WARNING),
    (["PASS"], 15, monitoring.NAGIOS_CRITICAL),
    (["ERROR"], 15, monitoring.NAGIOS_CRITICAL),
    (["PASS"], 13, monitoring.NAGIOS_UNKNOWN),
    ([], 5, monitoring.NAGIOS_UNKNOWN),
    ([], 0, monitoring.NAGIOS_UNKNOWN),
])
def test_nagios_state(verdicts, exit_code, state):
    records = [record(f"control-{index}", verdict) for index, verdict in enumerate(verdicts)]

    assert monitoring.nagios_state(records, exit_code)[0] == state


def test_nagios_line_names_pytest_exit_code():
    state, line = monitoring.nagios_line([], 5)

    assert state == monitoring.NAGIOS_UNKNOWN
    assert line.startswith("CARBONIO MESH COMPLIANCE UNKNOWN - the suite exited with code 5 (no control collected);")


def test_nagios_line_counts_and_perfdata():
    records = [record("a", "PASS"), record("b", "FIXED"), record("c", "FAIL"), record("d", "ERROR")]
    state, line = monitoring.nagios_line(records, 11)

    assert state == monitoring.NAGIOS_UNKNOWN
    assert line == ("CARBONIO MESH COMPLIANCE UNKNOWN - 1 PASS, 1 FIXED, 1 FAIL, 1 ERROR"
                    " | pass=2;;;; warn=0;;;; waived=0;;;; fail=1;;;; error=1;;;;")


# -- runs against the lab -----------------------------------------------------

@needs_root
@pytest.mark.lab
def test_textfile_lists_every_control(suite, tmp_path):
    path = tmp_path / "textfile" / "mesh.prom"
    run = suite(f"--prometheus-textfile={path}")

    families = promtext.parse(path.read_text())
    expected = {(record["control"], record["node"]): record["verdict"] for record in run.document["results"]}
    assert current_verdicts(families) == expected
    assert families[EXIT_METRIC].samples == [({}, run.code)]
    assert [p.name for p in path.parent.iterdir()] == ["mesh.prom"]


@needs_root
@pytest.mark.lab
def test_nagios_ok_for_a_passing_control(suite):
    run = suite("--nagios", "--control=acl-policy")

    assert run.code == monitoring.NAGIOS_OK, run.output[-2000:]
    assert run.output.splitlines()[0].startswith("CARBONIO MESH COMPLIANCE OK - 1 PASS | pass=1;;;;")


@needs_root
@pytest.mark.lab
def test_nagios_warning_on_warnings_only(suite):
    run = suite("--nagios")

    assert "WARN" in run.verdicts.values()
    assert not {"FAIL", "ERROR"} & set(run.verdicts.values())
    assert run.code == monitoring.NAGIOS_WARNING, run.output[-2000:]
    assert run.output.splitlines()[0].startswith("CARBONIO MESH COMPLIANCE WARNING - ")


@needs_root
@pytest.mark.lab
def test_nagios_critical_on_a_fail(state, suite):
    state.kv_put("carbonio-files/db-password", "wrong-password-for-nagios")
    run = suite("--nagios", "--control=db-login")

    assert run.verdict("db-login") == "FAIL"
    assert run.code == monitoring.NAGIOS_CRITICAL, run.output[-2000:]
    first = run.output.splitlines()[0]
    assert first.startswith("CARBONIO MESH COMPLIANCE CRITICAL - 1 FAIL | ")
    assert "fail=1;;;;" in first
    assert "wrong-password-for-nagios" not in run.output


@needs_root
@pytest.mark.lab
def test_nagios_unknown_without_consul(suite, tmp_path):
    textfile = tmp_path / "mesh.prom"
    run = suite("--nagios", "--control=acl-policy", "--consul-addr=http://127.0.0.1:9", "--consul-timeout=2",
                f"--prometheus-textfile={textfile}")

    assert run.verdict("acl-policy") == "ERROR"
    assert run.code == monitoring.NAGIOS_UNKNOWN, run.output[-2000:]
    assert run.output.splitlines()[0].startswith("CARBONIO MESH COMPLIANCE UNKNOWN - 1 ERROR | ")
    assert promtext.parse(textfile.read_text())[EXIT_METRIC].samples == [({}, 11)]


@needs_root
@pytest.mark.lab
def test_textfile_write_failure_keeps_exit_code(suite, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    run = suite(f"--prometheus-textfile={blocker / 'mesh.prom'}", "--control=acl-policy")

    assert run.code == 0, run.output[-2000:]
    assert f"cannot write the Prometheus textfile {blocker / 'mesh.prom'}: " in run.output
    assert "secret scan" not in run.output
