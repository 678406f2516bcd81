"""Fixers, paired with controls by control id.

The order of this mapping is the order in which controls run and fixers
apply: the account before the files it owns, the policy before the token
that links to it, the token before the unit that reads it, the config entry
before the intention, KV credentials before the login that uses them.
A control mapped to None has no safe automatic fix.
"""

FIXERS: dict[str, str | None] = {
    # The deployed end state.
    "gateway-account": "remediations.node_files:fix_account",
    "gateway-config-tree": "remediations.node_files:fix_config_tree",
    "acl-policy": "remediations.acl:fix_policy",
    "acl-token": "remediations.acl:fix_token",
    "gateway-token-file": "remediations.node_files:fix_token_file",
    "catalog-external-service": "remediations.catalog:fix_registration",
    "db-service-single-instance": None,
    "external-node-not-agent": None,
    "gateway-config-entry": "remediations.gateway_entry:fix_entry",
    "gateway-tls-options": "remediations.node_files:fix_ca_file",
    "db-service-protocol": "remediations.mesh:fix_protocol",
    "intention": "remediations.mesh:fix_intention",
    "policy-file-matches": "remediations.config_files:fix_policy_file",
    "registration-file-matches": "remediations.config_files:fix_registration_file",
    "gateway-config-file-matches": "remediations.config_files:fix_gateway_config_file",
    "gateway-unit": "remediations.unit:fix_unit",
    "gateway-unit-loaded": "remediations.unit_loaded:fix_loaded_unit",
    "gateway-running": None,
    "gateway-name-agreement": None,
    "kv-db-credentials": "remediations.kv_database:fix_kv",
    "db-login": "remediations.kv_database:fix_db_login",
    "db-ownership": None,
    "files-db-package-absent": "remediations.packages:fix_absent",
    "pending-setups": None,
    "files-node-packages": None,
    "proxy-node-packages": None,
    # The decommissioned end state.
    "decom-unit-removed": "remediations.decommission:fix_unit_removed",
    "decom-config-entry-deleted": "remediations.decommission:fix_config_entry_deleted",
    "decom-service-deregistered": "remediations.decommission:fix_service_deregistered",
    "decom-tokens-unlinked": "remediations.decommission:fix_tokens_unlinked",
}

# A fixer is not attempted while one of these controls failed earlier in the
# same run, because its change would build on a missing or broken object.
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "gateway-config-tree": ("gateway-account",),
    "acl-token": ("gateway-account", "acl-policy"),
    "gateway-token-file": ("gateway-account", "acl-token"),
    "gateway-tls-options": ("gateway-account", "gateway-config-entry"),
    "intention": ("gateway-config-entry",),
    "policy-file-matches": ("gateway-account", "acl-policy"),
    "registration-file-matches": ("gateway-account", "catalog-external-service"),
    "gateway-config-file-matches": ("gateway-account", "gateway-config-entry"),
    "gateway-unit": ("gateway-account",),
    "gateway-unit-loaded": ("gateway-unit",),
    "db-login": ("kv-db-credentials",),
}
