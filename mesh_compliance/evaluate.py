"""Run one control, and with --fix its fixer and the control again."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mesh_compliance.changes import ChangeLog, GuardedConsul
from mesh_compliance.consul import ConsulClient
from mesh_compliance.controls import ControlSpec, Evidence
from mesh_compliance.errors import FixError, TargetError, Undecided
from mesh_compliance.fixing import FixContext, FixRefused
from mesh_compliance.log import logger
from mesh_compliance.redact import redact

VERDICTS = ("PASS", "WARN", "FAIL", "ERROR", "N/A", "FIXED", "FIX FAILED")


@dataclass
class Outcome:
    verdict: str
    message: str = ""
    evidence: dict = field(default_factory=dict)
    failure: AssertionError | None = None
    error: BaseException | None = None
    fix: dict | None = None

    @classmethod
    def undecided(cls, error: BaseException | None) -> "Outcome":
        text = redact(str(error)) if error is not None else "the control could not run"
        return cls("ERROR", text, error=error)


def evaluate_control(item: pytest.Item, spec: ControlSpec, run) -> Outcome:
    if run.fix and run.shared is not None:
        from remediations import FIXERS

        run.shared.wait_for_earlier(spec.id, list(FIXERS))
    target = item.funcargs.get("target")
    try:
        if target is not None:
            # A control that reads nothing from its node in some setups must not pass on a node that is down.
            target.check_reachable()
    except TargetError as exc:
        return Outcome.undecided(exc)

    outcome = _check(item)
    if outcome.verdict != "FAIL" or not run.fix:
        return outcome

    fixer = _fixer(spec.id)
    if fixer is None:
        outcome.fix = {"status": "none", "reason": "no fixer exists for this control; repair it by hand", "changes": []}
        return outcome

    blocked = _blocking_prerequisite(spec.id, run, target.name if target is not None else None)
    if blocked:
        outcome.fix = {"status": "not attempted", "reason": blocked, "changes": [], "before": outcome.message}
        return outcome
    if run.dry_run:
        return _plan(item, spec, run, fixer, outcome)
    return _fix_and_recheck(item, spec, run, fixer, outcome)


def _blocking_prerequisite(control_id: str, run, node: str | None) -> str:
    """Name a prerequisite control that failed in this run, so its dependant is not attempted.

    A node control depends on its prerequisites on the same node and on
    cluster controls; a cluster control depends on them on every node.
    """
    from remediations import PREREQUISITES

    for required in PREREQUISITES.get(control_id, ()):
        if run.shared is not None and run.shared.wait_for(required) is None:
            return f"prerequisite control {required} did not report within {run.shared.wait_seconds:.0f} s; repair it first"
        record = run.latest(required, node)
        if record is None:
            continue
        fix = record.get("fix") or {}
        if run.dry_run and fix.get("status") == "planned":
            continue
        if record["verdict"] in ("FAIL", "FIX FAILED", "ERROR"):
            return f"prerequisite control {required} is {record['verdict']}; repair it first"
    return ""


def _plan(item, spec: ControlSpec, run, fixer, before: Outcome) -> Outcome:
    """Run the fixer with every change recorded instead of made; the verdict stays FAIL."""
    context = _context(item, spec, run)
    fix = {"status": "planned", "reason": "", "changes": [], "before": before.message, "plan": []}
    try:
        fixer(context)
    except FixRefused as exc:
        fix.update(status="not applied", reason=redact(str(exc)))
    except (FixError, Undecided) as exc:
        fix["reason"] = f"the plan may be incomplete: {redact(str(exc))}"
    fix["changes"] = _changes(context)
    fix["plan"] = [redact(change.describe()) for change in context.log.planned]
    before.fix = fix
    return before


def _check(item: pytest.Item) -> Outcome:
    evidence: Evidence | None = item.funcargs.get("evidence")
    if evidence is not None:
        evidence.reset()

    try:
        item.obj(**{name: item.funcargs[name] for name in item._fixtureinfo.argnames})
    except AssertionError as exc:
        return Outcome("FAIL", redact(str(exc)), _evidence(evidence), failure=exc)
    except Undecided as exc:
        outcome = Outcome.undecided(exc)
        outcome.evidence = _evidence(evidence)
        return outcome
    except pytest.skip.Exception as exc:
        return Outcome("N/A", redact(str(exc.msg)), _evidence(evidence))

    data = _evidence(evidence)
    if data.get("warnings"):
        return Outcome("WARN", "; ".join(data["warnings"]), data)
    return Outcome("PASS", "", data)


def _fix_and_recheck(item, spec: ControlSpec, run, fixer, before: Outcome) -> Outcome:
    context = _context(item, spec, run)
    fix = {"status": "", "reason": "", "changes": [], "before": before.message}

    try:
        fixer(context)
    except FixRefused as exc:
        fix.update(status="not applied", reason=redact(str(exc)))
        before.fix = fix
        return before
    except (FixError, Undecided) as exc:
        logger.warning("fix of %s failed: %s", spec.id, redact(str(exc)))
        fix.update(status="failed", reason=redact(str(exc)), changes=_changes(context))
        return Outcome("FIX FAILED", f"{before.message}\nfix failed: {redact(str(exc))}",
                       before.evidence, failure=AssertionError(f"{before.message}\nfix failed: {redact(str(exc))}"), fix=fix)

    fix["changes"] = _changes(context)
    after = _check(item)
    after.fix = fix
    if after.verdict in ("PASS", "WARN"):
        fix["status"] = "fixed"
        after.verdict = "FIXED"
        return after
    if after.verdict == "ERROR":
        fix.update(status="unverified", reason="the control could not decide after the fix")
        return after

    fix.update(status="failed", reason="the control still fails after the fix")
    message = f"{after.message}\n(the fixer ran: {'; '.join(fix['changes']) or 'no change made'})"
    after.verdict = "FIX FAILED"
    after.message = message
    after.failure = AssertionError(message)
    return after


def _context(item: pytest.Item, spec: ControlSpec, run) -> FixContext:
    consul = item.funcargs.get("consul")
    if not isinstance(consul, ConsulClient):
        consul = ConsulClient(run.settings)
    target = item.funcargs.get("target")
    journal = run.journal(target.name, target.label or "local") if target is not None else run.journal("cluster")
    log = ChangeLog(spec.id, run.dry_run, journal,
                    own_accessor=run.consul_info.get("token_accessor", ""),
                    own_policy_ids=frozenset(run.consul_info.get("token_policy_ids", ())))
    return FixContext(
        site=run.site, consul=GuardedConsul(consul, log), target=target,
        allow=frozenset(item.config.option.mesh_allow), backup_dir=Path(item.config.option.mesh_backup_dir),
        run_id=run.run_id, log=log,
    )


def _fixer(control_id: str):
    from remediations import FIXERS

    reference = FIXERS.get(control_id)
    if reference is None:
        return None
    module_name, function_name = reference.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _changes(context: FixContext) -> list[str]:
    return [change.describe() for change in context.changes]


def _evidence(evidence: Evidence | None) -> dict:
    return evidence.as_dict() if evidence is not None else {}
