"""Fixers, paired with controls by control id.

The order of this mapping is the order in which controls run and fixers
apply: the policy before the token that links to it, the token before the
unit that reads it, KV credentials before the login that uses them.
A control mapped to None has no safe automatic fix.
"""

FIXERS: dict[str, str | None] = {
    "acl-policy": "remediations.acl:fix_policy",
    "acl-token": "remediations.acl:fix_token",
    "catalog-external-service": "remediations.catalog:fix_registration",
    "gateway-config-entry": "remediations.gateway_entry:fix_entry",
    "gateway-unit": "remediations.unit:fix_unit",
    "kv-db-credentials": "remediations.kv_database:fix_kv",
    "db-login": "remediations.kv_database:fix_db_login",
    "files-db-package-absent": "remediations.packages:fix_absent",
}
