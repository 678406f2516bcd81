"""The secret scan of a run's artifacts: the matching alone, then runs against the lab."""

import html
import json
from pathlib import Path

import pytest

from mesh_compliance.reporting import monitoring, secretscan
from tests import planted_secret_plugin, promtext
from tests.conftest import needs_root

EXIT_SECRET_LEAKED = 15


def scan_text(tmp_path: Path, text: str, secrets: dict[str, str]) -> list[str]:
    path = tmp_path / "artifact"
    path.write_text(text, encoding="utf-8")
    return [leak.describe() for leak in secretscan.scan_file(secretscan.Artifact("report", path), secrets)]


@pytest.mark.parametrize("encode", [
    lambda s: s,
    lambda s: json.dumps({"message": s}),
    lambda s: html.escape(json.dumps({"message": s})),
    lambda s: html.escape(s, quote=False),
], ids=["plain", "json", "html-of-json", "xml-text"])
def test_scan_finds_each_written_form(tmp_path, encode):
    secret = 'pa"ss<wo>rd&\\x'
    found = scan_text(tmp_path, f"before {encode(secret)} after", {secret: "database password"})

    assert found == [f"secret scan: report {tmp_path / 'artifact'} contains a database password"]
    assert secret not in found[0]


def test_scan_one_finding_per_kind(tmp_path):
    secrets = {"0b9d1c3e-token-one": "Consul token", "1f2e3d4c-token-two": "Consul token", "hunter22pw": "database password"}
    found = scan_text(tmp_path, "0b9d1c3e-token-one 1f2e3d4c-token-two hunter22pw", secrets)

    assert [line.rsplit(" contains a ", 1)[1] for line in found] == ["Consul token", "database password"]


def test_scan_clean_or_missing_file(tmp_path):
    assert scan_text(tmp_path, "token <redacted>", {"0b9d1c3e-token-one": "Consul token"}) == []
    missing = secretscan.Artifact("report", tmp_path / "absent")
    assert secretscan.scan_file(missing, {"0b9d1c3e-token-one": "Consul token"}) == []


def test_scan_unreadable_file_is_finding(tmp_path):
    directory = secretscan.Artifact("report", tmp_path)
    found = secretscan.scan_file(directory, {"0b9d1c3e-token-one": "Consul token"})

    assert len(found) == 1
    assert "could not be read" in found[0].describe()


# -- runs against the lab -----------------------------------------------------

def artifact_args(directory: Path) -> list[str]:
    return [f"--html={directory / 'report.html'}", "--self-contained-html",
            f"--junitxml={directory / 'junit.xml'}", f"--log-file={directory / 'run.log'}",
            "--log-file-level=DEBUG", f"--prometheus-textfile={directory / 'mesh.prom'}"]


def lab_token(lab) -> str:
    return Path(lab.management_token_file).read_text().strip()


@needs_root
@pytest.mark.lab
def test_run_clean_keeps_exit_code(suite, compliant_lab, tmp_path):
    run = suite(*artifact_args(tmp_path / "artifacts"), "--control=acl-policy", "--control=kv-db-credentials")

    assert run.code == 0, run.output[-3000:]
    assert "secret scan" not in run.output
    assert lab_token(compliant_lab) not in (tmp_path / "artifacts" / "run.log").read_text()


@needs_root
@pytest.mark.lab
def test_run_token_in_log_file_exits_15(suite, compliant_lab, tmp_path):
    directory = tmp_path / "artifacts"
    directory.mkdir()
    token = lab_token(compliant_lab)
    (directory / "run.log").write_text(f"copied by hand: {token}\n")
    run = suite(*artifact_args(directory), "--log-file-mode=a", "--control=acl-policy")

    assert run.code == EXIT_SECRET_LEAKED, run.output[-3000:]
    assert f"secret scan: log file {directory / 'run.log'} contains a Consul token" in run.output
    assert token not in run.output
    families = promtext.parse((directory / "mesh.prom").read_text())
    assert families["carbonio_mesh_compliance_exit_code"].samples == [({}, EXIT_SECRET_LEAKED)]


@needs_root
@pytest.mark.lab
def test_run_scans_html_after_writing(suite, tmp_path):
    directory = tmp_path / "artifacts"
    run = suite(*artifact_args(directory), "-p", "tests.planted_secret_plugin", "--control=acl-policy")

    assert planted_secret_plugin.MARKER in (directory / "report.html").read_text()
    assert run.code == EXIT_SECRET_LEAKED, run.output[-3000:]
    assert (f"secret scan: HTML report {directory / 'report.html'} contains a {planted_secret_plugin.KIND}"
            in run.output)
    assert "secret scan: JUnit XML" not in run.output
    assert planted_secret_plugin.MARKER not in run.output


@needs_root
@pytest.mark.lab
def test_run_leak_is_nagios_critical(suite, tmp_path):
    run = suite(*artifact_args(tmp_path / "artifacts"), "-p", "tests.planted_secret_plugin",
                "--control=acl-policy", "--nagios")

    assert run.code == monitoring.NAGIOS_CRITICAL, run.output[-3000:]
    assert run.output.splitlines()[0].startswith(
        "CARBONIO MESH COMPLIANCE CRITICAL - a secret leaked into an artifact; 1 PASS | ")
