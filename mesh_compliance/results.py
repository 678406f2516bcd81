"""Verdict records: report annotations, the JSON results file and the exit code.

Everything a report row needs travels in ``report.user_properties`` as
strings, so it survives serialization between pytest-xdist workers and lands
in JUnit XML as properties.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import os
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mesh_compliance.redact import MASK, redact

SCHEMA = "carbonio-mesh-compliance/results"
SCHEMA_VERSION = 2

# Exit codes chosen above pytest's own 0-5 so that a cron job can tell them apart.
EXIT_COMPLIANT = 0
EXIT_NON_COMPLIANT = 10
EXIT_UNDECIDED = 11
EXIT_DRIFT = 12
EXIT_LOCKED = 13
EXIT_ROLLBACK_INCOMPLETE = 14

PREFIX = "mesh_"
SECRET_NAME = re.compile(r"token|password|secret|passwd|credential|auth", re.IGNORECASE)


def suite_version() -> str:
    try:
        return importlib_metadata.version("carbonio-mesh-compliance")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"

if TYPE_CHECKING:
    from mesh_compliance.shared_results import SharedResults


@dataclass
class Run:
    site: object
    settings: object
    run_id: str
    started: str
    results_path: str | None
    root: str | None
    fix: bool
    profile: str = "deployed"
    dry_run: bool = False
    journal_dir: str = "reports/journal"
    records: list[dict] = field(default_factory=list)
    consul_info: dict = field(default_factory=dict)
    # Comparison with --baseline (mesh_compliance.reporting.ledger.compare), or None.
    drift: dict | None = None
    # The nodes of the run (mesh_compliance.nodes.NodeSpec), in the order the site lists them.
    nodes: list = field(default_factory=list)
    # In a pytest-xdist worker of a fixing run: the verdicts of every worker.
    shared: SharedResults | None = None

    @classmethod
    def start(cls, config, site, settings) -> "Run":
        now = dt.datetime.now(dt.timezone.utc)
        # pytest-xdist workers take the run id of their controller, so one run has one journal.
        worker_input = getattr(config, "workerinput", {})
        run_id = worker_input.get("mesh_run_id") or f"{now.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
        return cls(site, settings, run_id, now.isoformat(timespec="seconds"),
                   config.option.mesh_results_json, config.option.mesh_root,
                   bool(config.option.mesh_fix or config.option.mesh_dry_run),
                   profile=config.option.mesh_profile or site.profile,
                   dry_run=bool(config.option.mesh_dry_run),
                   journal_dir=config.option.mesh_journal_dir)

    def fix_mode(self) -> str:
        if self.dry_run:
            return "dry run (plan only)"
        return "on" if self.fix else "off (audit only)"

    def note_consul(self, client, identity: dict) -> None:
        """Record which token identity and agent the run used (never the secret)."""
        self.consul_info["token_accessor"] = identity.get("AccessorID", "")
        self.consul_info["token_description"] = identity.get("Description", "")
        self.consul_info["token_policy_ids"] = [link.get("ID") for link in identity.get("Policies") or []]

    def journal(self, target: str, node: str = "cluster"):
        """Return the journal of this run, or None in a dry run, which changes nothing."""
        from mesh_compliance.journal import Journal

        return None if self.dry_run else Journal(Path(self.journal_dir), self.run_id, target, node)

    def latest(self, control_id: str, node: str | None = None) -> dict | None:
        """Return the last record of a control in this run, if it has run.

        With ``node``, only records of that node or of the cluster count.
        """
        records = self.shared.records() if self.shared is not None else self.records
        matches = [record for record in records
                   if record["control"] == control_id and (node is None or record["node"] in (node, "cluster"))]
        return matches[-1] if matches else None

    def metadata(self) -> dict:
        site_digest = ""
        if self.site.source != "<defaults>":
            site_digest = hashlib.sha256(Path(self.site.source).read_bytes()).hexdigest()
        return {
            "Suite version": suite_version(),
            "Run id": self.run_id,
            "Site file": self.site.source,
            "Site file SHA-256": site_digest,
            "Consul address": self.settings.address,
            "Consul token from": self.settings.token_source,
            "Target root": self.root or "/",
            "Fix mode": self.fix_mode(),
            "Profile": self.profile,
            "Run by": f"{getpass.getuser()}@{socket.gethostname()}",
        }

    def add(self, report) -> None:
        props = properties(report)
        record = {
            "control": props["control"],
            "title": props["title"],
            "severity": props["severity"],
            "step": props["step"],
            "node": props["node"],
            "test": report.nodeid,
            "verdict": props["verdict"],
            "message": props.get("message", ""),
            "evidence": json.loads(props.get("evidence", "{}")),
            "fix": json.loads(props["fix"]) if props.get("fix") else None,
            "waiver": json.loads(props["waiver"]) if props.get("waiver") else None,
        }
        self.records.append(record)
        if self.shared is not None:
            self.shared.add(record)

    def counts(self) -> Counter:
        return Counter(record["verdict"] for record in self.records)

    def exit_code(self, pytest_status: int) -> int:
        if pytest_status not in (0, 1):
            return pytest_status
        counts = self.counts()
        if counts["ERROR"]:
            return EXIT_UNDECIDED
        if self.drift and self.drift["new_drift"]:
            return EXIT_DRIFT
        if counts["FAIL"] or counts["FIX FAILED"]:
            return EXIT_NON_COMPLIANT
        return pytest_status

    def summary_lines(self) -> list[str]:
        counts = self.counts()
        order = ("PASS", "WARN", "N/A", "FIXED", "WAIVED", "FAIL", "FIX FAILED", "ERROR")
        lines = [", ".join(f"{counts[v]} {v}" for v in order if counts[v])]
        for record in self.records:
            if record["verdict"] != "PASS":
                node = "" if record["node"] == "cluster" else f"[{record['node']}] "
                lines.append(f"{record['verdict']:<10} {record['control']:<28} {node}{_headline(record)}")
                # A dry run's plan; its diffs are in the JSON results and the HTML report.
                for planned in (record.get("fix") or {}).get("plan") or []:
                    lines.append(f"{'':<10} {'':<28} plan: {planned.splitlines()[0]}")
        return lines

    def finish(self, exit_code: int) -> None:
        if not self.results_path:
            return
        document = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "started": self.started,
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "suite_version": suite_version(),
            "site_file": self.site.source,
            "consul_address": self.settings.address,
            "fix": self.fix,
            "dry_run": self.dry_run,
            "profile": self.profile,
            "exit_code": exit_code,
            "summary": dict(self.counts()),
            "results": self.records,
            "drift": self.drift,
        }
        path = Path(self.results_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        temporary.write_text(redact(json.dumps(document, indent=2)) + "\n", encoding="utf-8")
        os.replace(temporary, path)


def _headline(record: dict) -> str:
    """Return one line saying why a control is not a plain PASS."""
    fix = record.get("fix") or {}
    if record["verdict"] == "FIXED":
        return "; ".join(fix.get("changes", [])) or "fixed"
    first = record["message"].splitlines()[0] if record["message"] else ""
    if fix.get("status") == "not applied":
        return f"{first} [fix not applied: {fix.get('reason', '')}]"
    return first


class Recorder:
    """Collects one record per finished control on the controlling process."""

    def __init__(self, run: Run):
        self.run = run

    def pytest_runtest_logreport(self, report) -> None:
        if verdict_of(report) is not None and (report.when == "call" or report.failed or report.skipped):
            self.run.add(report)


def annotate(report, item, spec, outcome) -> None:
    """Attach the control's metadata, verdict and evidence to a report."""
    target = item.funcargs.get("target") if hasattr(item, "funcargs") else None
    node = target.name if target is not None else "cluster"
    values = {
        "control": spec.id,
        "title": spec.title,
        "severity": spec.severity,
        "step": spec.step,
        "rationale": spec.rationale,
        "node": node,
        "verdict": outcome.verdict,
        "message": redact(outcome.message),
        "evidence": redact(json.dumps(outcome.evidence, sort_keys=True)),
        "fix": redact(json.dumps(outcome.fix, sort_keys=True)) if outcome.fix else "",
    }
    report.user_properties = [(k, v) for k, v in report.user_properties if not str(k).startswith(PREFIX)]
    report.user_properties.extend((PREFIX + key, value) for key, value in values.items())
    report.longrepr = redact_longrepr(report.longrepr)


def redact_longrepr(value, depth: int = 0):
    """Mask secrets everywhere in pytest's failure representation, keeping its type.

    Assertion rewriting and --showlocals print intermediate values, which can
    include a secret a control compared. pytest's repr objects are dataclasses,
    so every string field is rewritten in place.
    """
    if depth > 12 or value is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        items = [redact_longrepr(item, depth + 1) for item in value]
        return type(value)(items) if isinstance(value, list) else tuple(items)
    if dataclasses.is_dataclass(value):
        for fld in dataclasses.fields(value):
            current = getattr(value, fld.name)
            updated = redact_longrepr(current, depth + 1)
            if updated is not current:
                object.__setattr__(value, fld.name, updated)
    return value


def properties(report) -> dict:
    # Collection reports have no user_properties.
    pairs = getattr(report, "user_properties", ())
    return {str(k)[len(PREFIX):]: v for k, v in pairs if str(k).startswith(PREFIX)}


def verdict_of(report) -> str | None:
    return properties(report).get("verdict")


def scrub_metadata(metadata: dict) -> None:
    """Mask environment-table values whose names or contents carry secrets."""
    for key in list(metadata):
        value = metadata[key]
        if isinstance(value, dict):
            scrub_metadata(value)
        elif SECRET_NAME.search(str(key)) and key != "Consul token from":
            metadata[key] = MASK
        elif isinstance(value, str):
            metadata[key] = redact(value)

