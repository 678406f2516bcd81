"""Config entries: decoding like Consul's DecodeConfigEntry, validation, ACL rules and views.

Decoding reads the body as a generic map, as mapstructure does: field names match
case-insensitively, a few snake_case aliases map onto fields (for example
`ca_file` onto `CAFile`), and unknown keys are collected and rejected together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, rpc_error
from .request import Request
from .state import Store

TERMINATING_GATEWAY = "terminating-gateway"
SERVICE_DEFAULTS = "service-defaults"
PROXY_DEFAULTS = "proxy-defaults"
SERVICE_INTENTIONS = "service-intentions"


@dataclass(frozen=True)
class EntrySchema:
    """Fields of one config entry struct: canonical name to nested schema (None for free values)."""

    fields: dict[str, Any]
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListSchema:
    item: EntrySchema


_COMMON_FIELDS: dict[str, Any] = {"Kind": None, "Name": None, "Meta": None}
_PROXY_FIELDS: dict[str, Any] = {
    "Mode": None,
    "TransparentProxy": None,
    "MutualTLSMode": None,
    "MeshGateway": None,
    "Expose": None,
    "EnvoyExtensions": None,
}
_PROXY_ALIASES = {
    "transparent_proxy": "TransparentProxy",
    "mutual_tls_mode": "MutualTLSMode",
    "mesh_gateway": "MeshGateway",
    "envoy_extensions": "EnvoyExtensions",
}
_LINKED_SERVICE = EntrySchema(
    {"Name": None, "Namespace": None, "CAFile": None, "CertFile": None, "KeyFile": None, "SNI": None},
    {"ca_file": "CAFile", "cert_file": "CertFile", "key_file": "KeyFile"},
)
_INTENTION_SOURCE = EntrySchema(
    {
        "Name": None,
        "Peer": None,
        "SamenessGroup": None,
        "Action": None,
        "Permissions": None,
        "Precedence": None,
        "Type": None,
        "Description": None,
        "LegacyID": None,
        "LegacyMeta": None,
        "LegacyCreateTime": None,
        "LegacyUpdateTime": None,
    },
    {
        "sameness_group": "SamenessGroup",
        "legacy_id": "LegacyID",
        "legacy_meta": "LegacyMeta",
        "legacy_create_time": "LegacyCreateTime",
        "legacy_update_time": "LegacyUpdateTime",
    },
)
# NOTE: these schemas cover the fields of the four supported kinds in Consul
# 1.15 to 1.21; a field added in a later release is reported as an invalid key.
SCHEMAS: dict[str, EntrySchema] = {
    TERMINATING_GATEWAY: EntrySchema({**_COMMON_FIELDS, "Services": ListSchema(_LINKED_SERVICE)}),
    SERVICE_DEFAULTS: EntrySchema(
        {
            **_COMMON_FIELDS,
            **_PROXY_FIELDS,
            "Protocol": None,
            "ExternalSNI": None,
            "UpstreamConfig": None,
            "Destination": None,
            "MaxInboundConnections": None,
            "LocalConnectTimeoutMs": None,
            "LocalRequestTimeoutMs": None,
            "BalanceInboundConnections": None,
            "RateLimits": None,
        },
        {
            **_PROXY_ALIASES,
            "external_sni": "ExternalSNI",
            "upstream_config": "UpstreamConfig",
            "max_inbound_connections": "MaxInboundConnections",
            "local_connect_timeout_ms": "LocalConnectTimeoutMs",
            "local_request_timeout_ms": "LocalRequestTimeoutMs",
            "balance_inbound_connections": "BalanceInboundConnections",
            "rate_limits": "RateLimits",
        },
    ),
    PROXY_DEFAULTS: EntrySchema(
        {
            **_COMMON_FIELDS,
            **_PROXY_FIELDS,
            "Config": None,
            "AccessLogs": None,
            "FailoverPolicy": None,
            "PrioritizeByLocality": None,
        },
        {
            **_PROXY_ALIASES,
            "access_logs": "AccessLogs",
            "failover_policy": "FailoverPolicy",
            "prioritize_by_locality": "PrioritizeByLocality",
        },
    ),
    SERVICE_INTENTIONS: EntrySchema(
        {**_COMMON_FIELDS, "Sources": ListSchema(_INTENTION_SOURCE), "JWT": None}
    ),
}
# Keys that DecodeConfigEntry accepts without a matching field. Hash is sent by
# newer servers on reads (version unconfirmed), so a read-then-write round trip keeps working.
_TOLERATED_KEYS = {"kind", "createindex", "modifyindex", "hash"}


def check_kind(kind: str) -> None:
    if kind not in SCHEMAS:
        # NOTE: real Consul also supports ingress-gateway, mesh, exported-services and
        # other kinds, but the double rejects them like unknown kinds.
        raise ApiError(400, f"invalid config entry kind: {kind}")


def decode_entry(body: Any) -> dict[str, Any]:
    """Decode a PUT /v1/config body into an entry with canonical field names."""
    if not isinstance(body, dict):
        raise ApiError(400, "Request decoding failed: the body must be a JSON object")
    kind = body.get("Kind", body.get("kind"))
    if not isinstance(kind, str) or not kind:
        raise ApiError(400, "Request decoding failed: Payload does not contain a kind/Kind key at the top level")
    if kind not in SCHEMAS:
        raise ApiError(400, f"Request decoding failed: invalid config entry kind: {kind}")
    unused: list[str] = []
    entry = _decode_map(body, SCHEMAS[kind], "", unused)
    if unused:
        raise ApiError(400, "Request decoding failed: " + _multierror([f'invalid config key "{key}"' for key in unused]))
    entry["Kind"] = kind
    return entry


def _multierror(messages: list[str]) -> str:
    """Format errors the way hashicorp/go-multierror does."""
    noun = "error" if len(messages) == 1 else "errors"
    lines = "".join(f"\t* {message}\n" for message in messages)
    return f"{len(messages)} {noun} occurred:\n{lines}\n"


def _decode_map(data: dict[str, Any], schema: EntrySchema, parent: str, unused: list[str]) -> dict[str, Any]:
    lowered = {name.lower(): name for name in schema.fields}
    aliases = {alias.lower(): name for alias, name in schema.aliases.items()}
    result: dict[str, Any] = {}
    for key, value in data.items():
        canonical = lowered.get(key.lower()) or aliases.get(key.lower())
        if canonical is None:
            tolerated = key.lower() in _TOLERATED_KEYS and not parent
            if not tolerated and not key.lower().endswith(("namespace", "partition")):
                unused.append(f"{parent}{key}")
            continue
        result[canonical] = _decode_value(value, schema.fields[canonical], f"{parent}{key}", unused)
    return result


def _decode_value(value: Any, spec: Any, path: str, unused: list[str]) -> Any:
    if isinstance(spec, ListSchema):
        if not isinstance(value, list):
            raise ApiError(400, f"Request decoding failed: '{path}': source data must be an array or slice")
        return [_decode_value(item, spec.item, f"{path}[{position}]", unused) for position, item in enumerate(value)]
    if isinstance(spec, EntrySchema):
        if not isinstance(value, dict):
            raise ApiError(400, f"Request decoding failed: '{path}' expected a map, got '{type(value).__name__}'")
        return _decode_map(value, spec, f"{path}.", unused)
    return value


def validate_entry(entry: dict[str, Any]) -> None:
    """Raise a 500 RPC error for an entry Consul's Validate would reject."""
    if not entry.get("Name"):
        # NOTE: wording of the blank-name error is not taken from Consul's source.
        raise rpc_error("config entry name is required")
    kind = entry["Kind"]
    if kind == TERMINATING_GATEWAY:
        _validate_terminating_gateway(entry)
    elif kind == PROXY_DEFAULTS and entry["Name"] != "global":
        raise rpc_error(f'invalid name ("{entry["Name"]}"), only "global" is supported')
    elif kind == SERVICE_INTENTIONS:
        _validate_intentions(entry)


def _validate_terminating_gateway(entry: dict[str, Any]) -> None:
    seen: set[str] = set()
    for service in entry.get("Services", []):
        name = service.get("Name", "")
        if not name:
            raise rpc_error("Service name cannot be blank.")
        if service.pop("Namespace", "") == "*":
            raise rpc_error("Wildcard namespace is not supported for terminating gateway services")
        if name in seen:
            raise rpc_error(f'Service "{name}" was specified more than once within a namespace')
        seen.add(name)
        # Newer Consul accepts CAFile alone; CertFile or KeyFile need all three files.
        has_client_cert = bool(service.get("CertFile") or service.get("KeyFile"))
        if has_client_cert and not all(service.get(key) for key in ("CAFile", "CertFile", "KeyFile")):
            raise rpc_error(
                f'Service "{name}" must have a CertFile, CAFile, and KeyFile specified for TLS origination'
            )


def _validate_intentions(entry: dict[str, Any]) -> None:
    # NOTE: only the blank-name and action checks of Consul's intention validation are modelled.
    for position, source in enumerate(entry.get("Sources", [])):
        if not source.get("Name"):
            raise rpc_error(f"Sources[{position}].Name is required")
        action = str(source.get("Action", "")).lower()
        if not source.get("Permissions") and action not in ("allow", "deny"):
            raise rpc_error(f"Sources[{position}].Action must be set to 'allow' or 'deny'")
        if action:
            source["Action"] = action
        source["Type"] = "consul"
        source["Precedence"] = intention_precedence(source["Name"], entry["Name"])


def intention_precedence(source: str, destination: str) -> int:
    """Return Consul CE's intention precedence: exact names beat wildcards, destination first."""
    if destination == "*":
        return 5 if source == "*" else 6
    return 8 if source == "*" else 9


def render_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Return an entry as GET returns it, with unset optional fields omitted."""
    body: dict[str, Any] = {"Kind": entry["Kind"], "Name": entry["Name"]}
    for key, value in entry.items():
        if key in ("Kind", "Name", "CreateIndex", "ModifyIndex"):
            continue
        cleaned = _omit_empty(value)
        if cleaned is not None:
            body[key] = cleaned
    body["CreateIndex"] = entry["CreateIndex"]
    body["ModifyIndex"] = entry["ModifyIndex"]
    return body


def _omit_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: inner for key, item in value.items() if (inner := _omit_empty(item)) is not None} or None
    if isinstance(value, list):
        return [_omit_empty(item) if isinstance(item, dict) else item for item in value]
    if value is None or value is False or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return None
    return value


def can_read(request: Request, kind: str, name: str) -> bool:
    if kind == PROXY_DEFAULTS:
        return True
    if kind == SERVICE_INTENTIONS:
        return request.is_allowed("intention", name, "read")
    return request.is_allowed("service", name, "read")


def require_write(request: Request, kind: str, name: str) -> None:
    """Raise 403 unless the token may write an entry of this kind and name."""
    if kind in (TERMINATING_GATEWAY, PROXY_DEFAULTS):
        # mesh:write, which falls back to operator:write when no mesh rule is set.
        request.require("mesh", "", "write")
    elif kind == SERVICE_INTENTIONS:
        request.require("intention", name, "write")
    else:
        request.require("service", name, "write")


def gateway_services(store: Store, gateway: str) -> list[dict[str, Any]] | None:
    """Derive GET /v1/catalog/gateway-services items from the terminating-gateway entry."""
    entry = store.config_entries.get((TERMINATING_GATEWAY, gateway))
    if entry is None:
        return None
    linked = entry.get("Services", [])
    explicit = {service["Name"] for service in linked if service["Name"] != "*"}
    items = []
    for service in linked:
        if service["Name"] != "*":
            items.append(_gateway_service(entry, service, service["Name"], from_wildcard=False))
            continue
        for name in _catalog_service_names(store) - explicit:
            items.append(_gateway_service(entry, service, name, from_wildcard=True))
    return items


def _catalog_service_names(store: Store) -> set[str]:
    return {service["Service"] for service in store.services.values() if not service.get("Kind")}


def _gateway_service(entry: dict[str, Any], linked: dict[str, Any], name: str, from_wildcard: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "Gateway": {"Name": entry["Name"]},
        "Service": {"Name": name},
        "GatewayKind": TERMINATING_GATEWAY,
    }
    for key in ("CAFile", "CertFile", "KeyFile", "SNI"):
        if linked.get(key):
            item[key] = linked[key]
    if from_wildcard:
        item["FromWildcard"] = True
    item["ServiceKind"] = "service"
    item["CreateIndex"] = entry["CreateIndex"]
    item["ModifyIndex"] = entry["ModifyIndex"]
    return item
