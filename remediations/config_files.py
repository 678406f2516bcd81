"""Fixers that rewrite the gateway's configuration files from the objects Consul stores now.

Consul is the source: the files are rewritten in the documented format
(JSON for the rules and the registration, HCL for the config entry), owned
by the gateway user with mode 0640, and the previous file is kept next to it.
"""

from __future__ import annotations

from mesh_compliance.config_files import (
    ConfigFileError,
    catalog_registration,
    entry_file_text,
    policy_file_text,
    registration_file_text,
)
from mesh_compliance.errors import FixError
from mesh_compliance.fixing import FixContext

FILE_MODE = 0o640


def fix_policy_file(ctx: FixContext) -> None:
    """Rewrite policies.json from the rules of the gateway ACL policy."""
    site = ctx.site
    policy = ctx.consul.policy_by_name(site.acl.policy)
    if policy is None:
        raise FixError(f"ACL policy {site.acl.policy} does not exist in Consul; the fixer of control acl-policy creates it")
    try:
        text = policy_file_text(policy.get("Rules", ""))
    except ConfigFileError as exc:
        raise FixError(str(exc)) from exc
    _rewrite(ctx, site.gateway.config_path(site.gateway.policies_file), text, f"from ACL policy {site.acl.policy}")


def fix_registration_file(ctx: FixContext) -> None:
    """Rewrite the external service definition file from its catalog registration."""
    site = ctx.site
    service = site.external_service
    entry = catalog_registration(ctx.consul, site)
    if entry is None:
        raise FixError(f"service {service.name} is not registered on node {service.node}; "
                       "the fixer of control catalog-external-service registers it")
    path = site.gateway.config_path(site.gateway.registration_file)
    _rewrite(ctx, path, registration_file_text(entry), f"from the catalog registration of {service.name} on {service.node}")


def fix_gateway_config_file(ctx: FixContext) -> None:
    """Rewrite gateway-config.hcl from the terminating-gateway config entry."""
    site = ctx.site
    name = site.gateway.service
    entry = ctx.consul.config_entry("terminating-gateway", name)
    if entry is None:
        raise FixError(f"config entry terminating-gateway/{name} does not exist in Consul; "
                       "the fixer of control gateway-config-entry creates it")
    try:
        text = entry_file_text(entry)
    except ConfigFileError as exc:
        raise FixError(f"config entry terminating-gateway/{name} cannot be written as HCL: {exc}") from exc
    path = site.gateway.config_path(site.gateway.config_entry_file)
    _rewrite(ctx, path, text, f"from config entry terminating-gateway/{name}")


def _rewrite(ctx: FixContext, path: str, text: str, source: str) -> None:
    gateway = ctx.site.gateway
    # NOTE: the backup keeps the previous file's owner, so a file that
    # belonged to another account leaves a backup that gateway-config-tree
    # reports until that fixer or the operator changes it.
    backup = ctx.write_file(path, text, owner=gateway.user, group=gateway.group, mode=FILE_MODE)
    backup_note = f", previous file kept as {backup}" if backup else ""
    ctx.changed(path, "rewrote", f"{source}; owner {gateway.user}:{gateway.group}, mode {FILE_MODE:04o}{backup_note}")
