"""Consul ACL rules compared by meaning.

Consul stores a policy's ``Rules`` text verbatim, in HCL or JSON. This module
parses either syntax (HCL v1, which also reads JSON, as Consul does) into
rules and answers the questions the controls ask: does a rule set grant a
permission, and does another rule set grant more than it.

Resolution follows Consul: an exact rule beats any prefix rule, and among
prefix rules the longest matching prefix wins. Levels order as
deny < read < write; ``list`` applies to keys and ranks between read and write.
"""

from __future__ import annotations

from dataclasses import dataclass

import hcl

LEVELS = {"deny": 0, "read": 1, "list": 2, "write": 3}
SEGMENTED = ("agent", "event", "key", "node", "query", "service", "session")
SINGLE = ("acl", "keyring", "mesh", "operator", "peering")


class RulesError(ValueError):
    """The rules text does not parse or has an unknown shape."""


@dataclass(frozen=True)
class Rule:
    resource: str           # "service", "key", ...
    segment: str            # a name, or a prefix when ``prefix`` is true
    prefix: bool
    level: str

    def describe(self) -> str:
        kind = f"{self.resource}_prefix" if self.prefix else self.resource
        return f'{kind} "{self.segment}" {self.level}'


@dataclass(frozen=True)
class Grant:
    """A permission a control requires: ``level`` on a name or on a whole prefix."""

    resource: str
    segment: str
    prefix: bool
    level: str

    def describe(self) -> str:
        kind = f"{self.resource}_prefix" if self.prefix else self.resource
        return f'{kind} "{self.segment}" {self.level}'


class Rules:
    """A parsed rule set."""

    def __init__(self, rules: list[Rule], single: dict[str, str]):
        self.rules = rules
        self.single = single

    @classmethod
    def parse(cls, text: str) -> "Rules":
        if not text or not text.strip():
            return cls([], {})
        try:
            data = hcl.loads(text)
        except (ValueError, TypeError) as exc:
            raise RulesError(f"rules do not parse as HCL or JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RulesError("rules must be an object at the top level")
        return cls(*_flatten(data))

    def level(self, resource: str, name: str) -> str:
        """Return the effective level Consul grants on ``resource`` ``name``."""
        exact = [rule for rule in self.rules if rule.resource == resource and not rule.prefix and rule.segment == name]
        if exact:
            return exact[-1].level
        matching = [rule for rule in self.rules if rule.resource == resource and rule.prefix and name.startswith(rule.segment)]
        if not matching:
            return "deny"
        longest = max(len(rule.segment) for rule in matching)
        return [rule for rule in matching if len(rule.segment) == longest][-1].level

    def grants(self, grant: Grant) -> bool:
        """True when every name the grant covers gets at least its level."""
        if grant.resource in SINGLE:
            return _rank(self.single.get(grant.resource, "deny")) >= _rank(grant.level)
        if _rank(self.level(grant.resource, grant.segment)) < _rank(grant.level):
            return False
        if not grant.prefix:
            return True
        # A more specific rule below the prefix may lower the level for part
        # of it; then the prefix as a whole is not granted.
        below = [rule for rule in self.rules if rule.resource == grant.resource and rule.segment.startswith(grant.segment) and rule.segment != grant.segment]
        return all(_rank(rule.level) >= _rank(grant.level) for rule in below)

    def missing(self, required: list[Grant]) -> list[Grant]:
        return [grant for grant in required if not self.grants(grant)]

    def beyond(self, reference: "Rules") -> list[str]:
        """Describe what this rule set grants that ``reference`` does not."""
        extra = []
        for rule in self.rules:
            if rule.level == "deny":
                continue
            if not reference.grants(Grant(rule.resource, rule.segment, rule.prefix, rule.level)):
                extra.append(rule.describe())
        for resource, level in self.single.items():
            if level != "deny" and not reference.grants(Grant(resource, "", False, level)):
                extra.append(f'{resource} = "{level}"')
        return extra

    def describe(self) -> list[str]:
        lines = [rule.describe() for rule in self.rules]
        lines += [f'{resource} = "{level}"' for resource, level in self.single.items()]
        return lines


def _rank(level: str) -> int:
    return LEVELS.get(level, 0)


def _flatten(data: dict) -> tuple[list[Rule], dict[str, str]]:
    rules: list[Rule] = []
    single: dict[str, str] = {}
    for key, value in data.items():
        if key in SINGLE:
            single[key] = _level(value, key)
            continue
        resource, prefix = _resource(key)
        for segment, body in _blocks(value, key):
            rules.extend(_rules_of(resource, segment, prefix, body, key))
    return rules, single


def _resource(key: str) -> tuple[str, bool]:
    base = key.removesuffix("_prefix")
    if base not in SEGMENTED:
        raise RulesError(f"unknown rule keyword {key!r}")
    return base, key.endswith("_prefix")


def _blocks(value, key: str):
    """Yield (segment, body) from the map form and the list-of-maps form."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            raise RulesError(f"rule {key!r} must map names to blocks")
        yield from item.items()


def _rules_of(resource: str, segment: str, prefix: bool, body, key: str) -> list[Rule]:
    if not isinstance(body, dict):
        raise RulesError(f'rule {key} "{segment}" must be a block')
    found = []
    if "policy" in body:
        found.append(Rule(resource, segment, prefix, _level(body["policy"], key)))
    if resource == "service" and "intentions" in body:
        found.append(Rule("intention", segment, prefix, _level(body["intentions"], key)))
    return found


def _level(value, key: str) -> str:
    if not isinstance(value, str) or value not in LEVELS:
        raise RulesError(f"invalid {key} policy: {value!r}")
    return value
