"""Endpoints under /v1/agent and /v1/status."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import agent, catalog
from .decoding import BOOL, INT, OBJECT, STRING, STRING_MAP, ListOf, Struct
from .errors import ApiError
from .filters import apply_filter
from .request import Request, Response
from .routing import Router
from .state import Store

# NOTE: Check and Checks are accepted as free-form objects; Consul checks their
# fields strictly and also accepts snake_case spellings of service fields.
SERVICE_DEFINITION_SPEC = Struct(
    "ServiceDefinition",
    {
        "ID": STRING,
        "Name": STRING,
        "Tags": ListOf(STRING),
        "Address": STRING,
        "TaggedAddresses": OBJECT,
        "Meta": STRING_MAP,
        "Port": INT,
        "SocketPath": STRING,
        "Kind": STRING,
        "Proxy": OBJECT,
        "Connect": OBJECT,
        "Check": OBJECT,
        "Checks": ListOf(OBJECT),
        "EnableTagOverride": BOOL,
        "Weights": OBJECT,
        "Token": STRING,
        "Locality": OBJECT,
    },
)


def agent_self(request: Request) -> Any:
    settings = request.settings
    request.require("agent", settings.node_name, "read")
    member = request.store.members[0]
    return {
        "Config": {
            "Datacenter": settings.datacenter,
            "PrimaryDatacenter": settings.datacenter,
            "NodeName": settings.node_name,
            "NodeID": "",
            "Revision": "lab",
            "Server": True,
            "Version": str(settings.version),
            "BuildDate": "1970-01-01T00:00:01Z",
        },
        "DebugConfig": {"ACLsEnabled": settings.acl_enabled, "ACLDefaultPolicy": settings.default_policy},
        "Coord": None,
        "Member": member,
        "Stats": {},
        "Meta": {"consul-network-segment": ""},
    }


def members(request: Request) -> Any:
    return request.readable(list(request.store.members), "node", lambda member: member["Name"])


def register_service(request: Request) -> Any:
    fields = request.decode_body(SERVICE_DEFINITION_SPEC, "Request decode failed")
    name = fields.get("Name", "")
    if not name:
        raise ApiError(400, "Missing service name")
    request.require("service", name, "write")
    store = request.store
    node_name = request.settings.node_name
    service = {key: value for key, value in fields.items() if key not in ("Name", "Check", "Checks", "Token")}
    service["ID"] = fields.get("ID") or name
    service["Service"] = name
    if service.get("Address") and catalog.is_invalid_service_address(service["Address"]):
        raise ApiError(400, f"Invalid Service Address: {service['Address']}")
    _drop_service_checks(store, node_name, service["ID"])
    store.agent_services[service["ID"]] = service
    catalog.put_service(store, node_name, service)
    definitions = list(fields.get("Checks", []))
    if fields.get("Check"):
        definitions.insert(0, fields["Check"])
    for position, definition in enumerate(definitions, start=1):
        catalog.put_check(store, _check_from_definition(node_name, service, definition, position, len(definitions)))
    return Response(raw=b"", content_type="text/plain")


def _drop_service_checks(store: Store, node_name: str, service_id: str) -> None:
    for key, check in list(store.checks.items()):
        if key[0] == node_name and check.get("ServiceID") == service_id:
            del store.checks[key]


def _field(definition: dict[str, Any], name: str, default: Any = None) -> Any:
    """Read a check definition field case-insensitively."""
    for key, value in definition.items():
        if key.lower() == name.lower():
            return value
    return default


def _check_from_definition(
    node_name: str, service: dict[str, Any], definition: dict[str, Any], position: int, count: int
) -> dict[str, Any]:
    default_id = f"service:{service['ID']}" if count == 1 else f"service:{service['ID']}:{position}"
    check_type = next((kind.lower() for kind in ("TCP", "HTTP", "TTL", "GRPC", "UDP") if _field(definition, kind)), "")
    # NOTE: checks are recorded but never executed; a check without Status stays critical.
    return {
        "Node": node_name,
        "CheckID": _field(definition, "CheckID") or _field(definition, "ID") or default_id,
        "Name": _field(definition, "Name") or f"Service '{service['Service']}' check",
        "Status": _field(definition, "Status") or "critical",
        "Notes": _field(definition, "Notes", ""),
        "ServiceID": service["ID"],
        "ServiceName": service["Service"],
        "ServiceTags": service.get("Tags") or [],
        "Type": check_type,
        "Interval": _field(definition, "Interval", ""),
        "Timeout": _field(definition, "Timeout", ""),
    }


def deregister_service(request: Request, service_id: str) -> Any:
    store = request.store
    if request.settings.acl_enabled:
        request.token()
    service = store.agent_services.get(service_id)
    if service is None:
        raise ApiError(
            404, f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.'
        )
    request.require("service", service["Service"], "write")
    del store.agent_services[service_id]
    catalog.delete_service(store, request.settings.node_name, service_id)
    return Response(raw=b"", content_type="text/plain")


def list_services(request: Request) -> Any:
    views = [agent.agent_service_view(request.store, service) for _, service in sorted(request.store.agent_services.items())]
    views = request.readable(views, "service", lambda view: view["Service"])
    views = apply_filter(views, request.param("filter"))
    return {view["ID"]: view for view in views}


def read_service(request: Request, service_id: str) -> Any:
    if request.settings.acl_enabled:
        request.token()
    service = request.store.agent_services.get(service_id)
    if service is None:
        raise ApiError(404, f"unknown service ID: {service_id}")
    request.require("service", service["Service"], "read")
    view = agent.agent_service_view(request.store, service)
    content_hash = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:16]
    view["ContentHash"] = content_hash
    return Response(body=view, headers={"X-Consul-ContentHash": content_hash})


def status_leader(request: Request) -> Any:
    return agent.SERVER_RPC_ADDRESS


def status_peers(request: Request) -> Any:
    return [agent.SERVER_RPC_ADDRESS]


def register_routes(router: Router) -> None:
    router.add(r"/v1/agent/self", {"GET": agent_self})
    router.add(r"/v1/agent/members", {"GET": members})
    router.add(r"/v1/agent/service/register", {"PUT": register_service})
    router.add(r"/v1/agent/service/deregister/(?P<service_id>[^/]+)", {"PUT": deregister_service})
    router.add(r"/v1/agent/services", {"GET": list_services})
    router.add(r"/v1/agent/service/(?P<service_id>[^/]+)", {"GET": read_service})
    router.add(r"/v1/status/leader", {"GET": status_leader})
    router.add(r"/v1/status/peers", {"GET": status_peers})
