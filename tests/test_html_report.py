"""The auditor's HTML report: rows, summary table, environment table and evidence, read from the file."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mesh_compliance.controls import SEVERITIES
from mesh_compliance.reporting import html_parts
from tests.conftest import needs_root
from tests.suite import run_suite
from tests.test_fleet_audit import fleet, fleet_site  # noqa: F401 (fleet is a fixture)

RESULT_OF_VERDICT = {"PASS": "Passed", "WARN": "Passed", "FIXED": "Passed", "N/A": "Skipped",
                     "FAIL": "Failed", "FIX FAILED": "Failed", "ERROR": "Error"}


class ReportReader(HTMLParser):
    """Reads the data blob pytest-html embeds and the severity × verdict summary table."""

    def __init__(self, text: str):
        super().__init__()
        self.blob: dict = {}
        self.summary: dict[tuple[str, str], int] = {}
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "div" and attributes.get("id") == "data-container":
            self.blob = json.loads(attributes["data-jsonblob"])
        if tag == "td" and "data-severity" in attributes and "data-verdict" in attributes:
            self._cell = attributes

    def handle_data(self, data):
        if self._cell is not None:
            self.summary[(self._cell["data-severity"], self._cell["data-verdict"])] = int(data)
            self._cell = None

    @property
    def rows(self) -> list[dict]:
        return [row for rows in self.blob["tests"].values() for row in rows]


def cell(row: dict, column: str) -> str:
    return next(html for html in row["resultsTableRow"] if f'class="col-{column}"' in html)


def text(html: str) -> str:
    return unescape(re.sub("<[^>]+>", "", html))


def attribute(html: str, name: str) -> str:
    match = re.search(fr'{name}="([^"]*)"', html)
    return unescape(match.group(1)) if match else ""


def lab_secrets(lab) -> list[str]:
    secrets = [Path(lab.management_token_file).read_text().strip()]
    secrets += [path.read_text().strip() for path in (Path(lab.dir) / "secrets").iterdir()]
    secrets.append((Path(lab.root) / "etc/carbonio/gateway/service-discover/token").read_text().strip())
    # The seeded token file may hold a placeholder such as "null". The suite masks only values of six or more characters.
    return [secret for secret in secrets if len(secret) >= 6]


@pytest.fixture(scope="module")
def reports(drifted_lab, tmp_path_factory):
    """Audit the seeded lab serially, with two xdist workers, and with Consul unreachable."""
    work = tmp_path_factory.mktemp("html-report")
    runs = {}
    for name, extra in (("serial", ()), ("parallel", ("-n", "2")),
                        ("unreachable", ("--consul-addr=http://127.0.0.1:1",))):
        html = work / f"{name}.html"
        run = run_suite(drifted_lab, work / name, f"--html={html}", "--self-contained-html", *extra)
        runs[name] = (run, ReportReader(html.read_text()), html)
    return runs


pytestmark = [needs_root, pytest.mark.lab]


@pytest.mark.parametrize("name", ["serial", "parallel", "unreachable"])
def test_rows_equal_controls_times_nodes(reports, name):
    run, report, _ = reports[name]
    records = run.document["results"]
    nodes = {record["node"] for record in records if record["node"] != "cluster"}
    cluster_controls = {record["control"] for record in records if record["node"] == "cluster"}
    node_controls = {record["control"] for record in records if record["node"] != "cluster"}

    assert len(report.rows) == len(cluster_controls) + len(node_controls) * len(nodes)
    assert len(report.rows) == len(records)
    pairs = Counter((text(cell(row, "control")), text(cell(row, "node"))) for row in report.rows)
    assert pairs == Counter((record["control"], record["node"]) for record in records)


def test_fleet_rows_per_control_and_node(compliant_lab, fleet, tmp_path):
    html = tmp_path / "fleet.html"
    site = fleet_site(compliant_lab, fleet, tmp_path)
    run = run_suite(compliant_lab, tmp_path, f"--site={site}", f"--html={html}", "--self-contained-html", "-n", "2")
    report = ReportReader(html.read_text())
    records = run.document["results"]

    assert len({record["node"] for record in records if record["node"] != "cluster"}) == 3
    assert len(report.rows) == len(records)
    pairs = Counter((text(cell(row, "control")), text(cell(row, "node"))) for row in report.rows)
    assert pairs == Counter((record["control"], record["node"]) for record in records)
    assert len([pair for pair in pairs if pair[0] == "files-db-package-absent"]) == 3


@pytest.mark.parametrize("name", ["serial", "parallel", "unreachable"])
def test_every_row_has_id_severity_verdict(reports, name):
    _, report, _ = reports[name]
    for row in report.rows:
        control = text(cell(row, "control"))
        severity = attribute(cell(row, "severity"), "data-severity")
        verdict = attribute(cell(row, "verdict"), "data-verdict")
        assert control, row["testId"]
        assert severity in SEVERITIES, row["testId"]
        assert verdict in RESULT_OF_VERDICT, row["testId"]
        assert row["result"] == RESULT_OF_VERDICT[verdict], f"{row['testId']}: {verdict} shown as {row['result']}"


def test_unreachable_consul_rows_are_errors(reports):
    _, report, _ = reports["unreachable"]
    errors = [row for row in report.rows if attribute(cell(row, "verdict"), "data-verdict") == "ERROR"]
    assert errors
    assert all(row["result"] == "Error" for row in errors)
    assert all("::setup" not in cell(row, "testId") for row in errors)
    assert report.blob["environment"]["Consul version"].startswith("not read: ")


@pytest.mark.parametrize("name", ["serial", "parallel", "unreachable"])
def test_severity_summary_matches_json(reports, name):
    run, report, _ = reports[name]
    expected = Counter((record["severity"], record["verdict"]) for record in run.document["results"])
    assert report.summary, "the report has no severity × verdict table"
    for (severity, verdict), count in report.summary.items():
        assert count == expected[(severity, verdict)], f"{severity} × {verdict}"
    for key, count in expected.items():
        assert report.summary.get(key) == count, f"{key} missing from the summary table"


def test_environment_has_run_metadata(reports, drifted_lab):
    _, report, _ = reports["serial"]
    environment = report.blob["environment"]
    site_file = Path(environment["Site file"])
    assert environment["Site file SHA-256"] == hashlib.sha256(site_file.read_bytes()).hexdigest()
    assert environment["Consul version"]
    assert environment["Consul datacenter"] == "dc1"
    assert str(drifted_lab.root) in environment["Targets"]
    for key in ("Suite version", "Started", "Finished", "Run by"):
        assert environment[key], key


@pytest.mark.parametrize("name", ["serial", "parallel"])
def test_environment_has_no_secret(reports, drifted_lab, name):
    _, report, html = reports[name]
    environment = json.dumps(report.blob["environment"])
    page = html.read_text()
    for secret in lab_secrets(drifted_lab):
        assert secret not in environment
        assert secret not in page


def test_failed_row_carries_evidence(reports):
    run, report, _ = reports["serial"]
    failed = {record["control"] for record in run.document["results"] if record["verdict"] == "FAIL"}
    row = next(row for row in report.rows if text(cell(row, "control")) in failed)
    labels = [label for label, _ in json.loads(attribute(row["log"], "data-rows"))]
    assert "Rationale" in labels
    assert any(label.startswith("Expected ") for label in labels), labels
    assert any(label.startswith("Observed ") for label in labels), labels


def test_evidence_block_stays_on_one_line():
    props = {"control": "acl-policy", "verdict": "FAIL", "message": "rules differ\nExpected read",
             "evidence": json.dumps({"raw": {"policy": "Rules:\nkey_prefix \"x\" {}"}})}
    block = html_parts.evidence_block(props)
    assert "\n" not in block
    pairs = dict(json.loads(attribute(block, "data-rows")))
    assert pairs["Message"] == "rules differ\nExpected read"
    assert pairs["Evidence policy"] == 'Rules:\nkey_prefix "x" {}'


def test_waiver_property_rendered():
    waiver = json.dumps({"status": "valid", "justification": "migration window", "approved_by": "ops",
                         "expires": "2027-01-31", "control": "intention", "node": None})
    line = html_parts.waiver_text(waiver)
    assert line.startswith("waived: migration window")
    assert "approved by ops" in line
    assert "2027-01-31" in line
    assert html_parts.waiver_text("") == ""
    assert html_parts.waiver_text("accepted by the CISO") == "accepted by the CISO"
