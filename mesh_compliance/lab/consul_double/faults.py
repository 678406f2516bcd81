"""Fault injection for matching requests: a 500, a stall past the client timeout, or a dropped connection."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

MODES = ("status500", "stall", "drop")
MAX_STALL_SECONDS = 600.0
INJECTED_FAULT_MESSAGE = "injected fault"


@dataclass
class FaultRule:
    """Fault for the next `remaining` requests whose path starts with path_prefix."""

    path_prefix: str
    method: str | None
    mode: str
    remaining: int
    stall_seconds: float

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (self.method is None or self.method == method)


def parse_rule(spec: Any) -> FaultRule:
    """Build a rule from a control API body; raise ValueError naming the invalid field."""
    if not isinstance(spec, dict):
        raise ValueError("fault must be a JSON object")
    path_prefix = spec.get("path_prefix")
    if not isinstance(path_prefix, str) or not path_prefix.startswith("/"):
        raise ValueError('path_prefix must be a path starting with "/"')
    mode = spec.get("mode")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    method = spec.get("method")
    if method is not None and not isinstance(method, str):
        raise ValueError("method must be a string such as PUT")
    count = spec.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    stall_seconds = spec.get("stall_seconds", 0 if mode != "stall" else 5)
    if not isinstance(stall_seconds, (int, float)) or not 0 <= stall_seconds <= MAX_STALL_SECONDS:
        raise ValueError(f"stall_seconds must be a number from 0 to {MAX_STALL_SECONDS:g}")
    return FaultRule(path_prefix, method.upper() if method else None, mode, count, float(stall_seconds))


class FaultInjector:
    """Thread-safe list of fault rules, consumed in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        """Return the first rule matching the request and use up one of its occurrences."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]
