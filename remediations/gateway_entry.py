"""Fixer for the terminating-gateway config entry."""

from mesh_compliance.consul import SERVER_FIELDS
from mesh_compliance.errors import FixError
from mesh_compliance.expected import linked_service
from mesh_compliance.fixing import FixContext


def fix_entry(ctx: FixContext) -> None:
    """Create the entry, or add or correct the DB service in it; other linked services stay."""
    name = ctx.site.gateway.service
    wanted = linked_service(ctx.site)
    entry = ctx.consul.config_entry("terminating-gateway", name)

    if entry is None:
        body = {"Kind": "terminating-gateway", "Name": name, "Services": [wanted]}
        _write(ctx, body, cas=0)
        ctx.changed(f"config entry terminating-gateway/{name}", "created", f"linking {wanted['Name']}")
        return

    ctx.keep_consul_object("terminating-gateway", name, entry)
    services = [item for item in entry.get("Services") or [] if item.get("Name") != wanted["Name"]]
    current = next((item for item in entry.get("Services") or [] if item.get("Name") == wanted["Name"]), {})
    # Options the site does not set (for example CertFile) are kept as they are.
    services.append({**current, **wanted})

    body = {key: value for key, value in entry.items() if key not in SERVER_FIELDS}
    body["Services"] = services
    _write(ctx, body, cas=entry.get("ModifyIndex"))
    ctx.changed(f"config entry terminating-gateway/{name}", "updated", f"linked {wanted}")


def _write(ctx: FixContext, body: dict, cas: int | None) -> None:
    # Check-and-set: a concurrent change by someone else makes Consul return
    # false instead of being overwritten.
    if not ctx.consul.write_config_entry(body, cas=cas):
        raise FixError(f"config entry terminating-gateway/{body['Name']} changed while it was being fixed; run --fix again")
