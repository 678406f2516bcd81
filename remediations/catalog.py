"""Fixer for the external service's catalog registration."""

from mesh_compliance.expected import registration
from mesh_compliance.fixing import FixContext


def fix_registration(ctx: FixContext) -> None:
    """Register the external service; replace a wrong entry on the external node.

    A stale entry is removed through the catalog endpoint with the node and its
    real ServiceID, read from the catalog: the agent endpoint cannot remove a
    service registered on a node that has no agent.
    """
    service = ctx.site.external_service
    entries = [entry for entry in ctx.consul.catalog_service(service.name) if entry.get("Node") == service.node]
    node = ctx.consul.catalog_node(service.node)
    existing_meta = ((node or {}).get("Node") or {}).get("Meta") or {}

    if entries or node:
        ctx.keep_consul_object("catalog", f"{service.node}-{service.name}", {"node": node, "entries": entries})

    for entry in entries:
        if entry.get("ServiceID") != service.id:
            ctx.require_opt_in("deregister-service")
            ctx.consul.catalog_deregister({"Node": service.node, "ServiceID": entry["ServiceID"]})
            ctx.changed(f"catalog service {entry['ServiceID']} on {service.node}", "deregistered",
                        "its ServiceID differs from the site's")

    # Registration overwrites the node's meta, so other meta keys are carried over.
    ctx.consul.catalog_register(registration(ctx.site, existing_meta))
    ctx.changed(f"catalog service {service.name} on {service.node}", "registered",
                f"ID {service.id}, {service.address}:{service.port}, node meta external-node and external-probe")
