"""Read the hosts, groups and variables of an Ansible inventory file (INI or YAML).

Both formats give the same model: groups with hosts, variables and child
groups. A host belongs to every group that lists it and to every ancestor of
those groups, as in Ansible. Its variables are the ``all`` group's, then each
group's from the outermost to the innermost, then its own; the later wins.
Host ranges such as ``mbox[01:03]`` and ``node-[a:c]`` are expanded.

Not read: dynamic inventory scripts and plugins, inventory directories,
``group_vars``/``host_vars`` files, and vault-encrypted values.
"""

from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass, field

import yaml

YAML_SUFFIXES = (".yml", ".yaml", ".json")
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")


class InventoryError(ValueError):
    """The Ansible inventory cannot be read or names no node of a known role."""


@dataclass
class Group:
    name: str
    hosts: dict[str, dict] = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    children: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InventoryHost:
    name: str
    groups: tuple[str, ...]
    variables: dict


def read_inventory(path: str) -> list[InventoryHost]:
    """Return the hosts of the inventory at ``path``, in the order the file first lists them."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InventoryError(f"cannot read Ansible inventory {path}: {exc.strerror}") from exc

    groups = _parse_yaml(path, text) if path.endswith(YAML_SUFFIXES) else _parse_ini(path, text)
    return _resolve(path, groups)


# -- INI ------------------------------------------------------------------------

def _parse_ini(path: str, text: str) -> dict[str, Group]:
    groups: dict[str, Group] = {"all": Group("all"), "ungrouped": Group("ungrouped")}
    section, kind = "ungrouped", "hosts"

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue

        if line.startswith("[") and not line.endswith("]"):
            raise InventoryError(f"Ansible inventory {path} line {number}: section header {line!r} has no closing ]")
        if line.startswith("[") and line.endswith("]"):
            section, _, kind = line[1:-1].strip().partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryError(f"Ansible inventory {path} line {number}: unknown section type :{kind}; use :vars or :children")
            groups.setdefault(section, Group(section))
            continue

        group = groups[section]
        if kind == "vars":
            name, separator, value = line.partition("=")
            if not separator:
                raise InventoryError(f"Ansible inventory {path} line {number}: expected name=value in [{section}:vars], got {line!r}")
            group.variables[name.strip()] = value.strip().strip("'\"")
        elif kind == "children":
            child = line.split()[0]
            groups.setdefault(child, Group(child))
            group.children.append(child)
        else:
            name, variables = _ini_host_line(path, number, line)
            for host in _expand(path, name):
                group.hosts.setdefault(host, {}).update(variables)
    return groups


def _ini_host_line(path: str, number: int, line: str) -> tuple[str, dict]:
    """Split ``host name=value ...`` as Ansible does: shell quoting, and ``#`` starts a comment."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"Ansible inventory {path} line {number}: {exc}") from exc
    variables = {}
    for word in words[1:]:
        name, separator, value = word.partition("=")
        if not separator:
            raise InventoryError(f"Ansible inventory {path} line {number}: expected name=value after host {words[0]}, got {word!r}")
        variables[name] = value
    return words[0], variables


# -- YAML -----------------------------------------------------------------------

def _parse_yaml(path: str, text: str) -> dict[str, Group]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f"Ansible inventory {path} is not valid YAML: {exc}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise InventoryError(f"Ansible inventory {path} must map group names to groups at the top level")

    groups: dict[str, Group] = {"all": Group("all")}
    for name, body in document.items():
        _yaml_group(path, groups, str(name), body)
    return groups


def _yaml_group(path: str, groups: dict[str, Group], name: str, body) -> None:
    group = groups.setdefault(name, Group(name))
    if body is None:
        return
    if not isinstance(body, dict):
        raise InventoryError(f"Ansible inventory {path}: group {name} must be a mapping of hosts, vars and children")

    for key in ("hosts", "vars", "children"):
        if not isinstance(body.get(key) or {}, dict):
            raise InventoryError(f"Ansible inventory {path}: {key} of group {name} must be a mapping, "
                                 f"not {type(body[key]).__name__}")

    for host, variables in (body.get("hosts") or {}).items():
        if variables is not None and not isinstance(variables, dict):
            raise InventoryError(f"Ansible inventory {path}: host {host} in group {name} must map variable names to values")
        for expanded in _expand(path, str(host)):
            group.hosts.setdefault(expanded, {}).update(variables or {})
    group.variables.update(body.get("vars") or {})
    for child, child_body in (body.get("children") or {}).items():
        group.children.append(str(child))
        _yaml_group(path, groups, str(child), child_body)


# -- both -----------------------------------------------------------------------

def _expand(path: str, pattern: str) -> list[str]:
    """Expand the first ``[start:end]`` or ``[start:end:step]`` range of a host pattern, recursively."""
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]

    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    if start.isdigit() != end.isdigit():
        raise InventoryError(f"Ansible inventory {path}: host range {match.group(0)} mixes digits and letters")
    if start.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(number).zfill(width) for number in range(int(start), int(end) + 1, step)]
    else:
        letters = string.ascii_lowercase
        values = list(letters[letters.index(start):letters.index(end) + 1:step])
    if not values:
        raise InventoryError(f"Ansible inventory {path}: host range {match.group(0)} is empty")

    head, tail = pattern[:match.start()], pattern[match.end():]
    return [host for value in values for host in _expand(path, head + value + tail)]


def _resolve(path: str, groups: dict[str, Group]) -> list[InventoryHost]:
    parents: dict[str, set[str]] = {}
    for group in groups.values():
        for child in group.children:
            parents.setdefault(child, set()).add(group.name)

    order: list[str] = []
    direct: dict[str, list[str]] = {}
    for group in groups.values():
        for host in group.hosts:
            if host not in direct:
                order.append(host)
            direct.setdefault(host, []).append(group.name)

    hosts = []
    for name in order:
        memberships = _with_ancestors(path, direct[name], parents)
        variables = dict(groups["all"].variables)
        for group_name in sorted(memberships, key=lambda group: memberships[group], reverse=True):
            variables.update(groups[group_name].variables)
        for group_name in direct[name]:
            variables.update(groups[group_name].hosts[name])
        hosts.append(InventoryHost(name, tuple(sorted(memberships)), variables))
    return hosts


def _with_ancestors(path: str, names: list[str], parents: dict[str, set[str]]) -> dict[str, int]:
    """Return each group a host belongs to, with its distance from the host's own group."""
    depth = {name: 0 for name in names}
    frontier = list(names)
    while frontier:
        name = frontier.pop()
        for parent in parents.get(name, ()):
            distance = depth[name] + 1
            if distance > len(parents) + 1:
                raise InventoryError(f"Ansible inventory {path}: group {parent} is its own ancestor")
            if parent not in depth or depth[parent] < distance:
                depth[parent] = distance
                frontier.append(parent)
    depth.pop("all", None)
    return depth
