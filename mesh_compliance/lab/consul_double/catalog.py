"""Catalog records (nodes, services, checks) and their JSON views."""

from __future__ import annotations

import ipaddress
from typing import Any

from .decoding import BOOL, INT, OBJECT, STRING, STRING_MAP, ListOf, Struct
from .state import Store

SERVICE_SPEC = Struct(
    "NodeService",
    {
        "ID": STRING,
        "Service": STRING,
        "Tags": ListOf(STRING),
        "Address": STRING,
        "TaggedAddresses": OBJECT,
        "Meta": STRING_MAP,
        "Port": INT,
        "SocketPath": STRING,
        "Weights": OBJECT,
        "EnableTagOverride": BOOL,
        "Kind": STRING,
        "Proxy": OBJECT,
        "Connect": OBJECT,
        "LocallyRegisteredAsSidecar": BOOL,
        "Locality": OBJECT,
        "PeerName": STRING,
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)
CHECK_SPEC = Struct(
    "HealthCheck",
    {
        "Node": STRING,
        "CheckID": STRING,
        "Name": STRING,
        "Status": STRING,
        "Notes": STRING,
        "Output": STRING,
        "ServiceID": STRING,
        "ServiceName": STRING,
        "ServiceTags": ListOf(STRING),
        "Type": STRING,
        "Interval": STRING,
        "Timeout": STRING,
        "ExposedPort": INT,
        "Definition": OBJECT,
        "PeerName": STRING,
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)
REGISTER_SPEC = Struct(
    "RegisterRequest",
    {
        "Datacenter": STRING,
        "ID": STRING,
        "Node": STRING,
        "Address": STRING,
        "TaggedAddresses": STRING_MAP,
        "NodeMeta": STRING_MAP,
        "Service": SERVICE_SPEC,
        "Check": CHECK_SPEC,
        "Checks": ListOf(CHECK_SPEC),
        "SkipNodeUpdate": BOOL,
        "Token": STRING,
        "Locality": OBJECT,
        "PeerName": STRING,
    },
)
DEREGISTER_SPEC = Struct(
    "DeregisterRequest",
    {"Datacenter": STRING, "Node": STRING, "ServiceID": STRING, "CheckID": STRING, "Token": STRING, "PeerName": STRING},
)
DEFAULT_WEIGHTS = {"Passing": 1, "Warning": 1}


def is_invalid_service_address(address: str) -> bool:
    """Return whether a service address is unspecified (0.0.0.0 or ::), which Consul rejects."""
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def node_changed(existing: dict[str, Any], node: dict[str, Any]) -> bool:
    keys = ("ID", "Address", "Datacenter", "TaggedAddresses", "Meta")
    return any((existing.get(key) or None) != (node.get(key) or None) for key in keys)


def put_node(store: Store, node: dict[str, Any]) -> None:
    """Insert or overwrite a node record, keeping CreateIndex and advancing ModifyIndex on change."""
    existing = store.nodes.get(node["Node"])
    if existing is not None and not node_changed(existing, node):
        return
    index = store.next_index()
    node["CreateIndex"] = existing["CreateIndex"] if existing else index
    node["ModifyIndex"] = index
    store.nodes[node["Node"]] = node


def put_service(store: Store, node_name: str, service: dict[str, Any]) -> None:
    """Insert or fully replace a service on a node."""
    key = (node_name, service["ID"])
    existing = store.services.get(key)
    index = store.next_index()
    record = dict(service)
    record["CreateIndex"] = existing["CreateIndex"] if existing else index
    record["ModifyIndex"] = index
    store.services[key] = record


def put_check(store: Store, check: dict[str, Any]) -> None:
    key = (check["Node"], check["CheckID"])
    existing = store.checks.get(key)
    index = store.next_index()
    record = dict(check)
    record["CreateIndex"] = existing["CreateIndex"] if existing else index
    record["ModifyIndex"] = index
    store.checks[key] = record


def delete_node(store: Store, node_name: str) -> None:
    store.nodes.pop(node_name, None)
    for key in [key for key in store.services if key[0] == node_name]:
        del store.services[key]
    for key in [key for key in store.checks if key[0] == node_name]:
        del store.checks[key]
    store.next_index()


def delete_service(store: Store, node_name: str, service_id: str) -> None:
    store.services.pop((node_name, service_id), None)
    for key, check in list(store.checks.items()):
        if key[0] == node_name and check.get("ServiceID") == service_id:
            del store.checks[key]
    store.next_index()


def delete_check(store: Store, node_name: str, check_id: str) -> None:
    store.checks.pop((node_name, check_id), None)
    store.next_index()


def node_view(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "ID": node.get("ID", ""),
        "Node": node["Node"],
        "Address": node.get("Address", ""),
        "Datacenter": node.get("Datacenter", ""),
        "TaggedAddresses": node.get("TaggedAddresses") or None,
        "Meta": node.get("Meta") or None,
        "CreateIndex": node["CreateIndex"],
        "ModifyIndex": node["ModifyIndex"],
    }


def service_view(service: dict[str, Any]) -> dict[str, Any]:
    """Return a service as /v1/catalog/node and /v1/health list it."""
    return {
        "ID": service["ID"],
        "Service": service["Service"],
        "Tags": service.get("Tags") or [],
        "Address": service.get("Address", ""),
        "TaggedAddresses": service.get("TaggedAddresses") or None,
        "Meta": service.get("Meta") or None,
        "Port": service.get("Port", 0),
        "Weights": service.get("Weights") or DEFAULT_WEIGHTS,
        "EnableTagOverride": service.get("EnableTagOverride", False),
        "Kind": service.get("Kind", ""),
        "Proxy": service.get("Proxy") or {"MeshGateway": {}, "Expose": {}},
        "Connect": service.get("Connect") or {},
        "CreateIndex": service["CreateIndex"],
        "ModifyIndex": service["ModifyIndex"],
    }


def catalog_service_entry(node: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    """Return one element of GET /v1/catalog/service/:name."""
    return {
        "ID": node.get("ID", ""),
        "Node": node["Node"],
        "Address": node.get("Address", ""),
        "Datacenter": node.get("Datacenter", ""),
        "TaggedAddresses": node.get("TaggedAddresses") or None,
        "NodeMeta": node.get("Meta") or None,
        "ServiceKind": service.get("Kind", ""),
        "ServiceID": service["ID"],
        "ServiceName": service["Service"],
        "ServiceTags": service.get("Tags") or [],
        "ServiceAddress": service.get("Address", ""),
        "ServiceTaggedAddresses": service.get("TaggedAddresses") or None,
        "ServiceWeights": service.get("Weights") or DEFAULT_WEIGHTS,
        "ServiceMeta": service.get("Meta") or {},
        "ServicePort": service.get("Port", 0),
        "ServiceSocketPath": service.get("SocketPath", ""),
        "ServiceEnableTagOverride": service.get("EnableTagOverride", False),
        "ServiceProxy": service.get("Proxy") or {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": service.get("Connect") or {},
        "CreateIndex": service["CreateIndex"],
        "ModifyIndex": service["ModifyIndex"],
    }


def check_view(check: dict[str, Any]) -> dict[str, Any]:
    return {
        "Node": check["Node"],
        "CheckID": check["CheckID"],
        "Name": check.get("Name", ""),
        "Status": check.get("Status", "critical"),
        "Notes": check.get("Notes", ""),
        "Output": check.get("Output", ""),
        "ServiceID": check.get("ServiceID", ""),
        "ServiceName": check.get("ServiceName", ""),
        "ServiceTags": check.get("ServiceTags") or [],
        "Type": check.get("Type", ""),
        "Interval": check.get("Interval", ""),
        "Timeout": check.get("Timeout", ""),
        "ExposedPort": check.get("ExposedPort", 0),
        "Definition": check.get("Definition") or {},
        "CreateIndex": check["CreateIndex"],
        "ModifyIndex": check["ModifyIndex"],
    }


def services_named(store: Store, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Return (node, service) pairs for every instance of a service, ordered by node and ID."""
    pairs = []
    for (node_name, _), service in sorted(store.services.items()):
        if service["Service"] == name and node_name in store.nodes:
            pairs.append((store.nodes[node_name], service))
    return pairs


def checks_for_service(store: Store, node_name: str, service_id: str) -> list[dict[str, Any]]:
    """Return a service instance's checks plus the node-level checks of its node."""
    return [
        check
        for (check_node, _), check in sorted(store.checks.items())
        if check_node == node_name and check.get("ServiceID", "") in ("", service_id)
    ]
