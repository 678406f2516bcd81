"""Ledger snapshots: evidence digests, loading a baseline, and each kind of drift."""

import json

import pytest

from mesh_compliance.reporting.ledger import (LEDGER_SCHEMA, LedgerError, compare, evidence_digest, load_ledger,
                                              write_ledger)

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def ledger(*entries, site="s" * 64) -> dict:
    rows = [{"control": c, "node": n, "verdict": v, "evidence_sha256": d} for c, n, v, d in entries]
    return {"schema": LEDGER_SCHEMA, "schema_version": 1, "run_id": "20261204T000000Z-1",
            "finished": "2026-12-04T00:00:00+00:00", "site_sha256": site, "entries": rows}


def test_digest_ignores_warnings_and_key_order():
    first = {"expected": {"a": "1", "b": "2"}, "observed": {}, "raw": {}, "warnings": ["one"]}
    second = {"raw": {}, "observed": {}, "expected": {"b": "2", "a": "1"}, "warnings": []}
    assert evidence_digest(first) == evidence_digest(second)


def test_digest_changes_with_raw_evidence():
    assert evidence_digest({"raw": {"rules": "x"}}) != evidence_digest({"raw": {"rules": "y"}})


def test_new_failure_is_drift():
    drift = compare(ledger(("acl-policy", "cluster", "PASS", DIGEST_A)),
                    ledger(("acl-policy", "cluster", "FAIL", DIGEST_B)), "base.json")
    assert drift["new_failures"] == [{"control": "acl-policy", "node": "cluster", "before": "PASS", "after": "FAIL"}]
    assert drift["new_drift"]


@pytest.mark.parametrize("before", ["PASS", "WARN", "WAIVED", "N/A", "FIXED"])
@pytest.mark.parametrize("after", ["FAIL", "FIX FAILED", "ERROR"])
def test_every_failing_transition_counts(before, after):
    drift = compare(ledger(("intention", "cluster", before, DIGEST_A)),
                    ledger(("intention", "cluster", after, DIGEST_A)), "base.json")
    assert len(drift["new_failures"]) == 1


def test_still_failing_is_not_new():
    drift = compare(ledger(("intention", "cluster", "FAIL", DIGEST_A)),
                    ledger(("intention", "cluster", "ERROR", DIGEST_B)), "base.json")
    assert drift["new_failures"] == []
    assert drift["resolved"] == []
    assert not drift["new_drift"]


def test_resolved_is_not_drift():
    drift = compare(ledger(("intention", "cluster", "FAIL", DIGEST_A)),
                    ledger(("intention", "cluster", "PASS", DIGEST_B)), "base.json")
    assert drift["resolved"] == [{"control": "intention", "node": "cluster", "before": "FAIL", "after": "PASS"}]
    assert not drift["new_drift"]


def test_evidence_changed_while_passing_is_drift():
    drift = compare(ledger(("acl-policy", "cluster", "PASS", DIGEST_A)),
                    ledger(("acl-policy", "cluster", "WARN", DIGEST_B)), "base.json")
    assert drift["evidence_changed"][0]["evidence_sha256_before"] == DIGEST_A
    assert drift["evidence_changed"][0]["evidence_sha256_after"] == DIGEST_B
    assert drift["new_drift"]


def test_controls_appearing_alone_are_not_drift():
    drift = compare(ledger(("acl-policy", "cluster", "PASS", DIGEST_A)),
                    ledger(("acl-policy", "cluster", "PASS", DIGEST_A), ("acl-token", "cluster", "PASS", DIGEST_A)),
                    "base.json")
    assert drift["controls_appeared"] == ["acl-token"]
    assert drift["controls_vanished"] == []
    assert not drift["new_drift"]


def test_node_appeared_and_vanished_is_drift():
    drift = compare(ledger(("gateway-account", "local", "PASS", DIGEST_A)),
                    ledger(("gateway-account", "ssh://gw", "PASS", DIGEST_A)), "base.json")
    assert drift["nodes_appeared"] == ["ssh://gw"]
    assert drift["nodes_vanished"] == ["local"]
    assert drift["new_drift"]


def test_node_of_other_controls_is_not_node_change():
    drift = compare(ledger(("acl-policy", "cluster", "PASS", DIGEST_A)),
                    ledger(("acl-token", "local", "PASS", DIGEST_A)), "base.json")
    assert drift["controls_appeared"] == ["acl-token"]
    assert drift["nodes_appeared"] == []
    assert drift["nodes_vanished"] == []
    assert not drift["new_drift"]


def test_site_change_is_reported():
    drift = compare(ledger(site="1" * 64), ledger(site="2" * 64), "base.json")
    assert drift["site_changed"]
    assert not drift["new_drift"]


def test_ledger_round_trip(tmp_path):
    path = tmp_path / "sub" / "ledger.json"
    write_ledger(str(path), ledger(("acl-policy", "cluster", "PASS", DIGEST_A)))
    assert load_ledger(str(path))["entries"][0]["control"] == "acl-policy"
    assert [p.name for p in path.parent.iterdir()] == ["ledger.json"]


@pytest.mark.parametrize("content, reason", [
    (None, "does not exist"),
    ("not json", "invalid JSON"),
    (json.dumps({"schema": "carbonio-mesh-compliance/results", "schema_version": 2}), "is not a ledger"),
    (json.dumps({"schema": LEDGER_SCHEMA, "schema_version": 7, "entries": []}), "schema_version 7"),
    (json.dumps({"schema": LEDGER_SCHEMA, "schema_version": 1, "entries": [{"control": "x"}]}), "'entries' must"),
])
def test_bad_baseline_names_path(tmp_path, content, reason):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LedgerError) as caught:
        load_ledger(str(path))
    assert str(path) in str(caught.value)
    assert reason in str(caught.value)
