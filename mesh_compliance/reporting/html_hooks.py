"""pytest-html hooks: the auditor's summary, control columns, verdict filter and evidence per row."""

from __future__ import annotations

import datetime as dt
import json
from html import escape

from mesh_compliance.log import logger
from mesh_compliance.reporting import html_parts
from mesh_compliance.results import properties, scrub_metadata

# The run whose report is being written; set when the plugin registers this module.
RUN: list = [None]


def pytest_html_report_title(report):
    report.title = "Carbonio Mesh compliance report"


def pytest_sessionstart(session):
    """Add the targets, start time and the Consul agent's version to the environment table."""
    config = session.config
    run = RUN[0]
    if run is None or hasattr(config, "workerinput") or not config.getoption("htmlpath", None):
        return
    metadata = _metadata(config)
    if metadata is None:
        return

    metadata["Targets"] = "; ".join(_describe_node(node, run.root) for node in run.nodes) or "local host"
    metadata["Started"] = run.started
    agent = _read_agent(run)
    run.consul_info.update(agent)
    metadata["Consul version"] = agent["consul_version"]
    metadata["Consul datacenter"] = agent["consul_datacenter"]
    scrub_metadata(metadata)


def pytest_sessionfinish(session):
    # pytest-html writes the report in its own trylast hook, after this one.
    metadata = _metadata(session.config)
    if RUN[0] is not None and metadata is not None and "Started" in metadata:
        metadata["Finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def pytest_html_results_summary(prefix, summary, postfix):
    run = RUN[0]
    if run is None:
        return
    counts = ", ".join(f"{count} {verdict}" for verdict, count in sorted(run.counts().items()))
    if run.dry_run:
        mode = "dry run: fixes planned, nothing changed"
    elif run.fix:
        mode = "fix run"
    else:
        mode = "audit only"
    prefix.append(html_parts.assets())
    prefix.append(f"<p><strong>Compliance verdicts:</strong> {escape(counts or 'none yet')} "
                  f"({escape(mode)}, profile {escape(run.profile)}, run {escape(run.run_id)})</p>")
    prefix.append(html_parts.severity_table(run.records))
    prefix.append(html_parts.verdict_filter(run.records))


def pytest_html_results_table_header(cells):
    cells.insert(1, '<th class="sortable" data-column-type="control">Control</th>')
    cells.insert(2, "<th>Title</th>")
    cells.insert(3, '<th class="sortable" data-column-type="severity">Severity</th>')
    cells.insert(4, "<th>Step</th>")
    cells.insert(5, '<th class="sortable" data-column-type="node">Node</th>')
    cells.insert(6, '<th class="sortable" data-column-type="verdict">Verdict</th>')
    cells.insert(7, "<th>Fix</th>")
    cells.insert(8, "<th>Waiver</th>")


def pytest_html_results_table_row(report, cells):
    props = properties(report)
    fix = json.loads(props["fix"]) if props.get("fix") else None
    verdict = props.get("verdict", "")
    cells.insert(1, f'<td class="col-control">{escape(props.get("control", ""))}</td>')
    cells.insert(2, f'<td class="col-title">{escape(props.get("title", ""))}</td>')
    cells.insert(3, html_parts.severity_cell(props.get("severity", "")))
    cells.insert(4, f'<td class="col-step">{escape(props.get("step", ""))}</td>')
    cells.insert(5, f'<td class="col-node">{escape(props.get("node", ""))}</td>')
    cells.insert(6, f'<td class="col-verdict" data-verdict="{escape(verdict)}">{escape(verdict)}</td>')
    cells.insert(7, f'<td class="col-fix">{escape(html_parts.fix_text(fix))}</td>')
    cells.insert(8, f'<td class="col-waiver">{escape(html_parts.waiver_text(props.get("waiver", "")))}</td>')
    # An ERROR is reported on the setup phase; the row is still the control.
    for index, cell in enumerate(cells):
        if 'class="col-testId"' in cell:
            cells[index] = cell.replace("::setup</td>", "</td>")


def pytest_html_results_table_html(report, data):
    props = properties(report)
    if not props:
        return
    data.insert(0, html_parts.evidence_block(props))


def _metadata(config) -> dict | None:
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:
        return None
    return config.stash.get(metadata_key, None)


def _read_agent(run) -> dict:
    """Read /v1/agent/self once with the audit token; a failure is stated, never raised."""
    from mesh_compliance.consul import ConsulClient
    from mesh_compliance.errors import Undecided

    try:
        config = (ConsulClient(run.settings).agent_self() or {}).get("Config") or {}
    except Undecided as exc:
        logger.debug("agent/self for the report failed: %s", exc)
        reason = f"not read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return {"consul_version": reason, "consul_datacenter": reason}
    return {"consul_version": str(config.get("Version", "not reported")),
            "consul_datacenter": str(config.get("Datacenter", "not reported"))}


def _describe_node(node, default_root: str | None) -> str:
    """Describe a node for the environment table: name, roles, connection and root."""
    root = node.root_for(default_root)
    text = f"{node.name} ({', '.join(node.roles)}) {node.connection}"
    return f"{text} root {root}" if root else text
