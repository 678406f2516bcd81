"""Verdicts shared between the pytest-xdist workers of one fixing run.

With ``-n`` a control's prerequisites, and the fixers that run before it,
may run in another worker. Each worker appends the verdict of every control
it ran to its own file in a directory the controller creates. Before a
control is checked, its worker reads every file and waits until each control
before it in fixing order has reported, so the control finds the same state
as in a serial run. Instances of one control on different nodes still run
in parallel.

Fixers are sorted so that every prerequisite comes earlier, and the
``load`` and ``worksteal`` schedulers of pytest-xdist 3.8 hand each worker
its tests in that order. A worker therefore waits only for a test of lower
rank, which some worker runs before any test of higher rank, so the wait
ends. A worker that still waits after WAIT_SECONDS does not attempt the fixer.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from mesh_compliance.log import logger

# Schedulers that keep each worker's tests in collection order (see above).
ORDERED_DIST_MODES = ("load", "worksteal")
POLL_SECONDS = 0.2
WAIT_SECONDS = 900


def create_directory() -> str:
    """Create the run's shared directory; mkdtemp gives it mode 0700."""
    return tempfile.mkdtemp(prefix="mesh-compliance-shared-")


class SharedResults:
    """One worker's view of the verdicts that every worker of the run has written."""

    def __init__(self, directory: str, worker_id: str, wait_seconds: float = WAIT_SECONDS):
        self.directory = Path(directory)
        self.path = self.directory / f"{worker_id}.jsonl"
        self.wait_seconds = wait_seconds
        # How many tests of each control this run has; every worker collects the same tests.
        self.scheduled: Counter = Counter()

    def add(self, record: dict) -> None:
        line = json.dumps({key: record[key] for key in ("control", "node", "verdict", "fix")}) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def wait_for(self, control_id: str) -> list[dict] | None:
        """Return every record of ``control_id``, once each of its scheduled tests has reported.

        Return None when they have not all reported within the wait.
        """
        return self._wait_until([control_id])

    def wait_for_earlier(self, control_id: str, order: list[str]) -> None:
        """Wait until every control before ``control_id`` in fixing ``order`` has reported.

        A serial run checks each control after the fixers before it ran, and
        some controls pass only through another control's fix, so a worker
        checks a control only once those fixers are done.
        """
        rank = order.index(control_id) if control_id in order else len(order)
        self._wait_until([earlier for earlier in order[:rank] if self.scheduled[earlier]])

    def _wait_until(self, control_ids: list[str]) -> list[dict] | None:
        """Return the records of ``control_ids`` once every scheduled test of each has reported, else None."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            found = [record for record in self.records() if record["control"] in control_ids]
            missing = {control_id: self.scheduled[control_id] - sum(record["control"] == control_id for record in found)
                       for control_id in control_ids}
            if all(count <= 0 for count in missing.values()):
                return found
            if time.monotonic() >= deadline:
                waiting = {control_id: count for control_id, count in missing.items() if count > 0}
                logger.warning("results still missing after %.0f s: %s", self.wait_seconds, waiting)
                return None
            time.sleep(POLL_SECONDS)

    def records(self) -> list[dict]:
        """Return the records every worker has written so far."""
        records = []
        for path in sorted(self.directory.glob("*.jsonl")):
            # The text after the last newline is a line still being written.
            complete = path.read_text(encoding="utf-8").split("\n")[:-1]
            records.extend(json.loads(line) for line in complete if line)
        return records
