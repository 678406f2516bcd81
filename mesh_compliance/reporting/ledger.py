"""Drift ledger: a compact snapshot of a run, and its comparison with a baseline.

``--ledger=PATH`` writes, after the run, one entry per control and node with
its verdict and a SHA-256 digest of its evidence (expected, observed and raw
values, already redacted). ``--baseline=PATH`` compares the run with such a
snapshot. New failures, evidence changed while passing and nodes that appeared
or vanished are new drift (exit code 12).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

LEDGER_SCHEMA = "carbonio-mesh-compliance/ledger"
LEDGER_SCHEMA_VERSION = 1

FAILING = frozenset({"FAIL", "FIX FAILED", "ERROR"})
# FIXED ends compliant, so a control FIXED in the baseline that fails now is a new failure.
NOT_FAILING = frozenset({"PASS", "WARN", "WAIVED", "N/A", "FIXED"})
PASSING = frozenset({"PASS", "WARN"})
LIST_LABELS = {"controls_appeared": "control appeared", "controls_vanished": "control vanished",
               "nodes_appeared": "node appeared", "nodes_vanished": "node vanished"}


class LedgerError(ValueError):
    """The baseline file is missing or is not a ledger."""


def evidence_digest(evidence: dict) -> str:
    """Return the SHA-256 of the expected, observed and raw evidence in canonical JSON."""
    subject = {key: evidence.get(key, {}) for key in ("expected", "observed", "raw")}
    canonical = json.dumps(subject, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def site_digest(site_source: str) -> str:
    if site_source == "<defaults>":
        return ""
    return hashlib.sha256(Path(site_source).read_bytes()).hexdigest()


def snapshot(run) -> dict:
    """Build the ledger document of a finished run."""
    entries = [
        {
            "control": record["control"],
            "node": record["node"],
            "verdict": record["verdict"],
            "evidence_sha256": evidence_digest(record.get("evidence") or {}),
        }
        for record in run.records
    ]
    return {
        "schema": LEDGER_SCHEMA,
        "schema_version": LEDGER_SCHEMA_VERSION,
        "run_id": run.run_id,
        "started": run.started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "site_file": run.site.source,
        "site_sha256": site_digest(run.site.source),
        "profile": run.profile,
        "entries": sorted(entries, key=lambda entry: (entry["control"], entry["node"])),
    }


def write_ledger(path: str, document: dict) -> None:
    """Write the ledger atomically: a synced temporary file in the same directory, then a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def load_ledger(path: str) -> dict:
    """Read a ledger file; raise LedgerError naming the path when it is missing or not a ledger."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LedgerError(f"baseline {path} does not exist; write one with --ledger={path}") from exc
    except OSError as exc:
        raise LedgerError(f"baseline {path} cannot be read: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LedgerError(f"baseline {path} is not a ledger: invalid JSON ({exc})") from exc

    if not isinstance(document, dict) or document.get("schema") != LEDGER_SCHEMA:
        raise LedgerError(f"baseline {path} is not a ledger: schema is not {LEDGER_SCHEMA!r}")
    if document.get("schema_version") != LEDGER_SCHEMA_VERSION:
        raise LedgerError(f"baseline {path} has ledger schema_version {document.get('schema_version')!r}; "
                          f"this suite reads version {LEDGER_SCHEMA_VERSION}")
    entries = document.get("entries")
    if not isinstance(entries, list) or not all(_is_entry(entry) for entry in entries):
        raise LedgerError(f"baseline {path} is not a ledger: 'entries' must list control, node, verdict "
                          "and evidence_sha256")
    return document


def _is_entry(entry) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(entry.get(key), str) for key in ("control", "node", "verdict", "evidence_sha256"))


def compare(baseline: dict, current: dict, baseline_path: str) -> dict:
    """Compare two ledger documents; return the ``drift`` section of the results."""
    before = {(entry["control"], entry["node"]): entry for entry in baseline["entries"]}
    after = {(entry["control"], entry["node"]): entry for entry in current["entries"]}

    new_failures, resolved, evidence_changed = [], [], []
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        change = {"control": key[0], "node": key[1], "before": old["verdict"], "after": new["verdict"]}
        if new["verdict"] in FAILING and old["verdict"] in NOT_FAILING:
            new_failures.append(change)
        elif old["verdict"] in FAILING and new["verdict"] in NOT_FAILING:
            resolved.append(change)
        elif (old["verdict"] in PASSING and new["verdict"] in PASSING
              and old["evidence_sha256"] != new["evidence_sha256"]):
            evidence_changed.append({**change, "evidence_sha256_before": old["evidence_sha256"],
                                     "evidence_sha256_after": new["evidence_sha256"]})

    controls_before = {control for control, _ in before}
    controls_after = {control for control, _ in after}
    # Nodes are compared through the controls both runs have, so a run of
    # other controls (another --control selection) is not a node change.
    common = controls_before & controls_after
    nodes_before = {node for control, node in before if control in common}
    nodes_after = {node for control, node in after if control in common}
    drift = {
        "baseline": baseline_path,
        "baseline_run_id": baseline.get("run_id", ""),
        "baseline_finished": baseline.get("finished", ""),
        "baseline_site_sha256": baseline.get("site_sha256", ""),
        "site_changed": baseline.get("site_sha256", "") != current["site_sha256"],
        "new_failures": new_failures,
        "resolved": resolved,
        "evidence_changed": evidence_changed,
        "controls_appeared": sorted(controls_after - controls_before),
        "controls_vanished": sorted(controls_before - controls_after),
        "nodes_appeared": sorted(nodes_after - nodes_before),
        "nodes_vanished": sorted(nodes_before - nodes_after),
    }
    drift["new_drift"] = bool(new_failures or evidence_changed or drift["nodes_appeared"] or drift["nodes_vanished"])
    return drift


def summary_lines(drift: dict) -> list[str]:
    """Return the terminal lines that describe the comparison with the baseline."""
    lines = [f"baseline {drift['baseline']} (run {drift['baseline_run_id']}, finished {drift['baseline_finished']}): "
             + ("new drift" if drift["new_drift"] else "no new drift")]
    if drift["site_changed"]:
        lines.append("site file changed since the baseline")
    for label, key in (("new failure", "new_failures"), ("resolved", "resolved")):
        for change in drift[key]:
            transition = f"{change['before']} -> {change['after']}"
            lines.append(f"{label:<16} {change['control']:<28} {transition} on {change['node']}")
    for change in drift["evidence_changed"]:
        lines.append(f"evidence changed {change['control']:<28} still {change['after']} on {change['node']}")
    for key, label in LIST_LABELS.items():
        for name in drift[key]:
            lines.append(f"{label:<16} {name}")
    return lines


class LedgerPlugin:
    """pytest hooks for ``--ledger`` and ``--baseline``."""

    def __init__(self, run, ledger_path: str | None, baseline_path: str | None, baseline: dict | None):
        self.run = run
        self.ledger_path = ledger_path
        self.baseline_path = baseline_path
        self.baseline = baseline

    @classmethod
    def from_config(cls, config, run) -> "LedgerPlugin":
        baseline_path = config.option.mesh_baseline
        baseline = None
        if baseline_path:
            try:
                baseline = load_ledger(baseline_path)
            except LedgerError as exc:
                raise pytest.UsageError(str(exc)) from exc
        return cls(run, config.option.mesh_ledger, baseline_path, baseline)

    def pytest_sessionfinish(self, session):
        # Runs before the plugin's trylast sessionfinish, which computes the exit
        # code from run.drift and writes the results file.
        # NOTE: only single-process runs are tested; under pytest-xdist the records
        # exist on the controlling process only, so workers return here.
        if not self.run.records:
            return
        current = snapshot(self.run)
        if self.baseline is not None:
            self.run.drift = compare(self.baseline, current, self.baseline_path)
        if self.ledger_path:
            write_ledger(self.ledger_path, current)

    def pytest_terminal_summary(self, terminalreporter):
        if self.run.drift is None:
            return
        terminalreporter.write_sep("=", "drift since the baseline")
        for line in summary_lines(self.run.drift):
            terminalreporter.write_line(line)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix):
        if self.run.drift is not None:
            prefix.append(html_summary(self.run.drift))


def html_summary(drift: dict) -> str:
    """Return the HTML block that shows the comparison with the baseline."""
    from html import escape

    items = "".join(f"<li>{escape(line)}</li>" for line in summary_lines(drift)[1:])
    headline = escape(summary_lines(drift)[0])
    return f'<div class="mesh-drift"><p><strong>Drift since the baseline:</strong> {headline}</p><ul>{items}</ul></div>'
