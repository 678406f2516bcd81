"""Monitoring outputs: a Prometheus textfile-collector file and a Nagios line.

The textfile is written for node_exporter's textfile collector, which reads
every ``*.prom`` file in its directory: it is written to a hidden temporary
file in the same directory and renamed, so the collector never reads half a
file. The Nagios line and exit code follow the plugin guidelines: 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN, with performance data after ``|``.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

from mesh_compliance.redact import redact

METRIC = "carbonio_mesh_compliance"
VERDICTS = ("PASS", "WARN", "N/A", "FIXED", "WAIVED", "FAIL", "FIX FAILED", "ERROR")

EXIT_NEW_DRIFT = 12
EXIT_SECRET_LEAKED = 15

NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3
NAGIOS_STATES = {NAGIOS_OK: "OK", NAGIOS_WARNING: "WARNING", NAGIOS_CRITICAL: "CRITICAL", NAGIOS_UNKNOWN: "UNKNOWN"}

# Suite exit codes whose meaning the verdict counts already carry.
VERDICT_EXIT_CODES = (0, 10, 11)

# pytest's own exit codes, named in the Nagios line.
PYTEST_EXIT_CODES = {1: "tests failed", 2: "interrupted", 3: "internal error", 4: "usage error",
                     5: "no control collected"}


def escape_label(value: str) -> str:
    """Escape a label value as the exposition format requires: backslash, quote, newline."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series(name: str, labels: dict[str, str], value) -> str:
    if not labels:
        return f"{name} {value}"
    text = ",".join(f'{key}="{escape_label(redact(str(label)))}"' for key, label in labels.items())
    return f"{name}{{{text}}} {value}"


def latest_verdicts(records: list[dict]) -> dict[tuple[str, str], str]:
    """Return the verdict of each control and node; a later record replaces an earlier one."""
    return {(record["control"], record["node"]): record["verdict"] for record in records}


def render_textfile(records: list[dict], exit_code: int, timestamp: float) -> str:
    """Return the metrics of one run in the Prometheus text exposition format."""
    verdicts = latest_verdicts(records)
    counts = Counter(verdicts.values())
    lines = [
        f"# HELP {METRIC}_control_verdict 1 for the verdict a control gave on a node in the last run, 0 for the others.",
        f"# TYPE {METRIC}_control_verdict gauge",
    ]
    for (control, node), current in sorted(verdicts.items()):
        for verdict in VERDICTS:
            labels = {"control": control, "node": node, "verdict": verdict}
            lines.append(_series(f"{METRIC}_control_verdict", labels, int(verdict == current)))

    lines += [
        f"# HELP {METRIC}_controls Number of control and node pairs with each verdict in the last run.",
        f"# TYPE {METRIC}_controls gauge",
    ]
    lines += [_series(f"{METRIC}_controls", {"verdict": verdict}, counts[verdict]) for verdict in VERDICTS]

    lines += [
        f"# HELP {METRIC}_exit_code Exit code of the last run (0 compliant, 10 non-compliant, 11 undecided, 12 new drift, 15 secret leaked).",
        f"# TYPE {METRIC}_exit_code gauge",
        _series(f"{METRIC}_exit_code", {}, exit_code),
        f"# HELP {METRIC}_last_run_timestamp_seconds Unix time at which the last run finished.",
        f"# TYPE {METRIC}_last_run_timestamp_seconds gauge",
        _series(f"{METRIC}_last_run_timestamp_seconds", {}, f"{timestamp:.3f}"),
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, sync it and rename it over ``path``.

    The temporary name starts with a dot and does not end in ``.prom``, so the
    textfile collector skips it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def nagios_counts(records: list[dict]) -> dict[str, int]:
    """Return the performance data: FIXED counts as pass, FIX FAILED as fail."""
    counts = Counter(latest_verdicts(records).values())
    return {
        "pass": counts["PASS"] + counts["FIXED"],
        "warn": counts["WARN"],
        "waived": counts["WAIVED"],
        "fail": counts["FAIL"] + counts["FIX FAILED"],
        "error": counts["ERROR"],
    }


def nagios_state(records: list[dict], exit_code: int) -> tuple[int, str]:
    """Return the Nagios state of a run and the reason, when the counts do not say it."""
    counts = nagios_counts(records)
    if exit_code == EXIT_SECRET_LEAKED:
        return NAGIOS_CRITICAL, "a secret leaked into an artifact"
    if counts["error"]:
        return NAGIOS_UNKNOWN, ""
    if counts["fail"]:
        return NAGIOS_CRITICAL, ""
    if exit_code == EXIT_NEW_DRIFT:
        return NAGIOS_WARNING, "new drift against the baseline"
    if exit_code not in VERDICT_EXIT_CODES:
        meaning = PYTEST_EXIT_CODES.get(exit_code, "unexpected")
        return NAGIOS_UNKNOWN, f"the suite exited with code {exit_code} ({meaning})"
    if not records:
        return NAGIOS_UNKNOWN, "no control ran"
    if counts["warn"]:
        return NAGIOS_WARNING, ""
    return NAGIOS_OK, ""


def nagios_line(records: list[dict], exit_code: int) -> tuple[int, str]:
    """Return the Nagios exit code and the one status line with performance data."""
    state, reason = nagios_state(records, exit_code)
    verdicts = Counter(latest_verdicts(records).values())
    summary = ", ".join(f"{verdicts[v]} {v}" for v in VERDICTS if verdicts[v]) or "no verdicts"
    if reason:
        summary = f"{reason}; {summary}"
    perfdata = " ".join(f"{label}={count};;;;" for label, count in nagios_counts(records).items())
    return state, f"CARBONIO MESH COMPLIANCE {NAGIOS_STATES[state]} - {summary} | {perfdata}"
