"""A subset of go-bexpr for the ?filter= query parameter.

Supported: `Selector == value` and `Selector != value`, joined with `and`. A selector
is a field name followed by `.Field` or `["key"]` parts, e.g. `NodeMeta["external-node"]`
or `Service.Service`. A value is a quoted string, an integer, true or false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

_CLAUSE = re.compile(
    r"""^\s*(?P<selector>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\["[^"]*"\])*)\s*
        (?P<operator>==|!=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|-?\d+|true|false)\s*$""",
    re.VERBOSE,
)
_SELECTOR_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\["([^"]*)"\]')
_MISSING = object()


@dataclass(frozen=True)
class Clause:
    """One comparison of a selected field with a literal."""

    path: tuple[str, ...]
    equal: bool
    value: Any


def parse_filter(expression: str) -> list[Clause]:
    """Parse a filter expression, raising 400 like Consul does for an invalid expression."""
    clauses = []
    for text in re.split(r"\s+and\s+", expression.strip()):
        match = _CLAUSE.match(text)
        if match is None:
            # NOTE: only ==, != and "and" are supported; real Consul also accepts
            # "or", "not", "in", "contains", "matches" and brackets.
            raise ApiError(400, f"Failed to create boolean expression evaluator: unsupported filter {text!r}")
        clauses.append(Clause(_parse_selector(match["selector"]), match["operator"] == "==", _literal(match["value"])))
    return clauses


def _parse_selector(selector: str) -> tuple[str, ...]:
    return tuple(part[0] or part[1] for part in _SELECTOR_PART.findall(selector))


def _literal(text: str) -> Any:
    if text.startswith('"'):
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    if text in ("true", "false"):
        return text == "true"
    return int(text)


def _select(item: Any, path: tuple[str, ...]) -> Any:
    current = item
    for part in path:
        if not isinstance(current, dict):
            return _MISSING
        current = current.get(part, _MISSING)
    return current


def _clause_matches(item: Any, clause: Clause) -> bool:
    selected = _select(item, clause.path)
    if isinstance(clause.value, str) and not isinstance(selected, str) and selected is not _MISSING:
        selected = str(selected)
    return (selected == clause.value) == clause.equal


def apply_filter(items: list[Any], expression: str | None) -> list[Any]:
    """Return the items matching expression; no expression keeps every item."""
    if not expression:
        return items
    clauses = parse_filter(expression)
    return [item for item in items if all(_clause_matches(item, clause) for clause in clauses)]
