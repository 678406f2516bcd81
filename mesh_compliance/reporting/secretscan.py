"""Scan every artifact of a run for the secrets the run registered.

Redaction masks each registered secret on the way into a message, a log line
or a report. This scan is the check behind it: after the run has written its
files, it reads each one and looks for every registered secret, as written
and in the escaped forms JSON, HTML and XML give it. A finding names the
artifact and the kind of secret, never the secret.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh_compliance.redact import redact, secret_kinds

EXTRA_ARTIFACTS_KEY = pytest.StashKey[list]()


@dataclass(frozen=True)
class Artifact:
    label: str
    path: Path


@dataclass(frozen=True)
class Leak:
    artifact: Artifact
    kind: str
    unreadable: str = ""

    def describe(self) -> str:
        where = f"{self.artifact.label} {redact(str(self.artifact.path))}"
        if self.unreadable:
            return f"secret scan: {where} could not be read ({self.unreadable}), so it may hold a secret"
        return f"secret scan: {where} contains a {self.kind}"


def add_artifact(config: pytest.Config, label: str, path: str | os.PathLike) -> None:
    """Have the scan also read ``path``, a file another part of the suite writes in this run."""
    config.stash.setdefault(EXTRA_ARTIFACTS_KEY, []).append(Artifact(label, Path(path)))


def _resolve(config: pytest.Config, value: str | os.PathLike | None) -> Path | None:
    if not value:
        return None
    path = Path(os.path.expandvars(str(value))).expanduser()
    return path if path.is_absolute() else Path(config.invocation_params.dir, path)


def _log_file(config: pytest.Config) -> Path | None:
    """Return the file pytest's --log-file handler writes, as the handler opened it."""
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    handler = getattr(logging_plugin, "log_file_handler", None)
    name = getattr(handler, "baseFilename", None)
    if not name or name == os.devnull:
        return None
    return Path(name)


def artifacts(config: pytest.Config, run) -> list[Artifact]:
    """Return every file this run writes that can carry text from the run."""
    candidates = [
        ("HTML report", _resolve(config, getattr(config.option, "htmlpath", None))),
        ("JSON results", _resolve(config, run.results_path)),
        ("JUnit XML", _resolve(config, getattr(config.option, "xmlpath", None))),
        ("ledger", _resolve(config, getattr(config.option, "mesh_ledger", None))),
        ("change journal", _resolve(config, Path(run.journal_dir) / f"{run.run_id}.jsonl")),
        ("log file", _log_file(config)),
    ]
    found = [Artifact(label, path) for label, path in candidates if path is not None]
    return found + list(config.stash.get(EXTRA_ARTIFACTS_KEY, []))


def written_forms(secret: str) -> set[bytes]:
    """Return the byte strings a secret becomes when written as text, JSON, HTML or XML."""
    as_json = json.dumps(secret)[1:-1]
    texts = {secret, as_json, html.escape(secret), html.escape(as_json), html.escape(secret, quote=False)}
    return {text.encode("utf-8") for text in texts}


def scan_file(artifact: Artifact, secrets: dict[str, str]) -> list[Leak]:
    """Return one finding per kind of secret found in one artifact."""
    try:
        data = artifact.path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        # Not written in this run, for example the journal of a run without --fix.
        return []
    except OSError as exc:
        return [Leak(artifact, "", unreadable=exc.strerror or type(exc).__name__)]

    kinds = sorted({kind for secret, kind in secrets.items() if any(form in data for form in written_forms(secret))})
    return [Leak(artifact, kind) for kind in kinds]


def scan(found: list[Artifact]) -> list[Leak]:
    """Scan each artifact for every secret registered so far."""
    secrets = secret_kinds()
    leaks: list[Leak] = []
    for artifact in found:
        leaks.extend(scan_file(artifact, secrets))
    return leaks
