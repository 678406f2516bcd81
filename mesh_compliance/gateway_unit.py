"""The gateway unit as loaded, compared with the documented one, and which file caused each difference.

The documented unit runs ``consul connect envoy`` with the flags of
``expected.exec_start_flags`` as the gateway user. An admin copy of the unit
in a higher-precedence directory, or a drop-in, can change either. This
module finds the file of the loaded unit that last changed ExecStart or User, so
a control can name it and a fixer can move it aside.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from mesh_compliance.expected import exec_start_flags
from mesh_compliance.site import Site
from mesh_compliance.systemd import SEARCH_PATH, Layer, LoadedUnit, merge_layers
from mesh_compliance.units import UnitParseError, parse_exec_start

KEYS = ("ExecStart", "User")


@dataclass(frozen=True)
class Change:
    """A layer that changed the meaning of ExecStart or User."""

    layer: Layer
    key: str
    value: str  # the key's loaded value right after this layer, as text


@dataclass(frozen=True)
class Finding:
    """A key whose loaded value differs from the documented unit."""

    key: str
    problems: tuple[str, ...]
    cause: Change | None  # the layer that last changed the key; None when no file sets it


def expected_exec_start(site: Site) -> str:
    flags = exec_start_flags(site)
    words = [f"-{name}" if value is True else f"-{name} {value}" for name, value in flags.items()]
    return f"{site.gateway.consul_binary} connect envoy " + " ".join(words)


def exec_start_problems(commands: tuple[tuple[str, ...], ...], site: Site) -> list[str]:
    """Return how the ExecStart commands differ from the documented one; empty when they match."""
    if len(commands) != 1:
        return [f"{len(commands)} ExecStart commands, expected one"]

    try:
        command = parse_exec_start(shlex.join(commands[0]))
    except UnitParseError as exc:
        return [str(exc)]

    gateway = site.gateway
    if command.binary != gateway.consul_binary or command.subcommand != ("connect", "envoy"):
        return [f"runs {command.binary} {' '.join(command.subcommand)}, expected {gateway.consul_binary} connect envoy"]

    problems = []
    for name, value in exec_start_flags(site).items():
        actual = command.flags.get(name, "missing")
        if actual != value:
            problems.append(f"-{name} is {actual}, expected {value}")
    if command.repeated:
        problems.append(f"repeats flags {', '.join(command.repeated)}")
    return problems


def user_problems(user: str | None, site: Site) -> list[str]:
    if user == site.gateway.user:
        return []
    return [f"runs as {user or 'root (User= unset)'}, expected {site.gateway.user}"]


def changes(layers: list[Layer], key: str) -> list[Change]:
    """Return every layer that changed the meaning of ``key``, in the order systemd applies them.

    ExecStart is compared as parsed flags, so ``-flag value`` and
    ``-flag=value`` mean the same and a drop-in that repeats the fragment's
    command changes nothing.
    """
    found = []
    before = _meaning(merge_layers([]), key)
    for position in range(len(layers)):
        merged = merge_layers(layers[:position + 1])
        after = _meaning(merged, key)
        if after != before:
            found.append(Change(layers[position], key, _text(merged, key)))
        before = after
    return found


def findings(loaded: LoadedUnit, layers: list[Layer], site: Site) -> list[Finding]:
    """Return the keys whose loaded values differ from the documented unit, with their cause."""
    problems = {
        "ExecStart": exec_start_problems(loaded.exec_start_commands, site),
        "User": user_problems(loaded.user, site),
    }
    result = []
    for key in KEYS:
        if not problems[key]:
            continue
        key_changes = changes(layers, key)
        cause = key_changes[-1] if key_changes else None
        result.append(Finding(key, tuple(problems[key]), cause))
    return result


def shadows(fragment_path: str | None, documented_path: str) -> bool:
    """Tell whether ``fragment_path`` comes before ``documented_path`` in the unit search path."""
    if not fragment_path or fragment_path == documented_path:
        return False
    fragment_dir = posixpath.dirname(fragment_path)
    documented_dir = posixpath.dirname(documented_path)
    if fragment_dir not in SEARCH_PATH or documented_dir not in SEARCH_PATH:
        return False
    return SEARCH_PATH.index(fragment_dir) < SEARCH_PATH.index(documented_dir)


def _meaning(merged, key: str):
    if key == "User":
        return merged.value("Service", "User")
    return tuple(_command_meaning(line) for line in merged.values("Service", "ExecStart"))


def _command_meaning(line: str):
    try:
        return parse_exec_start(line)
    except UnitParseError:
        return line


def _text(merged, key: str) -> str:
    if key == "User":
        return merged.value("Service", "User") or "unset (root)"
    return " | ".join(merged.values("Service", "ExecStart")) or "none"
