"""The gateway's configuration files compared by meaning with what Consul stores, and rendered from it.

The configuration directory keeps the inputs of the documented commands:
``policies.json`` (``consul acl policy create -rules @policies.json``),
``carbonio-files-db-external.json`` (the body of ``PUT /v1/catalog/register``)
and ``gateway-config.hcl`` (``consul config write``). Each is compared the way
Consul reads it, so a file written in another spelling or key order still
matches, and each can be rendered again from the live Consul object.
"""

from __future__ import annotations

import json
from typing import Any

import hcl

from mesh_compliance.acl_rules import Rules, RulesError


class ConfigFileError(ValueError):
    """A configuration file does not parse or has a shape Consul would reject."""


# -- policies.json -------------------------------------------------------------

def policy_differences(file_rules: Rules, consul_rules: Rules) -> list[str]:
    """Describe each grant that one rule set gives and the other does not."""
    differences = [f"only the file grants {line}" for line in file_rules.beyond(consul_rules)]
    differences += [f"only Consul grants {line}" for line in consul_rules.beyond(file_rules)]
    return differences


def parse_policy_file(text: str) -> Rules:
    try:
        return Rules.parse(text)
    except RulesError as exc:
        raise ConfigFileError(str(exc)) from exc


def policy_file_text(rules_text: str) -> str:
    """Return policy rules in the documented JSON form; HCL rules are converted."""
    try:
        data = json.loads(rules_text)
    except json.JSONDecodeError:
        try:
            data = hcl.loads(rules_text)
        except ValueError as exc:
            raise ConfigFileError(f"the rules Consul stores do not parse as HCL or JSON: {exc}") from exc
    return json.dumps(data, indent=2) + "\n"


# -- carbonio-files-db-external.json -----------------------------------------------

def registration_from_file(text: str) -> dict[str, Any]:
    """Return the compared fields of a catalog registration body.

    Consul decodes the body with Go's encoding/json, which matches field names
    case-insensitively, so ``node`` counts as ``Node``.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError("the registration must be a JSON object")

    service = _get(data, "Service") or {}
    if not isinstance(service, dict):
        raise ConfigFileError("Service must be a JSON object")
    return _registration_fields(
        node=_get(data, "Node"), address=_get(data, "Address"), meta=_get(data, "NodeMeta"),
        service_id=_get(service, "ID"), name=_get(service, "Service"), port=_get(service, "Port"),
        service_address=_get(service, "Address"),
    )


def catalog_registration(consul, site, service_id: str | None = None) -> dict | None:
    """Return the catalog element of the external service on its node.

    When the node has several instances, the one with ``service_id`` is
    returned first, then the one with the site's service ID.
    """
    service = site.external_service
    entries = [entry for entry in consul.catalog_service(service.name) if entry.get("Node") == service.node]
    for preferred in (service_id, service.id):
        for entry in entries:
            if preferred and entry.get("ServiceID") == preferred:
                return entry
    return entries[0] if entries else None


def registration_from_catalog(entry: dict) -> dict[str, Any]:
    """Return the compared fields of one element of ``GET /v1/catalog/service/:name``."""
    return _registration_fields(
        node=entry.get("Node"), address=entry.get("Address"), meta=entry.get("NodeMeta"),
        service_id=entry.get("ServiceID"), name=entry.get("ServiceName"), port=entry.get("ServicePort"),
        service_address=entry.get("ServiceAddress"),
    )


def _registration_fields(*, node, address, meta, service_id, name, port, service_address) -> dict[str, Any]:
    fields = {
        "Node": node,
        "Address": address,
        "NodeMeta": meta or {},
        "Service.ID": service_id,
        "Service.Service": name,
        "Service.Port": port,
    }
    # Consul routes to the service address when one is set, so it is compared
    # whenever either side has one.
    if service_address:
        fields["Service.Address"] = service_address
    return fields


def registration_file_text(entry: dict) -> str:
    """Return the documented registration file for a catalog element."""
    service = {"ID": entry.get("ServiceID"), "Service": entry.get("ServiceName"), "Port": entry.get("ServicePort")}
    if entry.get("ServiceAddress"):
        service["Address"] = entry["ServiceAddress"]
    body = {
        "Node": entry.get("Node"),
        "Address": entry.get("Address"),
        "NodeMeta": entry.get("NodeMeta") or {},
        "Service": service,
    }
    return json.dumps(body, indent=2) + "\n"


def _get(data: dict, name: str) -> Any:
    for key, value in data.items():
        if key.lower() == name.lower():
            return value
    return None


# -- gateway-config.hcl ------------------------------------------------------------

# Consul decodes config entries with case-insensitive field names and a few
# snake_case aliases (ca_file -> CAFile); lower case without underscores
# covers both. These are the documented spellings for messages and output.
CANONICAL_KEYS = {
    "kind": "Kind",
    "name": "Name",
    "meta": "Meta",
    "services": "Services",
    "namespace": "Namespace",
    "partition": "Partition",
    "cafile": "CAFile",
    "certfile": "CertFile",
    "keyfile": "KeyFile",
    "sni": "SNI",
}
ENTRY_KEYS = ("Kind", "Name", "Meta", "Services")
SERVICE_KEY_ORDER = ("Name", "Namespace", "Partition", "CAFile", "CertFile", "KeyFile", "SNI")


def linked_item(entry: dict | None, service: str) -> dict | None:
    """Return the entry's item for ``service``, else its wildcard item, which then applies to it."""
    items = (entry or {}).get("Services") or []
    exact = [item for item in items if item.get("Name") == service]
    wildcard = [item for item in items if item.get("Name") == "*"]
    return (exact or wildcard or [None])[0]


def parse_entry_file(text: str) -> dict[str, Any]:
    """Parse a config entry file (HCL v1 or JSON) as ``consul config write`` does."""
    try:
        data = hcl.loads(text)
    except ValueError as exc:
        raise ConfigFileError(f"does not parse as HCL: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError("the entry must be an object at the top level")
    return canonical_entry(data)


def canonical_entry(data: dict) -> dict[str, Any]:
    """Return an entry with documented key names and without empty or server-side fields."""
    entry = {}
    for key, value in data.items():
        name = _canonical(key)
        if name not in ENTRY_KEYS or _empty(value):
            continue
        entry[name] = _services(value) if name == "Services" else value
    return entry


def _services(value: Any) -> list[dict[str, Any]]:
    # An HCL block (services { ... }) decodes to a map; repeated blocks to a list.
    items = value if isinstance(value, list) else [value]
    services = []
    for item in items:
        if not isinstance(item, dict):
            raise ConfigFileError(f"each item of Services must be an object, got {item!r}")
        services.append({_canonical(key): field for key, field in item.items() if not _empty(field)})
    return services


def _canonical(key: str) -> str:
    return CANONICAL_KEYS.get(key.lower().replace("_", ""), key)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def entry_differences(file_entry: dict[str, Any], consul_entry: dict[str, Any]) -> list[str]:
    """Name each field that differs between two canonical entries, with both values."""
    differences = []
    for key in ("Kind", "Name", "Meta"):
        if file_entry.get(key) != consul_entry.get(key):
            differences.append(_difference(key, file_entry.get(key), consul_entry.get(key)))

    file_services = _by_name(file_entry.get("Services") or [])
    consul_services = _by_name(consul_entry.get("Services") or [])
    for name in sorted(set(file_services) | set(consul_services)):
        ours, theirs = file_services.get(name), consul_services.get(name)
        if ours is None or theirs is None:
            differences.append(f"Services[{name}]: linked only in {'the file' if ours else 'Consul'}")
            continue
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                differences.append(_difference(f"Services[{name}].{key}", ours.get(key), theirs.get(key)))
    return differences


def _by_name(services: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # NOTE: Consul rejects a service named twice, so a later duplicate in
    # the file simply replaces the earlier one here.
    return {str(service.get("Name")): service for service in services}


def _difference(field: str, in_file: Any, in_consul: Any) -> str:
    return f"{field}: file {_shown(in_file)}, Consul {_shown(in_consul)}"


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value, sort_keys=True)


def entry_file_text(entry: dict) -> str:
    """Render a config entry as the documented HCL file."""
    canonical = canonical_entry(entry)
    lines = [f"{key} = {_hcl_value(canonical[key], 0)}" for key in ("Kind", "Name", "Meta") if key in canonical]
    services = [_ordered_service(service) for service in canonical.get("Services", [])]
    lines.append(f"Services = {_hcl_value(services, 0)}")
    return "\n".join(lines) + "\n"


def _ordered_service(service: dict[str, Any]) -> dict[str, Any]:
    known = [key for key in SERVICE_KEY_ORDER if key in service]
    return {key: service[key] for key in known + sorted(set(service) - set(known))}


def _hcl_value(value: Any, depth: int) -> str:
    indent, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        # A JSON string literal is a valid HCL v1 string for this text.
        return json.dumps(value)
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{inner}{_hcl_value(item, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{_hcl_key(key)} = {_hcl_value(item, depth + 1)}" for key, item in value.items()]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    raise ConfigFileError(f"cannot write {value!r} as HCL")


def _hcl_key(key: str) -> str:
    return key if key.replace("_", "").isalnum() and not key[0].isdigit() else json.dumps(key)
