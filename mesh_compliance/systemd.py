"""A systemd unit as systemd loads it: the fragment, its drop-ins and the command it runs.

On a node where systemd runs, ``systemctl show`` returns the loaded unit, and
NeedDaemonReload shows whether the files changed since the last
``daemon-reload``. On a root directory, or where systemd does not run, the
unit is computed from the files the way systemd reads them. The fragment is
the first one found in the unit search path, and the ``.conf`` drop-ins
apply after it in lexical order of file name.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from mesh_compliance.errors import TargetError
from mesh_compliance.log import logger
from mesh_compliance.target import Target
from mesh_compliance.units import EXEC_PREFIXES, UnitFile, UnitParseError, parse_unit

# The unit search path of the system manager, highest precedence first.
# NOTE: real systemd also reads generator and transient directories and
# /usr/local/lib/systemd/system, which packages and admins do not use for this unit.
SEARCH_PATH = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)

SHOW_PROPERTIES = (
    "FragmentPath", "DropInPaths", "ExecStart", "User",
    "NeedDaemonReload", "UnitFileState", "LoadState",
)

SOURCE_SHOW = "systemctl show"
SOURCE_FILES = "unit files"

# "argv[]=" up to the field that follows it in `systemctl show` output
# ("ignore_errors=" for ExecStart, "flags=" for ExecStartEx).
_ARGV = re.compile(r"argv\[\]=(.*?) ; (?:ignore_errors|flags)=")


@dataclass(frozen=True)
class LoadedUnit:
    """A unit as loaded: the command systemd would run and the files it came from."""

    unit: str
    fragment_path: str | None
    dropin_paths: tuple[str, ...]
    exec_start: list[str]  # argv of the last ExecStart command; empty when none
    user: str | None  # None when User= is unset, so the service runs as root
    need_daemon_reload: bool | None  # None when unknown (computed from files)
    unit_file_state: str  # enabled, disabled, static, masked, not-found, ...
    load_state: str  # loaded, masked, not-found
    source: str  # SOURCE_SHOW or SOURCE_FILES
    exec_start_commands: tuple[tuple[str, ...], ...] = field(default=())  # every ExecStart command

    @property
    def exec_start_line(self) -> str:
        """Return the last ExecStart command as one shell-quoted line."""
        return shlex.join(self.exec_start)


def load_unit(target: Target, unit: str) -> LoadedUnit:
    """Return ``unit`` as systemd on ``target`` loads it, or would load it from its files.

    Raises TargetError when systemctl fails or prints no usable output, and UnitParseError
    (naming the file) when a unit file or drop-in cannot be read.
    """
    if not target.root and target.systemd_running():
        return _load_from_show(target, unit)
    return _load_from_files(target, unit)


# -- live systemd --------------------------------------------------------------

def _load_from_show(target: Target, unit: str) -> LoadedUnit:
    # NOTE: this branch is tested only against a stand-in systemctl that prints
    # systemd 252's output format, because the test machines run no systemd.
    result = target.run("systemctl", "show", "-p", ",".join(SHOW_PROPERTIES), "--", unit)
    if result.rc != 0:
        raise TargetError(f"systemctl show {unit} failed on {target.name}: {result.stderr.strip()}")

    properties: dict[str, str] = {}
    commands: list[tuple[str, ...]] = []
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        if name == "ExecStart":
            if value.strip():
                commands.append(tuple(parse_show_exec_start(value)))
            continue
        properties[name] = value.strip()

    reload_flag = properties.get("NeedDaemonReload", "")
    return LoadedUnit(
        unit=unit,
        fragment_path=properties.get("FragmentPath") or None,
        dropin_paths=tuple(properties.get("DropInPaths", "").split()),
        exec_start=list(commands[-1]) if commands else [],
        user=properties.get("User") or None,
        need_daemon_reload={"yes": True, "no": False}.get(reload_flag),
        unit_file_state=properties.get("UnitFileState") or "not-found",
        load_state=properties.get("LoadState") or "not-found",
        source=SOURCE_SHOW,
        exec_start_commands=tuple(commands),
    )


def parse_show_exec_start(value: str) -> list[str]:
    """Return the argv of one ``{ path=... ; argv[]=... ; ... }`` ExecStart value.

    systemd joins argv with spaces. The value is split with shell rules, so
    an argument that systemd prints quoted stays one argument.
    """
    match = _ARGV.search(value)
    if match is None:
        raise UnitParseError(f"systemctl show printed an ExecStart without argv[]: {value!r}")
    text = match.group(1)
    try:
        return shlex.split(text)
    except ValueError:
        # An unquoted argument with an odd quote character: fall back to spaces.
        return text.split()


# -- unit files ----------------------------------------------------------------

def _load_from_files(target: Target, unit: str) -> LoadedUnit:
    fragment, masked = find_fragment(target, unit)
    dropins = [] if masked else find_dropins(target, unit)

    merged = UnitFile()
    if fragment and not masked:
        _merge(merged, _read_unit(target, fragment))
    for path in dropins:
        _merge(merged, _read_unit(target, path))

    commands = [tuple(_split_exec(line)) for line in merged.values("Service", "ExecStart")]
    if masked:
        load_state = "masked"
    else:
        load_state = "loaded" if fragment else "not-found"

    loaded = LoadedUnit(
        unit=unit,
        fragment_path=None if masked else fragment,
        dropin_paths=tuple(dropins),
        exec_start=list(commands[-1]) if commands else [],
        user=merged.value("Service", "User"),
        need_daemon_reload=None,
        unit_file_state=target.unit_enabled_state(unit),
        load_state=load_state,
        source=SOURCE_FILES,
        exec_start_commands=tuple(commands),
    )
    logger.debug("unit %s from files: fragment=%s drop-ins=%s", unit, loaded.fragment_path, list(dropins))
    return loaded


def find_fragment(target: Target, unit: str) -> tuple[str | None, bool]:
    """Return the first fragment of ``unit`` in the search path and whether it masks the unit.

    A fragment that is a symlink to /dev/null, or an empty file, masks the
    unit. A symlink to another file yields that file's path, as systemd
    reports it in FragmentPath.
    """
    for directory in SEARCH_PATH:
        path = f"{directory}/{unit}"
        link = _read_link(target, path)
        if link is not None:
            resolved = posixpath.normpath(posixpath.join(directory, link))
            if resolved == "/dev/null":
                return path, True
            state = target.file_state(resolved)
            if state.exists:
                return resolved, state.size == 0
            continue
        state = target.file_state(path)
        if state.exists and state.is_file:
            return path, state.size == 0
    return None, False


def find_dropins(target: Target, unit: str) -> list[str]:
    """Return the ``.conf`` drop-ins that apply to ``unit``, in the order systemd applies them.

    Drop-ins come from ``<unit>.d``, from the directories of the unit name's
    dash prefixes (``a-.service.d`` for ``a-b.service``) and from the
    unit type's directory (``service.d``), in every search-path directory.
    Among files with the same name, the one in the higher-precedence directory
    wins and hides the others. A drop-in linked to /dev/null, or empty, hides
    a same-named one and applies nothing. The winners apply in lexical order
    of file name, so a later name overrides an earlier one.
    """
    chosen: dict[str, str] = {}
    for directory in SEARCH_PATH:
        for name in dropin_dir_names(unit):
            for file_name in _list_conf(target, f"{directory}/{name}"):
                chosen.setdefault(file_name, f"{directory}/{name}/{file_name}")

    applied = []
    for file_name in sorted(chosen):
        path = chosen[file_name]
        if _masks(target, path):
            continue
        applied.append(path)
    return applied


def dropin_dir_names(unit: str) -> list[str]:
    """Return the drop-in directory names for ``unit``, most specific first."""
    stem, dot, unit_type = unit.rpartition(".")
    names = [f"{unit}.d"]
    if not dot:
        return names

    parts = stem.split("-")
    for count in range(len(parts) - 1, 0, -1):
        names.append("-".join(parts[:count]) + f"-.{unit_type}.d")
    names.append(f"{unit_type}.d")
    return names


def _list_conf(target: Target, directory: str) -> list[str]:
    result = target.run(
        "find", target.path(directory), "-mindepth", "1", "-maxdepth", "1",
        "-name", "*.conf", "-printf", "%f\\n",
    )
    if result.rc != 0:
        if "No such file" in result.stderr:
            return []
        raise TargetError(f"cannot list {target.path(directory)} on {target.name}: {result.stderr.strip()}")
    return [name for name in result.stdout.splitlines() if name]


def _read_link(target: Target, node_path: str) -> str | None:
    result = target.run("readlink", "--", target.path(node_path))
    return result.stdout.strip() if result.rc == 0 and result.stdout.strip() else None


def _masks(target: Target, node_path: str) -> bool:
    if _read_link(target, node_path) == "/dev/null":
        return True
    state = target.file_state(node_path)
    return state.exists and state.size == 0


def _read_unit(target: Target, node_path: str) -> UnitFile:
    text = target.read_text(node_path)
    if text is None:
        raise TargetError(f"{node_path} disappeared while reading the unit on {target.name}")
    try:
        return parse_unit(text)
    except UnitParseError as exc:
        raise UnitParseError(f"{node_path}: {exc}") from exc


def _merge(into: UnitFile, part: UnitFile) -> None:
    for section, assignments in part.sections.items():
        into.sections.setdefault(section, []).extend(assignments)


def _split_exec(line: str) -> list[str]:
    try:
        return shlex.split(line.lstrip(EXEC_PREFIXES))
    except ValueError as exc:
        raise UnitParseError(f"ExecStart does not split into arguments: {exc}") from exc


# -- layers --------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """One file of a loaded unit, parsed: its fragment or one of its drop-ins."""

    path: str
    kind: str  # "fragment" or "drop-in"
    unit: UnitFile


def read_layers(target: Target, loaded: LoadedUnit) -> list[Layer]:
    """Read the fragment and drop-ins of ``loaded`` in the order systemd applies them.

    A file that was removed after systemd loaded the unit is left out, so on a
    live node that needs a daemon-reload the layers can differ from ``loaded``.
    """
    paths = [(loaded.fragment_path, "fragment")] if loaded.fragment_path else []
    paths += [(path, "drop-in") for path in loaded.dropin_paths]

    layers = []
    for path, kind in paths:
        text = target.read_text(path)
        if text is None:
            logger.debug("unit %s: %s %s no longer exists", loaded.unit, kind, path)
            continue
        try:
            layers.append(Layer(path, kind, parse_unit(text)))
        except UnitParseError as exc:
            raise UnitParseError(f"{path}: {exc}") from exc
    return layers


def merge_layers(layers: list[Layer]) -> UnitFile:
    """Return one UnitFile with the assignments of ``layers`` in order, as systemd applies them."""
    merged = UnitFile()
    for layer in layers:
        _merge(merged, layer.unit)
    return merged


# -- enablement and activity -----------------------------------------------------

ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "linked", "linked-runtime", "alias"})


def enablement_links(target: Target, unit: str) -> list[str]:
    """Return the ``*.wants``, ``*.requires`` and ``*.upholds`` links to ``unit`` under /etc and /run.

    ``systemctl enable`` creates them; they can outlive a removed unit file,
    and then ``is-enabled`` reports not-found while the links remain.
    """
    found = []
    for directory in ("/etc/systemd/system", "/run/systemd/system"):
        result = target.run(
            "find", target.path(directory), "-mindepth", "2", "-maxdepth", "2", "-name", unit,
            "(", "-path", "*.wants/*", "-o", "-path", "*.requires/*", "-o", "-path", "*.upholds/*", ")",
            "-printf", "%P\\n",
        )
        if result.rc != 0 and "No such file" not in result.stderr:
            raise TargetError(f"cannot list {target.path(directory)} on {target.name}: {result.stderr.strip()}")
        found += [f"{directory}/{line}" for line in result.stdout.splitlines() if line]
    return found


def active_state(target: Target, unit: str) -> str:
    """Return the unit's ActiveState from the running systemd (active, inactive, failed, ...)."""
    result = target.run("systemctl", "show", "-p", "ActiveState", "--value", "--", unit)
    state = result.stdout.strip()
    if result.rc != 0 or not state:
        raise TargetError(f"systemctl show -p ActiveState {unit} failed on {target.name}: {result.stderr.strip()}")
    return state


def own_dropins(dropin_paths: tuple[str, ...], unit: str) -> list[str]:
    """Return the drop-ins from ``<unit>.d`` directories, leaving out type-wide and prefix ones.

    A ``service.d`` or ``a-.service.d`` drop-in applies to other units too,
    so it is not part of this unit's own files.
    """
    return [path for path in dropin_paths if posixpath.basename(posixpath.dirname(path)) == f"{unit}.d"]


def unit_file_copies(target: Target, unit: str) -> list[str]:
    """Return every ``<dir>/<unit>`` in the search path, leaving out links to /dev/null (masks)."""
    copies = []
    for directory in SEARCH_PATH:
        path = f"{directory}/{unit}"
        link = _read_link(target, path)
        if link == "/dev/null":
            continue
        if link is not None or target.file_state(path).exists:
            copies.append(path)
    return copies
