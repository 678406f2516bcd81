"""ACL rule parsing and the authorizer that evaluates a token's merged rules.

Rules text is HCL v1 or JSON, parsed with pyhcl. Segmented resources (key, node,
service, agent, session, event, query) have an exact form and a `_prefix` form, and
each rule may be written as a map (`{"service": {"x": {...}}}`) or as a list of
maps (`{"service": [{"x": {...}}]}`). The single-level resources (acl, operator,
mesh, keyring, peering) take a bare level string.

Evaluation follows Consul's policy authorizer: an exact rule beats any prefix rule,
the longest matching prefix wins, and with no matching rule the default policy
applies. When several policies set the same rule, deny wins, otherwise the higher
level wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import hcl

DENY = "deny"
READ = "read"
LIST = "list"
WRITE = "write"

# Rank of each level when several policies set the same rule; deny is handled apart.
_LEVEL_RANK = {DENY: 0, READ: 1, LIST: 2, WRITE: 3}

SEGMENTED_RESOURCES = ("key", "node", "service", "agent", "session", "event", "query")
SINGLE_RESOURCES = ("acl", "operator", "mesh", "keyring", "peering")
# Resource name used for the `intentions` level inside service rules.
INTENTION = "intention"
ALL_RESOURCES = SEGMENTED_RESOURCES + SINGLE_RESOURCES + (INTENTION,)


class RulesError(ValueError):
    """Rules text that does not parse or contains an invalid level. The message is Consul's full error text."""


@dataclass
class RuleSet:
    """Parsed rules: levels by resource and name, for exact and prefix rules."""

    exact: dict[str, dict[str, str]] = field(default_factory=dict)
    prefix: dict[str, dict[str, str]] = field(default_factory=dict)
    single: dict[str, str] = field(default_factory=dict)

    def set_exact(self, resource: str, name: str, level: str) -> None:
        _merge_level(self.exact.setdefault(resource, {}), name, level)

    def set_prefix(self, resource: str, name: str, level: str) -> None:
        _merge_level(self.prefix.setdefault(resource, {}), name, level)

    def set_single(self, resource: str, level: str) -> None:
        _merge_level(self.single, resource, level)


def _merge_level(table: dict[str, str], name: str, level: str) -> None:
    current = table.get(name)
    if current is None or _takes_precedence(level, current):
        table[name] = level


def _takes_precedence(new: str, current: str) -> bool:
    if current == DENY:
        return False
    if new == DENY:
        return True
    return _LEVEL_RANK[new] > _LEVEL_RANK[current]


def parse_rules(text: str) -> RuleSet:
    """Parse policy rules text, raising RulesError with Consul's message on failure."""
    try:
        document = hcl.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise RulesError(f"Failed to parse ACL rules: {exc}") from None
    if not isinstance(document, dict):
        raise RulesError("Failed to parse ACL rules: the rules must be an object")
    rules = RuleSet()
    for keyword, body in document.items():
        _add_keyword(rules, keyword, body)
    return rules


def _add_keyword(rules: RuleSet, keyword: str, body: Any) -> None:
    if keyword in SINGLE_RESOURCES:
        if not isinstance(body, str) or body not in (READ, WRITE, DENY):
            raise RulesError(f"Invalid {keyword} policy: {_go_quote(body)}")
        rules.set_single(keyword, body)
        return
    resource, is_prefix = _split_keyword(keyword)
    if resource is None:
        # NOTE: an unknown keyword such as "service_prefixx" is ignored, as HCL v1
        # struct decoding ignores unknown keys. Whether Consul rejects it is unconfirmed.
        return
    for name, rule in _iterate_named_rules(keyword, body):
        _add_rule(rules, resource, is_prefix, name, rule)


def _split_keyword(keyword: str) -> tuple[str | None, bool]:
    if keyword in SEGMENTED_RESOURCES:
        return keyword, False
    if keyword.endswith("_prefix") and keyword[: -len("_prefix")] in SEGMENTED_RESOURCES:
        return keyword[: -len("_prefix")], True
    return None, False


def _iterate_named_rules(keyword: str, body: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    blocks = body if isinstance(body, list) else [body]
    for block in blocks:
        if not isinstance(block, dict):
            raise RulesError(f"Failed to parse ACL rules: {keyword} must be a block of named rules")
        for name, rule in block.items():
            for single in rule if isinstance(rule, list) else [rule]:
                if not isinstance(single, dict):
                    raise RulesError(
                        f"Failed to parse ACL rules: {keyword} {name!r} must be a block with a policy"
                    )
                yield str(name), single


def _add_rule(rules: RuleSet, resource: str, is_prefix: bool, name: str, rule: dict[str, Any]) -> None:
    policy = rule.get("policy", "")
    valid = (READ, WRITE, DENY, LIST) if resource == "key" else (READ, WRITE, DENY)
    if policy not in valid:
        raise RulesError(f"Invalid {resource} policy: {_rule_dump(resource, name, rule)}")
    setter = rules.set_prefix if is_prefix else rules.set_exact
    setter(resource, name, policy)
    if resource != "service":
        return
    intentions = rule.get("intentions", "")
    if intentions and intentions not in (READ, WRITE, DENY):
        raise RulesError(f"Invalid service intentions policy: {_rule_dump(resource, name, rule)}")
    if not intentions:
        # A service read or write rule implies intentions read, as in Consul's policy authorizer.
        intentions = READ if policy in (READ, WRITE) else DENY
    setter(INTENTION, name, intentions)


def _rule_dump(resource: str, name: str, rule: dict[str, Any]) -> str:
    # NOTE: Consul prints a Go %#v struct dump here; this only imitates its shape.
    type_name = resource.capitalize() + "Rule"
    fields = ", ".join(f"{key.capitalize()}:{_go_quote(value)}" for key, value in rule.items())
    return f"&acl.{type_name}{{Name:{_go_quote(name)}, {fields}}}"


def _go_quote(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def merge_rule_sets(rule_sets: Iterable[RuleSet]) -> RuleSet:
    """Merge the rules of several policies into one set."""
    merged = RuleSet()
    for rules in rule_sets:
        for resource, table in rules.exact.items():
            for name, level in table.items():
                merged.set_exact(resource, name, level)
        for resource, table in rules.prefix.items():
            for name, level in table.items():
                merged.set_prefix(resource, name, level)
        for resource, level in rules.single.items():
            merged.set_single(resource, level)
    return merged


class Authorizer:
    """Decide whether a set of rules grants an access level on one resource segment."""

    def __init__(self, rules: RuleSet, default_allow: bool, management: bool = False) -> None:
        self.rules = rules
        self.default_allow = default_allow
        self.management = management

    def allowed(self, resource: str, name: str, access: str) -> bool:
        """Return whether access ("read", "list", "write", "write-prefix") is granted."""
        if self.management:
            return True
        if access == "write-prefix":
            return self._write_prefix_allowed(resource, name)
        level = self.level(resource, name)
        if level is None:
            return self.default_allow
        return _grants(level, access)

    def level(self, resource: str, name: str) -> str | None:
        """Return the level of the rule that governs name, or None when no rule matches."""
        if resource in SINGLE_RESOURCES:
            return self._single_level(resource)
        exact = self.rules.exact.get(resource, {})
        if name in exact:
            return exact[name]
        best: str | None = None
        for prefix, level in self.rules.prefix.get(resource, {}).items():
            if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else self.rules.prefix[resource][best]

    def _single_level(self, resource: str) -> str | None:
        level = self.rules.single.get(resource)
        if level is None and resource in ("mesh", "peering"):
            # Consul falls back to the operator rule when no mesh or peering rule is set.
            level = self.rules.single.get("operator")
        return level

    def _write_prefix_allowed(self, resource: str, prefix: str) -> bool:
        for table in (self.rules.exact.get(resource, {}), self.rules.prefix.get(resource, {})):
            for name, level in table.items():
                if name.startswith(prefix) and level != WRITE:
                    return False
        level = self.level(resource, prefix)
        return self.default_allow if level is None else level == WRITE


def _grants(level: str, access: str) -> bool:
    if level == DENY:
        return False
    if access == READ:
        return level in (READ, LIST, WRITE)
    if access == LIST:
        return level in (LIST, WRITE)
    return level == WRITE


def allow_all() -> Authorizer:
    """Return the authorizer used when ACLs are disabled."""
    return Authorizer(RuleSet(), default_allow=True, management=True)


def service_identity_rules(service_name: str) -> RuleSet:
    """Return the rules Consul synthesizes for a service identity."""
    rules = RuleSet()
    rules.set_exact("service", service_name, WRITE)
    rules.set_exact("service", f"{service_name}-sidecar-proxy", WRITE)
    rules.set_exact(INTENTION, service_name, READ)
    rules.set_prefix("service", "", READ)
    rules.set_prefix(INTENTION, "", READ)
    rules.set_prefix("node", "", READ)
    return rules


def node_identity_rules(node_name: str) -> RuleSet:
    """Return the rules Consul synthesizes for a node identity."""
    rules = RuleSet()
    rules.set_exact("node", node_name, WRITE)
    rules.set_prefix("service", "", READ)
    rules.set_prefix(INTENTION, "", READ)
    return rules
