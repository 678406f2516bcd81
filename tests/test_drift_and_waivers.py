"""Exit codes, the drift ledger, baselines, waivers, the results schema and JUnit XML against the lab."""

import datetime as dt
import json
import xml.etree.ElementTree as ElementTree

import pytest
import requests

from tests.conftest import needs_root
from tests.results_schema import validate_results

pytestmark = [needs_root, pytest.mark.lab]

POLICY = "acl-policy"
ACCOUNT = "gateway-account"
EXIT_NON_COMPLIANT = 10
EXIT_UNDECIDED = 11
EXIT_DRIFT = 12
EXIT_USAGE = 4

HCL_SUPERSET = '''
key_prefix "carbonio-gateway/" { policy = "read" }
node_prefix "" { policy = "read" }
service "carbonio-gateway" { policy = "write" }
service "carbonio-files-db" { policy = "write" }
agent_prefix "" { policy = "read" }
'''
JSON_WITHOUT_DB = (
    '{"key_prefix":[{"carbonio-gateway/":{"policy":"read"}}],'
    '"node_prefix":[{"":{"policy":"read"}}],'
    '"service":[{"carbonio-gateway":{"policy":"write"}}]}'
)
UNKNOWN_SECRET = "6a1253a8-4b3c-4f5e-9d4a-0f6e2b9d1c11\n"


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def waiver_file(tmp_path, expires: dt.date, control: str = POLICY, node: str | None = None):
    path = tmp_path / "waivers.toml"
    node_line = f'node = "{node}"\n' if node else ""
    path.write_text(f'[[waiver]]\ncontrol = "{control}"\n{node_line}'
                    'justification = "policy owned by the platform team"\n'
                    'approved_by = "security-office"\n'
                    f"expires = {expires.isoformat()}\n")
    return path


def unknown_token(tmp_path):
    path = tmp_path / "unknown-token"
    path.write_text(UNKNOWN_SECRET)
    return str(path)


def baseline_of(suite, tmp_path, *args):
    """Run the suite with --ledger and return the ledger's path."""
    path = tmp_path / "baseline.json"
    run = suite(*args, f"--ledger={path}")
    assert path.exists(), run.output[-2000:]
    return path


# -- exit codes without a baseline -----------------------------------------------

def test_exit_0_when_compliant(suite):
    run = suite("--control", POLICY)
    assert run.code == 0
    assert run.document["drift"] is None
    validate_results(run.document)


def test_exit_10_when_failing(state, suite):
    state.set_policy_rules(JSON_WITHOUT_DB)
    run = suite("--control", POLICY)
    assert run.code == EXIT_NON_COMPLIANT
    assert run.document["exit_code"] == EXIT_NON_COMPLIANT
    validate_results(run.document)


def test_exit_11_when_undecided(suite, tmp_path):
    run = suite("--control", POLICY, token_file=unknown_token(tmp_path))
    assert run.code == EXIT_UNDECIDED
    validate_results(run.document)


# -- the ledger ---------------------------------------------------------------------

def test_ledger_records_each_control_and_node(suite, tmp_path):
    path = baseline_of(suite, tmp_path, "--control", POLICY, "--control", ACCOUNT)
    ledger = json.loads(path.read_text())
    results = json.loads(sorted(tmp_path.glob("results-*.json"))[-1].read_text())

    assert ledger["schema"] == "carbonio-mesh-compliance/ledger"
    assert ledger["run_id"] == results["run_id"]
    assert len(ledger["site_sha256"]) == 64
    assert sorted((e["control"], e["verdict"]) for e in ledger["entries"]) == [(POLICY, "PASS"), (ACCOUNT, "PASS")]
    nodes = {e["control"]: e["node"] for e in ledger["entries"]}
    assert nodes[POLICY] == "cluster"
    assert nodes[ACCOUNT].startswith("local")
    assert all(len(e["evidence_sha256"]) == 64 for e in ledger["entries"])
    assert not list(tmp_path.glob(".baseline.json.*"))


def test_same_state_has_no_drift(suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    run = suite("--control", POLICY, f"--baseline={baseline}")
    assert run.code == 0
    assert run.document["drift"]["new_drift"] is False
    assert "no new drift" in run.output
    validate_results(run.document)


def test_new_failure_exits_12(state, suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    state.set_policy_rules(JSON_WITHOUT_DB)
    run = suite("--control", POLICY, f"--baseline={baseline}")
    drift = run.document["drift"]
    assert run.code == EXIT_DRIFT
    assert drift["new_failures"] == [{"control": POLICY, "node": "cluster", "before": "PASS", "after": "FAIL"}]
    assert "drift since the baseline" in run.output
    assert "new failure" in run.output
    validate_results(run.document)


def test_error_wins_over_drift(suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    run = suite("--control", POLICY, f"--baseline={baseline}", token_file=unknown_token(tmp_path))
    assert run.code == EXIT_UNDECIDED
    assert run.document["drift"]["new_failures"][0]["after"] == "ERROR"
    assert run.document["drift"]["new_drift"] is True


def test_still_failing_exits_10(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    run = suite("--control", POLICY, f"--baseline={baseline}")
    assert run.code == EXIT_NON_COMPLIANT
    assert run.document["drift"]["new_failures"] == []
    assert run.document["drift"]["new_drift"] is False


def test_resolved_control_exits_0(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    state.restore()
    run = suite("--control", POLICY, f"--baseline={baseline}")
    assert run.code == 0
    assert run.document["drift"]["resolved"] == [{"control": POLICY, "node": "cluster", "before": "FAIL", "after": "PASS"}]
    assert "resolved" in run.output


def test_evidence_change_while_passing_exits_12(state, suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    state.set_policy_rules(HCL_SUPERSET)
    run = suite("--control", POLICY, f"--baseline={baseline}")
    changed = run.document["drift"]["evidence_changed"]
    assert run.verdict(POLICY) == "PASS"
    assert run.code == EXIT_DRIFT
    assert [(c["control"], c["before"], c["after"]) for c in changed] == [(POLICY, "PASS", "PASS")]
    assert changed[0]["evidence_sha256_before"] != changed[0]["evidence_sha256_after"]


def test_node_appeared_and_vanished_exits_12(suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", ACCOUNT)
    ledger = json.loads(baseline.read_text())
    old_node = ledger["entries"][0]["node"]
    ledger["entries"][0]["node"] = "ssh://retired-gateway"
    baseline.write_text(json.dumps(ledger))

    run = suite("--control", ACCOUNT, f"--baseline={baseline}")
    drift = run.document["drift"]
    assert run.code == EXIT_DRIFT
    assert drift["nodes_appeared"] == [old_node]
    assert drift["nodes_vanished"] == ["ssh://retired-gateway"]
    assert "node vanished" in run.output


def test_controls_appearing_alone_exit_0(suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", POLICY)
    run = suite("--control", "acl-token", f"--baseline={baseline}")
    drift = run.document["drift"]
    assert run.code == 0
    assert drift["controls_appeared"] == ["acl-token"]
    assert drift["controls_vanished"] == [POLICY]
    assert drift["nodes_appeared"] == []
    assert drift["nodes_vanished"] == []


def test_same_file_as_ledger_and_baseline(state, suite, tmp_path):
    path = baseline_of(suite, tmp_path, "--control", POLICY)
    first_run_id = json.loads(path.read_text())["run_id"]
    state.set_policy_rules(JSON_WITHOUT_DB)
    run = suite("--control", POLICY, f"--baseline={path}", f"--ledger={path}")
    assert run.code == EXIT_DRIFT
    assert run.document["drift"]["baseline_run_id"] == first_run_id
    assert json.loads(path.read_text())["run_id"] == run.document["run_id"]


def test_missing_baseline_is_usage_error(suite, tmp_path):
    missing = tmp_path / "no-such-ledger.json"
    run = suite("--control", POLICY, f"--baseline={missing}")
    assert run.code == EXIT_USAGE
    assert str(missing) in run.output
    assert run.document == {}


def test_results_file_as_baseline_is_usage_error(suite, tmp_path):
    first = suite("--control", POLICY)
    results = sorted(tmp_path.glob("results-*.json"))[-1]
    assert first.code == 0
    run = suite("--control", POLICY, f"--baseline={results}")
    assert run.code == EXIT_USAGE
    assert f"baseline {results} is not a ledger" in run.output


# -- waivers --------------------------------------------------------------------------

@pytest.mark.parametrize("days", [0, 1])
def test_waiver_through_expiry_day_waives(state, suite, tmp_path, days):
    state.set_policy_rules(JSON_WITHOUT_DB)
    waivers = waiver_file(tmp_path, today() + dt.timedelta(days=days))
    run = suite("--control", POLICY, f"--waivers={waivers}", "-rx")
    record = run.record(POLICY)
    assert run.code == 0
    assert record["verdict"] == "WAIVED"
    assert record["waiver"]["status"] == "valid"
    assert record["waiver"]["approved_by"] == "security-office"
    assert run.document["summary"] == {"WAIVED": 1}
    assert "1 xfailed" in run.output
    assert "policy owned by the platform team" in run.output
    validate_results(run.document)


def test_expired_waiver_leaves_fail(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    yesterday = today() - dt.timedelta(days=1)
    run = suite("--control", POLICY, f"--waivers={waiver_file(tmp_path, yesterday)}")
    record = run.record(POLICY)
    assert run.code == EXIT_NON_COMPLIANT
    assert record["verdict"] == "FAIL"
    assert f"waiver expired on {yesterday.isoformat()}" in record["message"]
    assert record["waiver"]["status"] == "expired"
    validate_results(run.document)


def test_waiver_covers_fix_failed(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    fail_policy_writes(state)
    waivers = waiver_file(tmp_path, today())
    run = suite("--control", POLICY, "--fix", f"--waivers={waivers}")
    record = run.record(POLICY)
    assert run.code == 0, run.output[-2000:]
    assert record["verdict"] == "WAIVED"
    assert record["fix"]["status"] == "failed"
    assert "Consul returned 500 for PUT /v1/acl/policy/" in record["fix"]["reason"]
    validate_results(run.document)


def fail_policy_writes(state) -> None:
    """Make the Consul double answer 500 to policy updates until the test ends."""
    lab = state.lab
    headers = {"X-Consul-Token": state.http.headers["X-Consul-Token"]}
    fault = {"path_prefix": "/v1/acl/policy/", "method": "PUT", "mode": "status500", "count": 5}
    requests.post(f"{lab.consul_url}/_double/faults", json=fault, headers=headers, timeout=10).raise_for_status()
    state.on_restore(lambda: requests.delete(f"{lab.consul_url}/_double/faults", headers=headers, timeout=10))


def test_waiver_for_other_node_leaves_fail(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    waivers = waiver_file(tmp_path, today() + dt.timedelta(days=30), node="ssh://other-gateway")
    run = suite("--control", POLICY, f"--waivers={waivers}")
    assert run.code == EXIT_NON_COMPLIANT
    assert run.record(POLICY)["waiver"] is None


def test_waiver_of_passing_control_changes_nothing(suite, tmp_path):
    run = suite("--control", POLICY, f"--waivers={waiver_file(tmp_path, today())}")
    assert run.verdict(POLICY) == "PASS"
    assert run.record(POLICY)["waiver"] is None


def test_waiver_unknown_control_is_usage_error(suite, tmp_path):
    waivers = waiver_file(tmp_path, today(), control="no-such-control")
    run = suite("--control", POLICY, f"--waivers={waivers}")
    assert run.code == EXIT_USAGE
    assert f"waiver file {waivers}, entry 1: unknown control id 'no-such-control'" in run.output


def test_waiver_missing_field_is_usage_error(suite, tmp_path):
    path = tmp_path / "waivers.toml"
    path.write_text('[[waiver]]\ncontrol = "acl-policy"\napproved_by = "ops"\nexpires = 2030-01-01\n')
    run = suite("--control", POLICY, f"--waivers={path}")
    assert run.code == EXIT_USAGE
    assert "entry 1 (control acl-policy): missing required key 'justification'" in run.output


def test_waived_control_failing_later_is_new_failure(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    waivers = waiver_file(tmp_path, today() + dt.timedelta(days=1))
    baseline = baseline_of(suite, tmp_path, "--control", POLICY, f"--waivers={waivers}")
    run = suite("--control", POLICY, f"--baseline={baseline}")
    assert run.code == EXIT_DRIFT
    assert run.document["drift"]["new_failures"][0]["before"] == "WAIVED"


# -- reports ---------------------------------------------------------------------------

def test_html_shows_drift_and_waiver(state, suite, tmp_path):
    baseline = baseline_of(suite, tmp_path, "--control", POLICY, "--control", ACCOUNT)
    state.set_policy_rules(JSON_WITHOUT_DB)
    report = tmp_path / "report.html"
    waivers = waiver_file(tmp_path, today())
    run = suite("--control", POLICY, "--control", ACCOUNT, f"--baseline={baseline}", f"--waivers={waivers}",
                f"--html={report}", "--self-contained-html")
    html = report.read_text()
    # A failure under a valid waiver is not a new failure.
    assert run.code == 0
    assert run.document["drift"]["new_failures"] == []
    assert "Drift since the baseline:" in html
    assert "no new drift" in html
    assert "mesh-waiver" in html
    assert "policy owned by the platform team" in html
    assert "1 Expected failure" in html


def test_junit_xml_carries_verdicts(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    failing_xml = tmp_path / "failing.xml"
    suite("--control", POLICY, "--control", ACCOUNT, f"--junitxml={failing_xml}")
    error_xml = tmp_path / "error.xml"
    suite("--control", POLICY, f"--junitxml={error_xml}", token_file=unknown_token(tmp_path))
    waived_xml = tmp_path / "waived.xml"
    suite("--control", POLICY, f"--junitxml={waived_xml}", f"--waivers={waiver_file(tmp_path, today())}")

    failing = junit_cases(failing_xml)
    assert failing[POLICY]["properties"]["verdict"] == "FAIL"
    assert failing[POLICY]["properties"]["severity"] == "high"
    assert failing[POLICY]["outcome"] == "failure"
    assert failing[ACCOUNT]["properties"]["verdict"] == "PASS"
    assert failing[ACCOUNT]["outcome"] == "passed"

    errored = junit_cases(error_xml)
    assert errored[POLICY]["properties"]["verdict"] == "ERROR"
    assert errored[POLICY]["outcome"] == "error"

    waived = junit_cases(waived_xml)
    assert waived[POLICY]["properties"]["verdict"] == "WAIVED"
    assert waived[POLICY]["outcome"] == "skipped"


def junit_cases(path) -> dict:
    """Map each control id in a JUnit XML file to its properties and outcome element."""
    cases = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcomes = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        cases[props.get("control")] = {"properties": props, "outcome": outcomes[0] if outcomes else "passed"}
    return cases
