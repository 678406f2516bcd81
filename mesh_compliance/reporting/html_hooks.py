"""pytest-html hooks: control columns, verdict, evidence and fix outcome per row."""

from __future__ import annotations

import json
from html import escape

from mesh_compliance.results import properties

COLUMNS = ("control", "severity", "verdict", "fix")

# The run whose report is being written; set when the plugin registers this module.
RUN: list = [None]


def pytest_html_report_title(report):
    report.title = "Carbonio Mesh compliance report"


def pytest_html_results_summary(prefix, summary, postfix):
    run = RUN[0]
    if run is None:
        return
    counts = ", ".join(f"{count} {verdict}" for verdict, count in sorted(run.counts().items()))
    mode = "dry run: fixes planned, nothing changed" if run.dry_run else "fix run" if run.fix else "audit only"
    prefix.append(f"<p><strong>Compliance verdicts:</strong> {escape(counts or 'none yet')} "
                  f"({escape(mode)}, profile {escape(run.profile)}, run {escape(run.run_id)})</p>")


def pytest_html_results_table_header(cells):
    cells.insert(1, '<th class="sortable" data-column-type="control">Control</th>')
    cells.insert(2, '<th class="sortable" data-column-type="severity">Severity</th>')
    cells.insert(3, '<th class="sortable" data-column-type="verdict">Verdict</th>')
    cells.insert(4, '<th>Fix</th>')


def pytest_html_results_table_row(report, cells):
    props = properties(report)
    fix = json.loads(props["fix"]) if props.get("fix") else None
    fix_text = fix["status"] if fix else ""
    cells.insert(1, f'<td class="col-control">{escape(props.get("control", ""))}</td>')
    cells.insert(2, f'<td class="col-severity">{escape(props.get("severity", ""))}</td>')
    cells.insert(3, f'<td class="col-verdict">{escape(props.get("verdict", ""))}</td>')
    cells.insert(4, f'<td class="col-fix">{escape(fix_text)}</td>')
    # An ERROR is reported on the setup phase; the row is still the control.
    for index, cell in enumerate(cells):
        if 'class="col-testId"' in cell:
            cells[index] = cell.replace("::setup</td>", "</td>")


def pytest_html_results_table_html(report, data):
    props = properties(report)
    if not props:
        return
    data.insert(0, _details(props))


def _details(props: dict) -> str:
    evidence = json.loads(props.get("evidence") or "{}")
    fix = json.loads(props["fix"]) if props.get("fix") else None
    rows = [
        ("Control", props.get("control", "")),
        ("Title", props.get("title", "")),
        ("Procedure step", props.get("step", "")),
        ("Rationale", props.get("rationale", "")),
        ("Node", props.get("node", "")),
        ("Verdict", props.get("verdict", "")),
        ("Message", props.get("message", "")),
    ]
    rows += [(f"Expected {k}", v) for k, v in evidence.get("expected", {}).items()]
    rows += [(f"Observed {k}", v) for k, v in evidence.get("observed", {}).items()]
    rows += [(f"Evidence {k}", v) for k, v in evidence.get("raw", {}).items()]
    rows += [("Warning", w) for w in evidence.get("warnings", [])]
    if fix:
        rows.append(("Before the fix", fix.get("before", "")))
        rows.append(("Fix outcome", f"{fix['status']} {fix.get('reason', '')}".strip()))
        rows += [("Fix change", change) for change in fix.get("changes", [])]
        rows += [("Planned change", change) for change in fix.get("plan", [])]
    body = "".join(f"<tr><th>{escape(k)}</th><td><pre>{escape(str(v))}</pre></td></tr>" for k, v in rows if v)
    return f'<table class="mesh-evidence">{body}</table>'
