"""Fixers for the mesh entries the carbonio-files-db package would have written."""

from mesh_compliance.consul import SERVER_FIELDS
from mesh_compliance.errors import FixError
from mesh_compliance.fixing import FixContext

# Source fields Consul computes on write.
SOURCE_SERVER_FIELDS = ("Precedence", "Type")

INTENTION_DESCRIPTION = "Written by carbonio-mesh-compliance: Carbonio Files reaches its external database"


def fix_intention(ctx: FixContext) -> None:
    """Allow the site's source in the destination's service-intentions entry; other sources stay."""
    source, destination = ctx.site.intention.source, ctx.site.external_service.name
    entry = ctx.consul.config_entry("service-intentions", destination)
    name = f"config entry service-intentions/{destination}"

    if entry is None:
        body = {"Kind": "service-intentions", "Name": destination,
                "Sources": [{"Name": source, "Action": "allow", "Description": INTENTION_DESCRIPTION}]}
        _write(ctx, body, cas=0)
        ctx.changed(name, "created", f"source {source} allowed")
        return

    sources = [_client_fields(item) for item in entry.get("Sources") or []]
    current = next((item for item in sources if item.get("Name") == source), None)
    if current is not None and current.get("Action") == "allow" and not current.get("Permissions"):
        # The exact allow is there, so a wildcard cannot outrank it; nothing to merge.
        return

    ctx.keep_consul_object("service-intentions", destination, entry)
    if current is None:
        sources.append({"Name": source, "Action": "allow", "Description": INTENTION_DESCRIPTION})
        detail = f"source {source} added with action allow; {len(sources) - 1} other sources kept"
    else:
        previous = current.get("Action") or "L7 permissions"
        current.pop("Permissions", None)
        current["Action"] = "allow"
        detail = f"source {source} changed from {previous} to allow; other sources kept"

    body = {key: value for key, value in entry.items() if key not in SERVER_FIELDS}
    body["Sources"] = sources
    _write(ctx, body, cas=entry.get("ModifyIndex"))
    ctx.changed(name, "updated", detail)


def fix_protocol(ctx: FixContext) -> None:
    """Write service-defaults for the DB service with Protocol tcp, keeping its other fields."""
    service = ctx.site.external_service.name
    entry = ctx.consul.config_entry("service-defaults", service)
    name = f"config entry service-defaults/{service}"

    if entry is None:
        _write(ctx, {"Kind": "service-defaults", "Name": service, "Protocol": "tcp"}, cas=0)
        ctx.changed(name, "created", "Protocol tcp")
        return
    if str(entry.get("Protocol") or "").lower() == "tcp":
        return

    ctx.keep_consul_object("service-defaults", service, entry)
    body = {key: value for key, value in entry.items() if key not in SERVER_FIELDS}
    body["Protocol"] = "tcp"
    _write(ctx, body, cas=entry.get("ModifyIndex"))
    ctx.changed(name, "updated", f"Protocol {entry.get('Protocol') or 'unset'} -> tcp")


def _client_fields(source: dict) -> dict:
    return {key: value for key, value in source.items() if key not in SOURCE_SERVER_FIELDS}


def _write(ctx: FixContext, body: dict, cas: int | None) -> None:
    # Check-and-set: when someone else changed the entry since it was read,
    # Consul returns false instead of letting this write overwrite that change.
    if not ctx.consul.write_config_entry(body, cas=cas):
        raise FixError(f"config entry {body['Kind']}/{body['Name']} changed while it was being fixed; run --fix again")
