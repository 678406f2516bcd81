"""Run the compliance suite against a lab as a user would, and read its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 300


@dataclass
class SuiteRun:
    code: int
    output: str
    document: dict

    @property
    def verdicts(self) -> dict[str, str]:
        return {record["control"]: record["verdict"] for record in self.document.get("results", [])}

    def record(self, control_id: str) -> dict:
        matches = [record for record in self.document["results"] if record["control"] == control_id]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} records for {control_id}; output:\n{self.output[-3000:]}")
        return matches[0]

    def verdict(self, control_id: str) -> str:
        return self.record(control_id)["verdict"]

    def message(self, control_id: str) -> str:
        return self.record(control_id)["message"]


def run_suite(lab, work_dir: Path, *args: str, token_file: str | None = None, env: dict | None = None) -> SuiteRun:
    """Run ``pytest checks`` in a subprocess against ``lab``; return its exit code and results."""
    work_dir.mkdir(parents=True, exist_ok=True)
    results = work_dir / f"results-{len(list(work_dir.glob('results-*.json')))}.json"
    lab_args = [arg for arg in lab.pytest_args if not (token_file and arg.startswith("--consul-token-file="))]
    if token_file:
        lab_args.append(f"--consul-token-file={token_file}")

    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={CHECKOUT}",
        *lab_args, f"--results-json={results}", f"--backup-dir={work_dir / 'backups'}",
        "-o", "console_output_style=classic", *args, str(CHECKOUT / "checks"),
    ]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONSUL_")}
    environment.update(env or {})
    completed = subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=environment)

    output = completed.stdout + completed.stderr
    document = json.loads(results.read_text()) if results.exists() else {}
    return SuiteRun(completed.returncode, output, document)
