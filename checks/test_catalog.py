"""Catalog control: the external DB service on its agent-less node."""

from mesh_compliance.controls import control
from mesh_compliance.expected import NODE_META


@control(
    "catalog-external-service",
    title="External DB service is registered on the external node",
    severity="high",
    step="7-8",
    scope="cluster",
    rationale="The gateway routes to the address and port of the catalog entry; a wrong port "
              "or a missing entry leaves Carbonio Files without its database.",
)
def test_catalog_external_service(site, consul, evidence):
    service = site.external_service
    evidence.expect("registration", f"{service.name} on node {service.node} at {service.address}:{service.port}")
    evidence.expect("node meta", NODE_META)

    entries = consul.catalog_service(service.name)
    evidence.record(f"GET /v1/catalog/service/{service.name}", [_brief(entry) for entry in entries])
    on_node = [entry for entry in entries if entry.get("Node") == service.node]
    evidence.observe("nodes", sorted({entry.get("Node") for entry in entries}) or "none")
    assert on_node, evidence.why(f"service {service.name} is not registered on node {service.node}")

    entry = on_node[0]
    meta = entry.get("NodeMeta") or {}
    address = entry.get("ServiceAddress") or entry.get("Address")
    evidence.observe("registration", f"{entry.get('ServiceName')} (ID {entry.get('ServiceID')}) at {address}:{entry.get('ServicePort')}")
    evidence.observe("node meta", meta)

    wrong_meta = {key: meta.get(key) for key, value in NODE_META.items() if meta.get(key) != value}
    assert not wrong_meta, evidence.why(f"node {service.node} lacks the external node meta {sorted(wrong_meta)}")
    assert address == service.address, evidence.why(f"service {service.name} has address {address}, expected {service.address}")
    assert entry.get("ServicePort") == service.port, evidence.why(
        f"service {service.name} has port {entry.get('ServicePort')}, expected {service.port}")
    assert entry.get("ServiceID") == service.id, evidence.why(
        f"service {service.name} has ID {entry.get('ServiceID')}, expected {service.id} (external_service.id)")

    if entry.get("ServiceID") == site.gateway.service:
        evidence.warn(f"the service ID {entry.get('ServiceID')} equals the gateway's service name, which makes "
                      "catalog inspection and removal error-prone; set another external_service.id in the "
                      "site file and run --fix to re-register it")


def _brief(entry: dict) -> dict:
    keys = ("Node", "Address", "NodeMeta", "ServiceID", "ServiceName", "ServiceAddress", "ServicePort")
    return {key: entry.get(key) for key in keys}
