"""systemd unit files and ``consul connect envoy`` command lines, parsed.

Unit files are read the way systemd reads them: comments start with ``#`` or
``;``, a trailing backslash continues the line, and a key may repeat (an
empty assignment resets ExecStart). Flags are read the way Go's flag package
reads them for the consul CLI: ``-flag value``, ``-flag=value``, ``--flag``,
and boolean flags that take no separate value.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# Boolean flags of `consul connect envoy` (Consul 1.10-1.21): they never
# consume the next argument.
ENVOY_BOOL_FLAGS = frozenset({
    "register", "bootstrap", "mesh-gateway", "expose-servers",
    "disable-central-config", "ignore-envoy-compatibility", "enable-config-gen-logging",
})

EXEC_PREFIXES = "@-:+!"


class UnitParseError(ValueError):
    """The unit file or ExecStart line cannot be read."""


@dataclass
class UnitFile:
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def values(self, section: str, key: str) -> list[str]:
        """Return every assignment of ``key``, honouring empty resets."""
        found: list[str] = []
        for name, value in self.sections.get(section, []):
            if name != key:
                continue
            if value == "":
                found = []
            else:
                found.append(value)
        return found

    def value(self, section: str, key: str) -> str | None:
        values = self.values(section, key)
        return values[-1] if values else None


def parse_unit(text: str) -> UnitFile:
    unit = UnitFile()
    section = None
    for number, line in _logical_lines(text):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.sections.setdefault(section, [])
            continue
        if "=" not in line:
            raise UnitParseError(f"line {number}: expected KEY=VALUE, got {line!r}")
        if section is None:
            raise UnitParseError(f"line {number}: assignment outside any [Section]")
        key, value = line.split("=", 1)
        unit.sections[section].append((key.strip(), value.strip()))
    return unit


def _logical_lines(text: str):
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped[0] in "#;"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, (pending + stripped).strip()
        pending = ""
    if pending:
        yield start, pending.strip()


@dataclass(frozen=True)
class EnvoyCommand:
    binary: str
    subcommand: tuple[str, ...]
    flags: dict[str, str | bool]
    repeated: tuple[str, ...]
    passthrough: tuple[str, ...]


def parse_exec_start(line: str) -> EnvoyCommand:
    """Split an ExecStart value and read its consul flags."""
    try:
        argv = shlex.split(line.lstrip(EXEC_PREFIXES))
    except ValueError as exc:
        raise UnitParseError(f"ExecStart does not split into arguments: {exc}") from exc
    if not argv:
        raise UnitParseError("ExecStart is empty")

    binary, rest = argv[0], argv[1:]
    subcommand = []
    while rest and not rest[0].startswith("-"):
        subcommand.append(rest.pop(0))

    flags: dict[str, str | bool] = {}
    repeated: list[str] = []
    passthrough: tuple[str, ...] = ()
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            passthrough = tuple(rest)
            break
        name, value = _flag(arg, rest)
        if name in flags:
            repeated.append(name)
        flags[name] = value
    return EnvoyCommand(binary, tuple(subcommand), flags, tuple(repeated), passthrough)


def _flag(arg: str, rest: list[str]) -> tuple[str, str | bool]:
    if not arg.startswith("-"):
        raise UnitParseError(f"unexpected argument {arg!r} among the flags")
    name = arg.lstrip("-")
    if "=" in name:
        name, value = name.split("=", 1)
        if name in ENVOY_BOOL_FLAGS:
            return name, value.lower() in ("1", "t", "true")
        return name, value
    if name in ENVOY_BOOL_FLAGS:
        return name, True
    if not rest:
        raise UnitParseError(f"flag -{name} has no value")
    return name, rest.pop(0)
