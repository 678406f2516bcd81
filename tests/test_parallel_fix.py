"""--fix with pytest-xdist workers: prerequisites, one journal, the same outcome as a serial run."""

import json

import pytest

from tests.conftest import ALL_OPT_INS, needs_root
from tests.suite import run_suite
from tests.test_end_to_end import REPAIRED_BY_OTHERS, SEEDED_FAILURES
from tests.test_safe_fix import clear_faults, inject

pytestmark = [needs_root, pytest.mark.lab]


def test_prerequisite_is_seen_across_workers(drifted_lab, tmp_path):
    inject(drifted_lab, path_prefix="/v1/acl/policy/", method="PUT", mode="status500", count=5)
    try:
        run = run_suite(drifted_lab, tmp_path, "--fix", "-n", "2", "--control=acl-policy", "--control=acl-token")
    finally:
        clear_faults(drifted_lab)

    assert run.verdict("acl-policy") == "FIX FAILED", run.output[-3000:]
    assert run.verdict("acl-token") == "FAIL"
    fix = run.record("acl-token")["fix"]
    assert fix["status"] == "not attempted"
    assert "acl-policy" in fix["reason"]


def test_other_dist_modes_are_rejected(drifted_lab, tmp_path):
    run = run_suite(drifted_lab, tmp_path, "--fix", "-n", "2", "--dist=each")

    assert run.code == 4
    assert "--fix cannot run with --dist=each" in run.output


@pytest.fixture(scope="module")
def parallel_fix(drifted_lab, tmp_path_factory):
    work = tmp_path_factory.mktemp("parallel-fix")
    fixed = run_suite(drifted_lab, work, "--fix", "-n", "2", *ALL_OPT_INS, f"--journal-dir={work / 'journal'}")
    second = run_suite(drifted_lab, work, "--fix", "-n", "2", *ALL_OPT_INS, f"--journal-dir={work / 'journal'}")
    return {"fixed": fixed, "second": second, "journal": work / "journal"}


def test_parallel_fix_repairs_every_control(parallel_fix):
    run = parallel_fix["fixed"]

    for control_id in SEEDED_FAILURES:
        expected = "PASS" if control_id in REPAIRED_BY_OTHERS else "FIXED"
        assert run.verdict(control_id) == expected, run.message(control_id)
    assert set(run.verdicts.values()) <= {"PASS", "WARN", "N/A", "FIXED"}
    assert run.code == 0, run.output[-3000:]


def test_parallel_fix_writes_one_journal(parallel_fix):
    run_id = parallel_fix["fixed"].document["run_id"]

    assert [path.stem for path in parallel_fix["journal"].glob("*.jsonl")] == [run_id]
    entries = [json.loads(line) for line in (parallel_fix["journal"] / f"{run_id}.jsonl").read_text().splitlines()]
    assert {entry["run_id"] for entry in entries} == {run_id}
    assert {"acl-policy", "gateway-unit"} <= {entry["control"] for entry in entries}


def test_second_parallel_fix_changes_nothing(parallel_fix):
    run = parallel_fix["second"]

    assert all(record["fix"] is None for record in run.document["results"])
    assert set(run.verdicts.values()) <= {"PASS", "WARN", "N/A"}
    assert not list(parallel_fix["journal"].glob(f"{run.document['run_id']}.jsonl"))


def test_shared_results_wait_gives_up(tmp_path):
    from mesh_compliance.shared_results import SharedResults

    shared = SharedResults(str(tmp_path), "gw0", wait_seconds=0.3)
    shared.scheduled["acl-policy"] = 1

    assert shared.wait_for("acl-policy") is None


def test_shared_results_skip_a_partial_line(tmp_path):
    from mesh_compliance.shared_results import SharedResults

    writer = SharedResults(str(tmp_path), "gw0")
    writer.add({"control": "acl-policy", "node": "cluster", "verdict": "FAIL", "fix": None, "title": "unused"})
    (tmp_path / "gw1.jsonl").write_text('{"control": "acl-policy", "node": "clu')
    reader = SharedResults(str(tmp_path), "gw1")
    reader.scheduled["acl-policy"] = 1

    assert reader.wait_for("acl-policy") == [{"control": "acl-policy", "node": "cluster", "verdict": "FAIL", "fix": None}]
