"""Waivers: accepted failures with a justification, an approver and an expiry date.

``--waivers=PATH`` reads a TOML file of ``[[waiver]]`` tables. A FAIL or FIX
FAILED of a waived control becomes WAIVED, reported to pytest as an expected
failure (xfail) with the justification as its reason, and does not count
toward exit code 10. A waiver is valid through the end of its ``expires`` day
in UTC. After that the control stays FAIL, and its message gives the expiry date.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh_compliance.results import PREFIX, properties

WAIVABLE = ("FAIL", "FIX FAILED")
REQUIRED = ("control", "justification", "approved_by", "expires")
KNOWN_KEYS = frozenset(REQUIRED + ("node",))

WAIVERS_KEY = pytest.StashKey[list]()


class WaiverFileError(ValueError):
    """The waiver file is missing, not TOML, or has an invalid entry."""


@dataclass(frozen=True)
class Waiver:
    control: str
    node: str | None
    justification: str
    approved_by: str
    expires: dt.date
    entry: int

    def matches(self, control_id: str, node: str) -> bool:
        return self.control == control_id and (self.node is None or self.node == node)

    def valid_at(self, now: dt.datetime) -> bool:
        """Return whether the waiver is valid at ``now``, which it is through the end of its expiry day in UTC."""
        return now.astimezone(dt.timezone.utc).date() <= self.expires

    def as_dict(self, status: str) -> dict:
        return {
            "status": status,
            "control": self.control,
            "node": self.node,
            "justification": self.justification,
            "approved_by": self.approved_by,
            "expires": self.expires.isoformat(),
        }


def load_waivers(path: str) -> list[Waiver]:
    """Parse the waiver file; raise WaiverFileError naming the file and the entry."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise WaiverFileError(f"waiver file {path} cannot be read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WaiverFileError(f"waiver file {path} is not valid TOML: {exc}") from exc

    extra = sorted(set(document) - {"waiver"})
    if extra:
        raise WaiverFileError(f"waiver file {path}: unknown top-level key {extra[0]!r}; use [[waiver]] tables")
    entries = document.get("waiver", [])
    if not isinstance(entries, list):
        raise WaiverFileError(f"waiver file {path}: 'waiver' must be an array of tables, written [[waiver]]")
    return [_parse_entry(path, number, entry) for number, entry in enumerate(entries, start=1)]


def _parse_entry(path: str, number: int, entry: dict) -> Waiver:
    where = f"waiver file {path}, entry {number}"
    if isinstance(entry, dict) and isinstance(entry.get("control"), str):
        where += f" (control {entry['control']})"
    if not isinstance(entry, dict):
        raise WaiverFileError(f"{where}: must be a [[waiver]] table")

    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise WaiverFileError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(KNOWN_KEYS))}")
    for key in REQUIRED:
        if key not in entry:
            raise WaiverFileError(f"{where}: missing required key {key!r}")
    for key in ("control", "justification", "approved_by", "node"):
        if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
            raise WaiverFileError(f"{where}: {key!r} must be a non-empty string")

    return Waiver(
        control=entry["control"],
        node=entry.get("node"),
        justification=entry["justification"].strip(),
        approved_by=entry["approved_by"].strip(),
        expires=_expiry_date(where, entry["expires"]),
        entry=number,
    )


def _expiry_date(where: str, value) -> dt.date:
    # TOML has a date type (expires = 2026-12-31); a quoted "2026-12-31" is accepted too.
    if isinstance(value, dt.datetime):
        raise WaiverFileError(f"{where}: 'expires' must be a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise WaiverFileError(f"{where}: 'expires' must be a date written YYYY-MM-DD, got {value!r}")


def check_control_ids(path: str, waivers: list[Waiver], known: set[str]) -> None:
    """Reject a waiver whose control id no control has."""
    for waiver in waivers:
        if waiver.control not in known:
            raise pytest.UsageError(f"waiver file {path}, entry {waiver.entry}: unknown control id {waiver.control!r}; "
                                    f"known ids: {', '.join(sorted(known))}")


def find_waiver(waivers: list[Waiver], control_id: str, node: str, now: dt.datetime) -> tuple[Waiver, bool] | None:
    """Return the waiver for a control and node and whether it is still valid; a valid one wins."""
    matching = [waiver for waiver in waivers if waiver.matches(control_id, node)]
    if not matching:
        return None
    valid = [waiver for waiver in matching if waiver.valid_at(now)]
    if valid:
        return max(valid, key=lambda waiver: waiver.expires), True
    return max(matching, key=lambda waiver: waiver.expires), False


def waive_report(report, waiver: Waiver) -> None:
    """Turn a failed call report into an expected failure with verdict WAIVED."""
    report.outcome = "skipped"
    report.wasxfail = f"waived: {waiver.justification}"
    _set_property(report, "verdict", "WAIVED")
    _set_property(report, "waiver", json.dumps(waiver.as_dict("valid"), sort_keys=True))


def mark_expired(report, waiver: Waiver) -> None:
    """Keep the control FAIL and add the waiver's expiry date to its message."""
    props = properties(report)
    note = (f"waiver expired on {waiver.expires.isoformat()} "
            f"(approved by {waiver.approved_by}: {waiver.justification})")
    message = props.get("message", "")
    _set_property(report, "message", f"{message}\n{note}" if message else note)
    _set_property(report, "waiver", json.dumps(waiver.as_dict("expired"), sort_keys=True))


def _set_property(report, key: str, value: str) -> None:
    name = PREFIX + key
    report.user_properties = [(k, v) for k, v in report.user_properties if k != name]
    report.user_properties.append((name, value))


def summary_lines(records: list[dict]) -> list[str]:
    """Return one line per waived or expired-waiver record for the terminal summary."""
    lines = []
    for record in records:
        waiver = record.get("waiver")
        if not waiver:
            continue
        state = "waived" if waiver["status"] == "valid" else "waiver expired"
        lines.append(f"{state:<14} {record['control']:<28} node {record['node']}: {waiver['justification']} "
                     f"(approved by {waiver['approved_by']}, expires {waiver['expires']})")
    return lines


class WaiverPlugin:
    """pytest hooks that apply the waivers of ``--waivers`` to each control's report."""

    def __init__(self, path: str, waivers: list[Waiver]):
        self.path = path
        self.waivers = waivers

    @classmethod
    def from_config(cls, config) -> "WaiverPlugin":
        path = config.option.mesh_waivers
        if not path:
            return cls("", [])
        try:
            return cls(path, load_waivers(path))
        except WaiverFileError as exc:
            raise pytest.UsageError(str(exc)) from exc

    def pytest_collection_modifyitems(self, config):
        from mesh_compliance.controls import CONTROLS

        check_control_ids(self.path, self.waivers, set(CONTROLS))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        props = properties(report)
        if report.when != "call" or props.get("verdict") not in WAIVABLE:
            return report

        found = find_waiver(self.waivers, props["control"], props["node"], dt.datetime.now(dt.timezone.utc))
        if found is not None:
            waiver, valid = found
            if valid:
                waive_report(report, waiver)
            else:
                mark_expired(report, waiver)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config):
        if properties(report).get("verdict") == "WAIVED":
            return "xfailed", "x", "WAIVED"
        return None

    def pytest_terminal_summary(self, terminalreporter, config):
        from mesh_compliance.plugin import RUN_KEY

        run = config.stash.get(RUN_KEY, None)
        lines = summary_lines(run.records) if run is not None else []
        if lines:
            terminalreporter.write_sep("=", "waivers")
            for line in lines:
                terminalreporter.write_line(line)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report, data):
        waiver = properties(report).get("waiver")
        if waiver:
            data.append(html_table(json.loads(waiver)))


def html_table(waiver: dict) -> str:
    from html import escape

    state = "valid" if waiver["status"] == "valid" else f"expired on {waiver['expires']}"
    rows = [("Waiver", state), ("Justification", waiver["justification"]),
            ("Approved by", waiver["approved_by"]), ("Expires", waiver["expires"]),
            ("Waived node", waiver["node"] or "every node")]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="mesh-waiver">{body}</table>'
