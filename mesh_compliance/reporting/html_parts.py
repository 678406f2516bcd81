"""HTML fragments of the auditor's report: summary table, verdict filter, row cells and evidence.

pytest-html 4.2 builds every result row in the browser from a JSON blob, and
puts the text of ``pytest_html_results_table_html`` into the row's log with
``innerHTML``. A fleet report has tens of thousands of rows. Each row therefore
carries its evidence as a JSON list of (label, value) pairs in one
attribute. The script below builds the table only for expanded rows, with
textContent, so no value is parsed as HTML.

NOTE: pytest-html still parses every row's cells at load. With 20,000 rows
this report took about 1.7 to 1.9 times as long as pytest-html's default
report to render (bench/html-render.md).
"""

from __future__ import annotations

import json
from collections import Counter
from html import escape

from mesh_compliance.controls import SEVERITIES
from mesh_compliance.evaluate import VERDICTS

SEVERITY_ORDER = tuple(reversed(SEVERITIES))
VERDICT_ORDER = ("PASS", "WARN", "N/A", "FIXED", "WAIVED", "FAIL", "FIX FAILED", "ERROR")

# The script runs before pytest-html's own (which is at the end of the body),
# so its listeners see the first rendering of the table and every redraw.
SCRIPT = """
(function () {
  const filterStyle = document.createElement('style');
  document.head.appendChild(filterStyle);

  // NOTE: the rule uses :has(), which Chromium 105, Firefox 121 and Safari 15.4 and later support.
  // An older browser ignores it, and the verdict checkboxes then hide nothing.
  function applyVerdictFilter() {
    const hidden = [...document.querySelectorAll('input.mesh-verdict-filter')]
      .filter((box) => !box.checked).map((box) => box.value);
    filterStyle.textContent = hidden.map((verdict) =>
      `#results-table tbody:has(> tr > td.col-verdict[data-verdict="${CSS.escape(verdict)}"]) {display: none}`
    ).join('\\n');
  }

  function evidenceTable(rows) {
    const table = document.createElement('table');
    table.className = 'mesh-evidence';
    rows.forEach(([label, value]) => {
      const row = table.insertRow();
      const header = document.createElement('th');
      header.textContent = label;
      row.appendChild(header);
      const text = document.createElement('pre');
      text.textContent = value;
      row.insertCell().appendChild(text);
    });
    return table;
  }

  function fillEvidence(table) {
    table.querySelectorAll('tr.extras-row:not(.hidden) div.mesh-evidence[data-rows]').forEach((div) => {
      div.replaceChildren(evidenceTable(JSON.parse(div.dataset.rows)));
      div.removeAttribute('data-rows');
    });
  }

  document.addEventListener('change', (event) => {
    if (event.target.matches('input.mesh-verdict-filter')) {
      applyVerdictFilter();
    }
  });
  new MutationObserver((mutations) => {
    mutations.forEach((mutation) => mutation.addedNodes.forEach((node) => {
      if (node.id === 'results-table') {
        fillEvidence(node);
      }
    }));
  }).observe(document.body, {childList: true});
})();
"""

STYLE = """
table.mesh-summary {border-collapse: collapse; margin: 0.5em 0}
table.mesh-summary th, table.mesh-summary td {border: 1px solid #ccc; padding: 2px 8px; text-align: right}
table.mesh-summary th:first-child {text-align: left}
table.mesh-evidence th {text-align: left; vertical-align: top; padding-right: 1em; white-space: nowrap}
table.mesh-evidence pre {margin: 0; white-space: pre-wrap}
td.col-verdict[data-verdict="FAIL"], td.col-verdict[data-verdict="FIX FAILED"] {color: #c00; font-weight: bold}
td.col-verdict[data-verdict="ERROR"] {color: #a05000; font-weight: bold}
"""


def verdict_order(present) -> list[str]:
    """Return the known verdicts in report order, then any other verdict seen, sorted."""
    known = [verdict for verdict in VERDICT_ORDER if verdict in VERDICTS or verdict == "WAIVED"]
    return known + sorted(set(present) - set(known))


def severity_table(records: list[dict]) -> str:
    """Build the severity × verdict table; each count cell names its severity and verdict."""
    counts = Counter((record["severity"], record["verdict"]) for record in records)
    verdicts = verdict_order({record["verdict"] for record in records})
    head = "".join(f"<th>{escape(verdict)}</th>" for verdict in verdicts)
    rows = []
    for severity in SEVERITY_ORDER:
        cells = "".join(
            f'<td data-severity="{severity}" data-verdict="{escape(verdict)}">{counts[(severity, verdict)]}</td>'
            for verdict in verdicts
        )
        total = sum(counts[(severity, verdict)] for verdict in verdicts)
        rows.append(f"<tr><th>{severity}</th>{cells}<td data-severity=\"{severity}\" data-total>{total}</td></tr>")
    totals = "".join(
        f'<td data-verdict="{escape(verdict)}" data-total>{sum(counts[(s, verdict)] for s in SEVERITY_ORDER)}</td>'
        for verdict in verdicts
    )
    rows.append(f"<tr><th>all</th>{totals}<td data-total>{len(records)}</td></tr>")
    return (f'<table class="mesh-summary" id="mesh-severity-summary">'
            f"<tr><th>Severity</th>{head}<th>Total</th></tr>{''.join(rows)}</table>")


def verdict_filter(records: list[dict]) -> str:
    """Build one checkbox per verdict present; unchecking one hides its rows."""
    counts = Counter(record["verdict"] for record in records)
    boxes = "".join(
        f'<label><input type="checkbox" class="mesh-verdict-filter" value="{escape(verdict)}" checked> '
        f"{counts[verdict]} {escape(verdict)}</label> "
        for verdict in verdict_order(counts) if counts[verdict]
    )
    return f'<p class="mesh-verdict-filters"><strong>Show verdicts:</strong> {boxes}</p>'


def assets() -> str:
    return f"<style>{STYLE}</style><script>{SCRIPT}</script>"


def severity_cell(severity: str) -> str:
    # pytest-html sorts a column by the cell's inner HTML, so a hidden rank
    # makes critical sort before high, medium and low.
    rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (f'<td class="col-severity" data-severity="{escape(severity)}">'
            f"<span hidden>{rank}</span>{escape(severity)}</td>")


def waiver_text(raw: str) -> str:
    """Return one line for a waiver property: JSON from the waiver file, or plain text."""
    if not raw:
        return ""
    try:
        waiver = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(waiver, dict):
        return str(waiver)
    status = "waived" if waiver.get("status") == "valid" else f"waiver {waiver.get('status', '')}".strip()
    return (f"{status}: {waiver.get('justification', '')} "
            f"(approved by {waiver.get('approved_by', '?')}, expires {waiver.get('expires', '?')})")


def fix_text(fix: dict | None) -> str:
    return f"{fix['status']}" if fix else ""


def evidence_rows(props: dict) -> list[tuple[str, str]]:
    """Return the labelled lines of a row's details: rationale, evidence, waiver and fix."""
    evidence = json.loads(props.get("evidence") or "{}")
    fix = json.loads(props["fix"]) if props.get("fix") else None
    # Id, title, severity, step, node and verdict are the row's own cells.
    rows = [
        ("Rationale", props.get("rationale", "")),
        ("Message", props.get("message", "")),
    ]
    rows += [(f"Expected {key}", value) for key, value in evidence.get("expected", {}).items()]
    rows += [(f"Observed {key}", value) for key, value in evidence.get("observed", {}).items()]
    rows += [(f"Evidence {key}", value) for key, value in evidence.get("raw", {}).items()]
    rows += [("Warning", warning) for warning in evidence.get("warnings", [])]
    rows.append(("Waiver", waiver_text(props.get("waiver", ""))))
    if fix:
        rows.append(("Before the fix", fix.get("before", "")))
        rows.append(("Fix outcome", f"{fix['status']} {fix.get('reason', '')}".strip()))
        rows += [("Fix change", change) for change in fix.get("changes", [])]
        rows += [("Planned change", change) for change in fix.get("plan", [])]
    return [(label, _text(value)) for label, value in rows if value]


def evidence_block(props: dict) -> str:
    """Return the row's details as a div whose table the report script builds on expansion."""
    # pytest-html wraps every log line that starts with "E" in a span. json.dumps
    # escapes newlines, so the div stays on one line and is never split.
    pairs = json.dumps(evidence_rows(props), ensure_ascii=False, separators=(",", ":"))
    return f'<div class="mesh-evidence" data-rows="{escape(pairs, quote=True)}"></div>'


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
