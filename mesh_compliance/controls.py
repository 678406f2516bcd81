"""Control metadata, the control registry and the evidence recorder.

A control is a pytest test function decorated with ``@control``. Its id is
the one name used everywhere: the test, its fixer, the report row and the
JSON record. Metadata lives only here, in the decorator call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from mesh_compliance.redact import redact

SEVERITIES = ("low", "medium", "high", "critical")

CONTROLS: dict[str, "ControlSpec"] = {}


@dataclass(frozen=True)
class ControlSpec:
    id: str
    title: str
    severity: str
    rationale: str
    step: str
    scope: str            # "cluster" (Consul, database) or "node" (files, units, packages)
    profiles: tuple[str, ...] = ("deployed",)
    roles: tuple[str, ...] = ("gateway",)


PROFILES = ("deployed", "decommissioned")


def control(control_id: str, *, title: str, severity: str, rationale: str, step: str, scope: str,
            profiles: tuple[str, ...] = ("deployed",), roles: tuple[str, ...] = ("gateway",)) -> Callable:
    """Register a test function as the control ``control_id``.

    ``profiles`` names the end states the control belongs to: the deployed
    setup, or its decommissioned removal. ``roles`` names the nodes a node
    control runs on (``*``: every node).
    """
    if severity not in SEVERITIES:
        raise ValueError(f"control {control_id}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if not set(profiles) <= set(PROFILES):
        raise ValueError(f"control {control_id}: unknown profile in {profiles}; known: {', '.join(PROFILES)}")
    if control_id in CONTROLS:
        raise ValueError(f"control id {control_id} is defined twice")

    spec = ControlSpec(control_id, title, severity, rationale, step, scope, tuple(profiles), tuple(roles))
    CONTROLS[control_id] = spec

    def decorate(func: Callable) -> Callable:
        func.control_spec = spec
        return pytest.mark.control(control_id)(func)

    return decorate


def spec_of(item: pytest.Item) -> ControlSpec | None:
    return getattr(getattr(item, "obj", None), "control_spec", None)


@dataclass
class Evidence:
    """Record of what a control expected and observed, for the failure message and the report.

    Every value passes through secret redaction when it is recorded, so a
    registered secret that a control records is masked.
    """

    expected: dict[str, str] = field(default_factory=dict)
    observed: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def expect(self, label: str, value: Any) -> None:
        self.expected[label] = _text(value)

    def observe(self, label: str, value: Any) -> None:
        self.observed[label] = _text(value)

    def record(self, label: str, value: Any) -> None:
        """Keep raw evidence (an HTTP response, a command's output)."""
        self.raw[label] = _text(value)[:4000]

    def not_applicable(self, reason: str) -> None:
        """Stop the control with verdict N/A: the fact cannot apply to this target."""
        pytest.skip(f"not applicable: {redact(reason)}")

    def warn(self, message: str) -> None:
        """Mark the control compliant but risky (WARN) with the reason."""
        self.warnings.append(redact(message))

    def why(self, summary: str) -> str:
        """Return a failure message with every expected and observed value."""
        lines = [redact(summary)]
        for label, value in self.expected.items():
            lines.append(f"  expected {label}: {value}")
        for label, value in self.observed.items():
            lines.append(f"  observed {label}: {value}")
        for label, value in self.raw.items():
            lines.append(f"  evidence {label}: {value}")
        return "\n".join(lines)

    def reset(self) -> None:
        self.expected.clear()
        self.observed.clear()
        self.raw.clear()
        self.warnings.clear()

    def as_dict(self) -> dict[str, Any]:
        return {"expected": dict(self.expected), "observed": dict(self.observed),
                "raw": dict(self.raw), "warnings": list(self.warnings)}


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        text = ", ".join(value) if value else "none"
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return redact(text)
