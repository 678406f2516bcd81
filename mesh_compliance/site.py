"""Site model: the expected end state, read from a TOML site file.

Every value has the documented default from the Carbonio admin guide, so an
empty site file describes the documented setup. Secrets never appear in the
file itself: a secret field contains ``{ env = "NAME" }`` or ``{ file = "PATH" }``.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SiteError(ValueError):
    """The site file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class SecretRef:
    """Reference to a secret in an environment variable or a file."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        return f"file {self.file}"

    def read(self) -> str:
        """Return the secret with surrounding whitespace removed.

        Raises SiteError when the variable is unset or the file is unreadable,
        without ever including the secret in the message.
        """
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise SiteError(f"environment variable {self.env} is not set; export it or change the site file")
            return value.strip()

        try:
            return Path(self.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SiteError(f"cannot read secret file {self.file}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Gateway:
    service: str = "carbonio-gateway"
    user: str = "carbonio-gateway"
    group: str = "carbonio-gateway"
    config_dir: str = "/etc/carbonio/gateway/service-discover"
    token_file: str = "/etc/carbonio/gateway/service-discover/token"
    unit: str = "carbonio-gateway.service"
    unit_path: str = "/lib/systemd/system/carbonio-gateway.service"
    consul_binary: str = "/usr/bin/consul"
    policies_file: str = "policies.json"
    registration_file: str = "carbonio-files-db-external.json"
    config_entry_file: str = "gateway-config.hcl"

    def config_path(self, name: str) -> str:
        """Return the path of a file of the configuration directory."""
        return posixpath.join(self.config_dir, name)


@dataclass(frozen=True)
class Acl:
    policy: str = "carbonio-gateway-policy"
    policy_description: str = "Policy for carbonio-gateway"
    token_description: str = "Token for carbonio-gateway"
    kv_prefix: str = "carbonio-gateway/"


@dataclass(frozen=True)
class ExternalService:
    name: str = "carbonio-files-db"
    id: str = "carbonio-gateway"
    node: str = "external-files-db-node"
    address: str = "external-database.example.com"
    port: int = 5432


@dataclass(frozen=True)
class GatewayEntry:
    ca_file: str = ""
    sni: str = ""


@dataclass(frozen=True)
class KvValues:
    """Values the KV fixer writes. Absent values are never invented."""

    db_name: str = ""
    db_username: str = ""
    db_password: SecretRef | None = None


@dataclass(frozen=True)
class Kv:
    layout: str = "flat"
    prefix: str = "carbonio-files"
    values: KvValues = field(default_factory=KvValues)

    def key(self, name: str) -> str:
        """Return the full KV key of ``name`` (db-name, db-username or db-password)."""
        if self.layout == "nested":
            return f"{self.prefix}/database/credentials/{name}"
        return f"{self.prefix}/{name}"


@dataclass(frozen=True)
class DatabaseAdmin:
    user: str = "postgres"
    password: SecretRef | None = None
    database: str = "postgres"


@dataclass(frozen=True)
class Database:
    host: str = ""
    port: int = 0
    # Carbonio Files connects with sslmode=disable, so the probe does the same
    # by default: a server that insists on TLS would reject Files as well.
    sslmode: str = "disable"
    connect_timeout: int = 5
    admin: DatabaseAdmin | None = None


@dataclass(frozen=True)
class Intention:
    """The downstream service that must reach the DB service through the gateway."""

    source: str = "carbonio-files"


@dataclass(frozen=True)
class NodeLayout:
    """Carbonio paths on every node."""

    service_config_dir: str = "/etc/zextras/service-discover"
    pending_setups_dir: str = "/etc/zextras/pending-setups.d"


@dataclass(frozen=True)
class Decommission:
    """Extra requirements of the decommissioned profile."""

    unlink_tokens: bool = False


@dataclass(frozen=True)
class Packages:
    absent: tuple[str, ...] = ("carbonio-files-db",)
    manager: str = "auto"
    files_nodes: tuple[str, ...] = ("carbonio-files-ce", "carbonio-storages-ce", "carbonio-user-management")
    proxy_nodes: tuple[str, ...] = ("carbonio-files-ui",)


@dataclass(frozen=True)
class Node:
    """One cluster node: its roles and how testinfra reaches it."""

    name: str = ""
    roles: tuple[str, ...] = ()
    connection: str = "local://"
    root: str = ""            # the node's filesystem is mounted here (overrides --root for this node)


@dataclass(frozen=True)
class Fleet:
    ssh_config: str = ""
    ansible_inventory: str = ""   # an INI or YAML inventory whose groups name the nodes' roles


@dataclass(frozen=True)
class Site:
    profile: str = "deployed"
    gateway: Gateway = field(default_factory=Gateway)
    acl: Acl = field(default_factory=Acl)
    external_service: ExternalService = field(default_factory=ExternalService)
    gateway_entry: GatewayEntry = field(default_factory=GatewayEntry)
    kv: Kv = field(default_factory=Kv)
    database: Database = field(default_factory=Database)
    packages: Packages = field(default_factory=Packages)
    intention: Intention = field(default_factory=Intention)
    node: NodeLayout = field(default_factory=NodeLayout)
    decommission: Decommission = field(default_factory=Decommission)
    nodes: tuple[Node, ...] = ()
    fleet: Fleet = field(default_factory=Fleet)
    source: str = "<defaults>"

    @property
    def db_host(self) -> str:
        return self.database.host or self.external_service.address

    @property
    def db_port(self) -> int:
        return self.database.port or self.external_service.port


CHOICES = {
    "profile": ("deployed", "decommissioned"),
    "kv.layout": ("flat", "nested"),
    "database.sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "packages.manager": ("auto", "dpkg", "rpm"),
}


def load_site(path: str | os.PathLike | None) -> Site:
    """Read and validate a site file; ``None`` gives the documented defaults."""
    if path is None:
        return Site()

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SiteError(f"site file {path} not found; pass an existing file with --site") from exc
    except OSError as exc:
        raise SiteError(f"cannot read site file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"site file {path} is not valid TOML: {exc}") from exc

    site = _build(Site, data, prefix="")
    return dataclasses.replace(site, source=str(path))


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise SiteError(f"{prefix.rstrip('.') or 'site file'} must be a table")

    # Site.source records where the site was read from; it is not a key.
    fields = {f.name: f for f in dataclasses.fields(cls) if not (cls is Site and f.name == "source")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise SiteError(f"unknown key {prefix}{unknown[0]}; allowed keys here: {allowed}")

    values = {}
    for name, value in data.items():
        values[name] = _convert(fields[name], value, f"{prefix}{name}")
    return cls(**values)


def _convert(fld: dataclasses.Field, value: Any, key: str) -> Any:
    kind = fld.type
    if kind in ("SecretRef | None",):
        return _secret(value, key)
    if dataclasses.is_dataclass(_resolve(kind)):
        return _build(_resolve(kind), value, prefix=f"{key}.")
    if kind == "tuple[Node, ...]":
        return _nodes(value, key)
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise SiteError(f"{key} must be a list of strings, got {value!r}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise SiteError(f"{key} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SiteError(f"{key} must be an integer, got {value!r}")
        if value < 0 or (key.endswith("port") and value > 65535):
            raise SiteError(f"{key} is out of range: {value}")
        return value
    if not isinstance(value, str):
        raise SiteError(f"{key} must be a string, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise SiteError(f"{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return value


NODE_ROLES = ("gateway", "files", "proxy", "database", "other")
# testinfra 10's connection types (testinfra.backend.BACKENDS).
CONNECTION_TYPES = ("local", "ssh", "safe-ssh", "paramiko", "salt", "docker", "podman", "ansible", "kubectl",
                    "winrm", "lxc", "openshift", "chroot")


def _nodes(value: Any, key: str) -> tuple[Node, ...]:
    if not isinstance(value, list):
        raise SiteError(f"{key} must be a list of [[{key}]] tables")
    nodes = tuple(_build(Node, item, prefix=f"{key}[{index}].") for index, item in enumerate(value))
    names = [node.name for node in nodes]
    for index, node in enumerate(nodes):
        if not node.name:
            raise SiteError(f"{key}[{index}].name is missing; give every node a name")
        if names.count(node.name) > 1:
            raise SiteError(f"{key}[{index}].name {node.name!r} is used twice; node names must be unique")
        unknown = [role for role in node.roles if role not in NODE_ROLES]
        if not node.roles or unknown:
            raise SiteError(f"{key}[{index}].roles must list roles from {', '.join(NODE_ROLES)}, got {list(node.roles)}")
        scheme, separator, _ = node.connection.partition("://")
        if not separator or scheme not in CONNECTION_TYPES:
            raise SiteError(f"{key}[{index}].connection {node.connection!r} of node {node.name} is not a testinfra "
                            f"connection string; write TYPE://[user@]host[:port] with TYPE one of "
                            f"{', '.join(CONNECTION_TYPES)}, for example ssh://root@{node.name}")
    return nodes


def _resolve(kind: str) -> Any:
    name = kind.removesuffix(" | None")
    return globals().get(name)


def _secret(value: Any, key: str) -> SecretRef:
    if isinstance(value, str):
        raise SiteError(
            f"{key} must not hold the secret itself; write {key} = {{ env = \"VAR\" }} "
            f"or {key} = {{ file = \"/path\" }}"
        )
    if not isinstance(value, dict) or set(value) not in ({"env"}, {"file"}):
        raise SiteError(f"{key} must be a table with exactly one of the keys env or file")
    (source, ref), = value.items()
    if not isinstance(ref, str) or not ref:
        raise SiteError(f"{key}.{source} must be a non-empty string")
    return SecretRef(**{source: ref})
