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
    # The decommissioned end state.
    "decom-unit-removed": "remediations.decommission:fix_unit_removed",
    "decom-config-entry-deleted": "remediations.decommission:fix_config_entry_deleted",
    "decom-service-deregistered": "remediations.decommission:fix_service_deregistered",
    "decom-tokens-unlinked": "remediations.decommission:fix_tokens_unlinked",
}
