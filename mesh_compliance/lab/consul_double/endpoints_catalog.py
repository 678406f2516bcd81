"""Endpoints under /v1/catalog."""

from __future__ import annotations

from typing import Any

from . import catalog
from .config_entries import gateway_services
from .errors import rpc_error
from .filters import apply_filter
from .policies import is_uuid
from .request import Request
from .routing import Router

# NOTE: the double decodes register and deregister bodies strictly on every
# version; older Consul releases decoded them loosely and ignored unknown keys.
_DECODE_PREFIX = "Request decode failed"


def register(request: Request) -> Any:
    fields = request.decode_body(catalog.REGISTER_SPEC, _DECODE_PREFIX)
    node_name = fields.get("Node", "")
    if not node_name:
        raise rpc_error("Must provide node")
    skip_node_update = fields.get("SkipNodeUpdate", False)
    if not fields.get("Address") and not skip_node_update:
        raise rpc_error("Must provide address if SkipNodeUpdate is not set")
    if fields.get("ID") and not is_uuid(fields["ID"]):
        raise rpc_error("Bad node ID: uuid string is wrong length")
    service = _normalise_service(fields.get("Service"))
    checks = _normalise_checks(fields, node_name)
    node = {
        "ID": fields.get("ID", ""),
        "Node": node_name,
        "Address": fields.get("Address", ""),
        "Datacenter": request.settings.datacenter,
        "TaggedAddresses": fields.get("TaggedAddresses") or None,
        "Meta": fields.get("NodeMeta") or None,
    }
    _vet_register(request, node, skip_node_update, service, checks)
    _apply_register(request, node, skip_node_update, service, checks)
    return True


def _normalise_service(service: dict[str, Any] | None) -> dict[str, Any] | None:
    if service is None:
        return None
    if not service.get("ID") and service.get("Service"):
        service["ID"] = service["Service"]
    if service.get("ID") and not service.get("Service"):
        raise rpc_error("Must provide service name (Service.Service) when service ID is provided")
    if not service.get("ID"):
        return None
    if service.get("Address") and catalog.is_invalid_service_address(service["Address"]):
        raise rpc_error("Invalid service address")
    return service


def _normalise_checks(fields: dict[str, Any], node_name: str) -> list[dict[str, Any]]:
    checks = list(fields.get("Checks", []))
    if fields.get("Check"):
        checks.append(fields["Check"])
    for check in checks:
        if not check.get("CheckID"):
            check["CheckID"] = check.get("Name", "")
        check.setdefault("Node", node_name)
        if check["Node"] != node_name:
            raise rpc_error(
                f"Node '{check['Node']}' for check '{check['CheckID']}' "
                f"doesn't match register request node '{node_name}'"
            )
        # NOTE: a check registered without Status starts as critical here; the
        # double never runs check definitions, so the status only changes on re-registration.
        check.setdefault("Status", "critical")
    return checks


def _vet_register(
    request: Request,
    node: dict[str, Any],
    skip_node_update: bool,
    service: dict[str, Any] | None,
    checks: list[dict[str, Any]],
) -> None:
    """Apply the ACL rules of Consul's vetRegisterWithACL."""
    store = request.store
    node_name = node["Node"]
    existing_node = store.nodes.get(node_name)
    if service is not None:
        request.require("service", service["Service"], "write")
        existing_service = store.services.get((node_name, service["ID"]))
        if existing_service is not None and existing_service["Service"] != service["Service"]:
            request.require("service", existing_service["Service"], "write")
    if existing_node is None or (not skip_node_update and catalog.node_changed(existing_node, node)):
        request.require("node", node_name, "write")
    for check in checks:
        service_id = check.get("ServiceID", "")
        if not service_id:
            request.require("node", node_name, "write")
            continue
        if service is not None and service_id == service["ID"]:
            continue
        other = store.services.get((node_name, service_id))
        if other is None:
            raise rpc_error(f"Unknown service ID '{service_id}' for check ID '{check['CheckID']}'")
        request.require("service", other["Service"], "write")


def _apply_register(
    request: Request,
    node: dict[str, Any],
    skip_node_update: bool,
    service: dict[str, Any] | None,
    checks: list[dict[str, Any]],
) -> None:
    store = request.store
    if node["Node"] not in store.nodes or not skip_node_update:
        catalog.put_node(store, node)
    if service is not None:
        catalog.put_service(store, node["Node"], service)
    for check in checks:
        service_id = check.get("ServiceID", "")
        if service_id:
            owner = store.services[(node["Node"], service_id)]
            check["ServiceName"] = owner["Service"]
            check["ServiceTags"] = owner.get("Tags") or []
        catalog.put_check(store, check)


def deregister(request: Request) -> Any:
    fields = request.decode_body(catalog.DEREGISTER_SPEC, _DECODE_PREFIX)
    node_name = fields.get("Node", "")
    if not node_name:
        raise rpc_error("Must provide node")
    store = request.store
    service_id = fields.get("ServiceID", "")
    check_id = fields.get("CheckID", "")
    node_write = request.is_allowed("node", node_name, "write")
    if service_id:
        service = store.services.get((node_name, service_id))
        if not node_write:
            if service is None:
                raise rpc_error(f"Unknown service ID '{service_id}'")
            request.require("service", service["Service"], "write")
        catalog.delete_service(store, node_name, service_id)
    elif check_id:
        check = store.checks.get((node_name, check_id))
        if not node_write:
            if check is None:
                raise rpc_error(f"Unknown check ID '{check_id}'")
            if check.get("ServiceName"):
                request.require("service", check["ServiceName"], "write")
            else:
                request.require("node", node_name, "write")
        catalog.delete_check(store, node_name, check_id)
    else:
        request.require("node", node_name, "write")
        catalog.delete_node(store, node_name)
    return True


def service_instances(request: Request, name: str) -> Any:
    entries = [
        catalog.catalog_service_entry(node, service)
        for node, service in catalog.services_named(request.store, name)
    ]
    tags = request.query.get("tag", [])
    entries = [entry for entry in entries if all(tag in entry["ServiceTags"] for tag in tags)]
    entries = request.filter_allowed(
        entries,
        lambda entry: request.is_allowed("service", entry["ServiceName"], "read")
        and request.is_allowed("node", entry["Node"], "read"),
    )
    return apply_filter(entries, request.param("filter"))


def node_detail(request: Request, node_name: str) -> Any:
    node = request.store.nodes.get(node_name)
    if node is None or not request.is_allowed("node", node_name, "read"):
        if node is not None:
            request.results_filtered = True
        return None
    services = _readable_node_services(request, node_name)
    return {"Node": catalog.node_view(node), "Services": {service["ID"]: service for service in services}}


def node_services(request: Request, node_name: str) -> Any:
    node = request.store.nodes.get(node_name)
    if node is None or not request.is_allowed("node", node_name, "read"):
        # NOTE: Consul's response for a missing node on this endpoint is unconfirmed, so null is assumed.
        return None
    services = _readable_node_services(request, node_name)
    return {"Node": catalog.node_view(node), "Services": apply_filter(services, request.param("filter"))}


def _readable_node_services(request: Request, node_name: str) -> list[dict[str, Any]]:
    services = [
        catalog.service_view(service)
        for (owner, _), service in sorted(request.store.services.items())
        if owner == node_name
    ]
    return request.readable(services, "service", lambda service: service["Service"])


def list_services(request: Request) -> Any:
    tags_by_name: dict[str, list[str]] = {}
    for service in request.store.services.values():
        tags = tags_by_name.setdefault(service["Service"], [])
        tags.extend(tag for tag in service.get("Tags") or [] if tag not in tags)
    names = request.readable(sorted(tags_by_name), "service", lambda name: name)
    return {name: tags_by_name[name] for name in names}


def list_nodes(request: Request) -> Any:
    nodes = [catalog.node_view(node) for _, node in sorted(request.store.nodes.items())]
    nodes = request.readable(nodes, "node", lambda node: node["Node"])
    return apply_filter(nodes, request.param("filter"))


def gateway_services_of(request: Request, gateway: str) -> Any:
    request.require("service", gateway, "read")
    items = gateway_services(request.store, gateway)
    if items is None:
        # NOTE: Consul's handler does not replace a nil list with [], so null is
        # assumed when no terminating-gateway entry exists (unconfirmed).
        return None
    return request.readable(items, "service", lambda item: item["Service"]["Name"])


def register_routes(router: Router) -> None:
    router.add(r"/v1/catalog/register", {"PUT": register})
    router.add(r"/v1/catalog/deregister", {"PUT": deregister})
    router.add(r"/v1/catalog/service/(?P<name>[^/]+)", {"GET": service_instances})
    router.add(r"/v1/catalog/node/(?P<node_name>[^/]+)", {"GET": node_detail})
    router.add(r"/v1/catalog/node-services/(?P<node_name>[^/]+)", {"GET": node_services})
    router.add(r"/v1/catalog/services", {"GET": list_services})
    router.add(r"/v1/catalog/nodes", {"GET": list_nodes})
    router.add(r"/v1/catalog/gateway-services/(?P<gateway>[^/]+)", {"GET": gateway_services_of})
