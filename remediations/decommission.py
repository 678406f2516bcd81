"""Fixers for the decommissioned profile: remove the gateway unit, entry, catalog service and tokens.

They do what the published removal steps meant: ``systemctl`` (not
``systemd``) stops and disables the unit, and the catalog deregister
endpoint, with the node and the real ServiceID, removes the external service.
Unit files are moved aside, and Consul objects are kept in the backup
directory before they are deleted.
"""

from __future__ import annotations

from urllib.parse import quote

from mesh_compliance.errors import FixError
from mesh_compliance.fixing import FixContext, FixRefused
from mesh_compliance.redact import register_secret
from mesh_compliance.systemd import (
    ENABLED_STATES, active_state, enablement_links, find_dropins, own_dropins, unit_file_copies,
)
from remediations.unit_files import live_systemd, move_aside, systemctl

STOPPED_STATES = ("inactive", "failed")

# Token fields kept before a token is deleted: enough to tell what it was and
# to recreate its links, never its SecretID.
KEPT_TOKEN_FIELDS = ("AccessorID", "Description", "Policies", "Roles", "ServiceIdentities",
                     "NodeIdentities", "Local", "CreateTime", "ExpirationTime")


def fix_unit_removed(ctx: FixContext) -> None:
    """Stop (live only) and disable the unit, then move its files aside as ``.bak``."""
    target = ctx.require_target()
    unit = ctx.site.gateway.unit
    live = live_systemd(target)

    if live and active_state(target, unit) not in STOPPED_STATES:
        systemctl(ctx, "stop", unit)
        ctx.changed(f"unit {unit}", "stopped")

    # disable reads the [Install] section, so it runs before the files move.
    if target.unit_enabled_state(unit) in ENABLED_STATES or enablement_links(target, unit):
        systemctl(ctx, "disable", unit)
        ctx.changed(f"unit {unit}", "disabled")
        left = enablement_links(target, unit)
        if left:
            raise FixError(f"systemctl disable {unit} left enablement links: {', '.join(left)}")

    files = unit_file_copies(target, unit) + own_dropins(tuple(find_dropins(target, unit)), unit)
    for path in files:
        backup = move_aside(ctx, path)
        ctx.changed(f"unit file {path}", "moved aside", f"kept as {backup}")

    if live and files:
        systemctl(ctx, "daemon-reload")
        ctx.changed("systemd", "reloaded unit files")


def fix_config_entry_deleted(ctx: FixContext) -> None:
    """Delete the terminating-gateway entry with check-and-set, after keeping a copy.

    An entry that also links services other than the external database is
    left alone, because deleting it would cut those services off too.
    """
    name = ctx.site.gateway.service
    entry = ctx.consul.config_entry("terminating-gateway", name)
    if entry is None:
        return

    others = [item.get("Name") for item in entry.get("Services") or [] if item.get("Name") != ctx.site.external_service.name]
    if others:
        raise FixRefused(f"terminating-gateway entry {name} also links {', '.join(map(str, others))}; "
                         "remove those services from it or delete the entry by hand")

    ctx.keep_consul_object("terminating-gateway", name, entry)
    index = entry.get("ModifyIndex")
    answer = ctx.consul.request("DELETE", f"/v1/config/terminating-gateway/{_segment(name)}",
                                params={"cas": str(index)})
    if answer.status != 200 or answer.body is not True:
        raise FixError(f"terminating-gateway entry {name} changed since it was read (ModifyIndex {index}); run --fix again")
    ctx.changed(f"terminating-gateway entry {name}", "deleted", f"linked {_linked(entry)}")


def fix_service_deregistered(ctx: FixContext) -> None:
    """Deregister each instance on the external node by its real ServiceID, through the catalog endpoint."""
    service = ctx.site.external_service
    for entry in ctx.consul.catalog_service(service.name):
        if entry.get("Node") != service.node:
            continue
        service_id = entry["ServiceID"]
        ctx.keep_consul_object("catalog-service", f"{service.node}--{service_id}", entry)
        ctx.consul.catalog_deregister({"Node": service.node, "ServiceID": service_id})
        ctx.changed(f"catalog service {service.name}", "deregistered", f"node {service.node}, ServiceID {service_id}")


def fix_tokens_unlinked(ctx: FixContext) -> None:
    """Delete the tokens linked to the gateway policy, except the one the suite authenticates with.

    Needs --allow delete-token. Each token's accessor, description and links
    are kept in the backup directory first; its SecretID is not.
    """
    site = ctx.site
    if not site.decommission.unlink_tokens:
        raise FixRefused("the site does not ask to unlink tokens; set [decommission] unlink_tokens = true")
    ctx.require_opt_in("delete-token")

    policy = ctx.consul.policy_by_name(site.acl.policy)
    if policy is None:
        return
    own = ctx.consul.check_own_token().get("AccessorID")

    left = []
    for token in ctx.consul.tokens_for_policy(policy["ID"]):
        if token.get("SecretID"):
            register_secret(token["SecretID"], "Consul token")
        accessor = token["AccessorID"]
        if accessor == own:
            left.append(accessor)
            continue
        kept = {key: token[key] for key in KEPT_TOKEN_FIELDS if key in token}
        ctx.keep_consul_object("acl-token", accessor, kept)
        ctx.consul.request("DELETE", f"/v1/acl/token/{_segment(accessor)}")
        ctx.changed(f"ACL token {accessor}", "deleted", token.get("Description") or "no description")

    if left:
        raise FixError(
            f"the token this suite authenticates with ({left[0]}) is linked to policy {site.acl.policy}, "
            "so it was left; delete it with another management token"
        )


def _linked(entry: dict) -> str:
    return ", ".join(service.get("Name", "?") for service in entry.get("Services") or []) or "no services"


def _segment(value: str) -> str:
    return quote(value, safe="")
