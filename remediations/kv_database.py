"""Fixers for the KV credentials and the database role they name."""

import psycopg

from mesh_compliance.dbprobe import connection_keywords, try_login
from mesh_compliance.errors import FixError
from mesh_compliance.expected import KV_NAMES
from mesh_compliance import pgadmin
from mesh_compliance.fixing import FixContext, FixRefused
from mesh_compliance.redact import register_secret
from mesh_compliance.site import SiteError


def fix_kv(ctx: FixContext) -> None:
    """Write the missing or empty KV keys from values the operator put in the site file."""
    for name in KV_NAMES:
        key = ctx.site.kv.key(name)
        exists, value, index = ctx.consul.kv_read(key)
        if value and value.strip():
            continue

        supplied = _supplied(ctx, name)
        # cas: 0 creates only if still absent; an index replaces only the empty
        # value just read. Either way a concurrent writer wins and is reported.
        if not ctx.consul.kv_put(key, supplied, cas=index if exists else 0):
            raise FixError(f"KV key {key} changed while it was being fixed; run --fix again")
        shown = "<secret>" if name == "db-password" else supplied
        ctx.changed(f"KV key {key}", "wrote", f"value {shown} (was {'empty' if exists else 'missing'})")


def _supplied(ctx: FixContext, name: str) -> str:
    values = ctx.site.kv.values
    setting = f"kv.values.{name.replace('-', '_')}"
    if name == "db-password":
        if values.db_password is None:
            raise FixRefused(f"no value for {ctx.site.kv.key(name)}: set {setting} to an env or file reference; the suite never invents a password")
        try:
            secret = values.db_password.read()
        except SiteError as exc:
            raise FixRefused(f"cannot read {setting}: {exc}") from exc
        register_secret(secret, "database password")
        if not secret:
            raise FixRefused(f"{setting} ({values.db_password.describe()}) is empty")
        return secret

    value = values.db_name if name == "db-name" else values.db_username
    if not value:
        raise FixRefused(f"no value for {ctx.site.kv.key(name)}: set {setting} in the site file")
    return value


def fix_db_login(ctx: FixContext) -> None:
    """Create the KV role and database with the site's DB admin credentials.

    An existing role whose password differs from KV is left alone: changing
    it could lock out whatever else uses that role.
    """
    site = ctx.site
    admin = site.database.admin
    if admin is None or admin.password is None:
        raise FixRefused("no DB admin credentials: add [database.admin] with user, password reference and database to the site file")

    creds = {name: (ctx.consul.kv_get(site.kv.key(name))[1] or "").strip() for name in KV_NAMES}
    register_secret(creds["db-password"], "database password")
    if not all(creds.values()):
        raise FixRefused("the KV credentials are incomplete; control kv-db-credentials must pass first")

    try:
        admin_password = admin.password.read()
    except SiteError as exc:
        raise FixRefused(f"cannot read the DB admin password: {exc}") from exc

    keywords = connection_keywords(site.db_host, site.db_port, admin.database, admin.user, admin_password,
                                   site.database.sslmode, site.database.connect_timeout)
    try:
        with psycopg.connect(**keywords, autocommit=True) as conn:
            _ensure_role(ctx, conn, creds)
            _ensure_database(ctx, conn, creds)
    except psycopg.Error as exc:
        raise FixError(f"database administration on {site.db_host}:{site.db_port} as {admin.user} failed: {str(exc).strip()}") from exc


def _ensure_role(ctx: FixContext, conn, creds: dict) -> None:
    role = creds["db-username"]
    if not pgadmin.role_exists(conn, role):
        ctx.require_opt_in("create-db-role")
        ctx.sql(conn, pgadmin.create_role_statement(role, creds["db-password"]),
                f'CREATE ROLE "{role}" LOGIN PASSWORD <scram verifier>')
        ctx.changed(f"database role {role}", "created", "LOGIN, password from KV (sent as a SCRAM verifier)")
        return

    site = ctx.site
    probe = connection_keywords(site.db_host, site.db_port, "postgres", role, creds["db-password"],
                                site.database.sslmode, site.database.connect_timeout)
    result = try_login(probe)
    if not result.ok and result.sqlstate == "28P01":
        raise FixRefused(f"role {role} exists but its password differs from KV; change one of them by hand")


def _ensure_database(ctx: FixContext, conn, creds: dict) -> None:
    database, role = creds["db-name"], creds["db-username"]
    owner = pgadmin.database_owner(conn, database)
    if owner is None:
        ctx.require_opt_in("create-db-role")
        ctx.sql(conn, pgadmin.create_database_statement(database, role),
                f'CREATE DATABASE "{database}" OWNER "{role}"')
        ctx.changed(f"database {database}", "created", f"owner {role}")
