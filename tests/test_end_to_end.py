"""The whole flow on a freshly seeded lab: audit, repair, audit again, reports."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import ALL_OPT_INS, needs_root
from tests.suite import run_suite

pytestmark = [needs_root, pytest.mark.lab]

SEEDED_FAILURES = {
    "acl-policy": 'service "carbonio-files-db" write',
    "acl-token": "holds no token",
    "catalog-external-service": "external-probe",
    "gateway-config-entry": "does not exist",
    "gateway-unit": "token-file",
    "kv-db-credentials": "carbonio-files/db-password",
    "db-login": "KV lacks db-password",
    "files-db-package-absent": "install ok installed",
    "gateway-token-file": "holds the text null",
    "intention": "no intention allows carbonio-files -> carbonio-files-db",
    "policy-file-matches": "only the file grants",
    "registration-file-matches": "Service.Port",
    "gateway-config-file-matches": "does not exist in Consul",
    "gateway-unit-loaded": "-token-file is missing",
    "gateway-name-agreement": "config entry none",
    "db-ownership": "KV lacks carbonio-files/db-password",
}

# Controls whose fix comes from another control's fixer that runs earlier:
# they pass by the time they run in the fix run.
REPAIRED_BY_OTHERS = {"gateway-token-file", "policy-file-matches", "registration-file-matches",
                      "gateway-config-file-matches", "gateway-unit-loaded", "gateway-name-agreement", "db-ownership"}


class RowCounter(HTMLParser):
    """Reads the JSON blob pytest-html embeds and counts its result rows."""

    def __init__(self):
        super().__init__()
        self.blob = ""

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "div" and attributes.get("id") == "data-container":
            self.blob = attributes.get("data-jsonblob", "")


@pytest.fixture(scope="module")
def flow(drifted_lab, tmp_path_factory):
    work = tmp_path_factory.mktemp("flow")
    html = work / "audit.html"
    first = run_suite(drifted_lab, work, f"--html={html}", "--self-contained-html")
    fixed = run_suite(drifted_lab, work, "--fix", *ALL_OPT_INS, f"--html={work / 'fix.html'}", "--self-contained-html")
    again = run_suite(drifted_lab, work, f"--html={work / 'final.html'}", "--self-contained-html")
    second_fix = run_suite(drifted_lab, work, "--fix", *ALL_OPT_INS)
    return {"first": first, "fixed": fixed, "again": again, "second_fix": second_fix, "work": work, "lab": drifted_lab}


@pytest.mark.parametrize("control_id", sorted(SEEDED_FAILURES))
def test_seeded_lab_fails_each_control(flow, control_id):
    run = flow["first"]
    assert run.verdict(control_id) == "FAIL"
    assert SEEDED_FAILURES[control_id] in run.message(control_id)


def test_seeded_audit_exits_non_compliant(flow):
    assert flow["first"].code == 10


def test_fix_repairs_every_control(flow):
    run = flow["fixed"]
    for control_id in SEEDED_FAILURES:
        expected = "PASS" if control_id in REPAIRED_BY_OTHERS else "FIXED"
        assert run.verdict(control_id) == expected, run.message(control_id)
    assert set(run.verdicts.values()) <= {"PASS", "WARN", "N/A", "FIXED"}
    assert run.code == 0


def test_audit_after_fix_is_compliant(flow):
    run = flow["again"]
    assert set(run.verdicts.values()) <= {"PASS", "WARN", "N/A"}
    assert run.code == 0


def test_second_fix_changes_nothing(flow):
    run = flow["second_fix"]
    assert all(record["fix"] is None for record in run.document["results"])
    assert set(run.verdicts.values()) <= {"PASS", "WARN", "N/A"}


def test_html_report_has_one_row_per_control(flow):
    parser = RowCounter()
    parser.feed((flow["work"] / "audit.html").read_text())
    assert parser.blob, "pytest-html embedded no data"
    rows = re.findall(r"col-control&#34;&gt;|col-control\\\"|col-control", parser.blob)
    assert len(set(re.findall(r"checks/test_\w+\.py::test_\w+", parser.blob))) == len(flow["first"].verdicts)
    assert rows


def test_html_report_shows_verdicts_and_evidence(flow):
    text = (flow["work"] / "fix.html").read_text()
    for word in ("FIXED", "acl-policy", "Expected", "Observed", "Fix change"):
        assert word in text


def test_reports_carry_no_secret(flow):
    lab = flow["lab"]
    secrets = [Path(lab.management_token_file).read_text().strip()]
    secrets += [path.read_text().strip() for path in (Path(lab.dir) / "secrets").iterdir()]
    secrets.append((Path(lab.root) / "etc/carbonio/gateway/service-discover/token").read_text().strip())
    for artifact in flow["work"].glob("*.html"):
        text = artifact.read_text()
        for secret in secrets:
            assert secret not in text, f"a secret appears in {artifact.name}"
    for run in ("first", "fixed", "again"):
        for secret in secrets:
            assert secret not in flow[run].output
