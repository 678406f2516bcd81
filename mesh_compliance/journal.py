"""The change journal: one JSON line per change a fixing run made.

Each entry names the run, the time, the target, the control, the object and
its state before and after the change. Secrets appear only as digests. Every
line is flushed to disk before the change it describes is reported, so a run
that dies half-way still leaves the trail of what it did. ``--rollback RUN_ID``
reads the journal back (see mesh_compliance.rollback).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mesh_compliance.redact import known_secrets, redact

JOURNAL_SCHEMA_VERSION = 2


def digest(value: str | bytes) -> str:
    """Return a short SHA-256 digest that identifies a secret without revealing it."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


def scrub(value):
    """Replace every registered secret inside ``value`` by its digest."""
    if isinstance(value, str):
        for secret in sorted(known_secrets(), key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, digest(secret))
        return value
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    return value


@dataclass
class Journal:
    directory: Path
    run_id: str
    target: str
    # The node's name in the run's node list, which --rollback resolves to its connection.
    node: str = "local"

    @property
    def path(self) -> Path:
        return self.directory / f"{self.run_id}.jsonl"

    def record(self, *, control: str, kind: str, obj: str, action: str,
               before=None, after=None, backup: str | None = None, undo: dict | None = None) -> dict:
        """Append one entry; ``undo`` describes how rollback restores the previous state."""
        entry = {
            "schema_version": JOURNAL_SCHEMA_VERSION,
            "run_id": self.run_id,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "target": self.target,
            "node": self.node,
            "control": control,
            "kind": kind,
            "object": obj,
            "action": action,
            "before": scrub(before),
            "after": scrub(after),
            "backup": backup,
            "undo": scrub(undo),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        line = redact(json.dumps(entry, sort_keys=True)) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return entry


def read_journal(directory: Path, run_id: str) -> list[dict]:
    path = directory / f"{run_id}.jsonl"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.jsonl")) if directory.exists() else []
        hint = f"; journals present: {', '.join(known[-5:])}" if known else "; no journal exists yet"
        raise FileNotFoundError(f"no journal for run {run_id} in {directory.absolute()}{hint}; "
                                "give the fixing run's directory with --journal-dir")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
