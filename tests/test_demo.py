"""The README's first command, run as a user would."""

import json
import os
import subprocess

import pytest

from tests.conftest import needs_root
from tests.suite import CHECKOUT

pytestmark = [needs_root, pytest.mark.lab]


def test_demo_goes_from_non_compliant_to_compliant(lab_parent, tmp_path):
    reports = tmp_path / "reports"
    environment = {**os.environ, "MESH_LAB_DIR": str(lab_parent / "demo-lab"), "MESH_REPORTS_DIR": str(reports)}
    completed = subprocess.run(["./demo"], cwd=CHECKOUT, capture_output=True, text=True, timeout=600, env=environment)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    assert json.loads((reports / "audit-before.json").read_text())["exit_code"] == 10
    assert json.loads((reports / "audit-after.json").read_text())["exit_code"] == 0
    for name in ("audit-before.html", "fix.html", "audit-after.html"):
        assert (reports / name).stat().st_size > 0
    assert not (lab_parent / "demo-lab").exists()
