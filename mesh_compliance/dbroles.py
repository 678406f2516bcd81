"""Facts PostgreSQL records about the KV role and database: existence, LOGIN, ownership, CREATE.

The facts are read with the site's database admin credentials when the site
gives them, else with the KV role itself. pg_roles and pg_database are shared
catalogs, so any database of the server shows them. CREATE on the public
schema is per database, so it is read in the KV database.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from mesh_compliance.dbprobe import LoginResult, connection_keywords, try_login
from mesh_compliance.errors import DatabaseInspectionFailed
from mesh_compliance.log import logger
from mesh_compliance.redact import redact, register_secret
from mesh_compliance.site import Site, SiteError


@dataclass
class RoleFacts:
    role: str
    database: str
    role_exists: bool = False
    database_exists: bool = False
    can_login: bool = False
    password_expired: bool = False
    superuser: bool = False
    owner: str | None = None
    owns: bool = False                      # owner, or member of the owning role
    can_connect: bool = False
    create_in_public: bool | None = None    # None when not read or when no public schema exists


@dataclass
class Inspection:
    via: str                                # who looked: the admin role or the KV role
    facts: RoleFacts | None = None
    login: LoginResult | None = None        # the KV role's rejected login, when it looked itself


def inspect(site: Site, role: str, database: str, password: str) -> Inspection:
    """Read the facts about ``role`` and ``database``; raise DatabaseInspectionFailed when the admin cannot."""
    admin = site.database.admin
    if admin is not None and admin.password is not None:
        return _inspect_as_admin(site, role, database)

    keywords = _keywords(site, database, role, password)
    result = try_login(keywords)
    if not result.ok:
        return Inspection(f"KV role {role}", login=result)
    facts = _read(keywords, role, database, in_database=True)
    return Inspection(f"KV role {role}", facts=facts)


def _inspect_as_admin(site: Site, role: str, database: str) -> Inspection:
    admin = site.database.admin
    try:
        password = admin.password.read()
    except SiteError as exc:
        raise DatabaseInspectionFailed(f"cannot read the DB admin password: {exc}") from exc
    register_secret(password, "database admin password")

    keywords = _keywords(site, admin.database, admin.user, password)
    result = try_login(keywords)
    if not result.ok:
        raise DatabaseInspectionFailed(f"the DB admin role {admin.user} cannot log in to {admin.database}: {result.reason}")

    facts = _read(keywords, role, database, in_database=admin.database == database)
    if facts.role_exists and facts.database_exists and not facts.owns and facts.create_in_public is None:
        facts.create_in_public = _read_public_create(_keywords(site, database, admin.user, password), role)
    return Inspection(f"admin role {admin.user}", facts=facts)


def _keywords(site: Site, database: str, user: str, password: str) -> dict:
    return connection_keywords(site.db_host, site.db_port, database, user, password,
                               site.database.sslmode, site.database.connect_timeout)


def _read(keywords: dict, role: str, database: str, in_database: bool) -> RoleFacts:
    facts = RoleFacts(role, database)
    try:
        with psycopg.connect(**keywords, autocommit=True) as conn:
            _read_role(conn, facts)
            _read_database(conn, facts)
            if in_database and facts.role_exists and facts.database_exists:
                facts.create_in_public = public_create(conn, role)
    except psycopg.Error as exc:
        raise DatabaseInspectionFailed(f"reading roles and databases as {keywords['user']} failed: {redact(str(exc).strip())}") from exc
    return facts


def _read_public_create(keywords: dict, role: str) -> bool | None:
    try:
        with psycopg.connect(**keywords, autocommit=True) as conn:
            return public_create(conn, role)
    except psycopg.Error as exc:
        raise DatabaseInspectionFailed(
            f"cannot read the public schema of {keywords['dbname']} as {keywords['user']}: {redact(str(exc).strip())}") from exc


def _read_role(conn: psycopg.Connection, facts: RoleFacts) -> None:
    row = conn.execute(
        "SELECT rolcanlogin, rolsuper, rolvaliduntil IS NOT NULL AND rolvaliduntil < now() "
        "FROM pg_roles WHERE rolname = %s", (facts.role,)).fetchone()
    if row is None:
        return
    facts.role_exists = True
    facts.can_login, facts.superuser, facts.password_expired = (bool(value) for value in row)


def _read_database(conn: psycopg.Connection, facts: RoleFacts) -> None:
    row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (facts.database,)).fetchone()
    if row is None:
        return
    facts.database_exists, facts.owner = True, row[0]
    if not facts.role_exists:
        return

    # pg_has_role with USAGE: the role has the owner's privileges, directly or through membership.
    owns, connect = conn.execute(
        "SELECT pg_has_role(%s, %s, 'USAGE'), has_database_privilege(%s, %s, 'CONNECT')",
        (facts.role, facts.owner, facts.role, facts.database)).fetchone()
    facts.owns, facts.can_connect = bool(owns), bool(connect)
    logger.debug("db ownership: %s owner=%s owns=%s connect=%s", facts.database, facts.owner, facts.owns, facts.can_connect)


def public_create(conn: psycopg.Connection, role: str) -> bool | None:
    """Return whether ``role`` may create objects in the connected database's public schema."""
    row = conn.execute(
        "SELECT has_schema_privilege(%s, oid, 'CREATE') FROM pg_namespace WHERE nspname = 'public'", (role,)).fetchone()
    return None if row is None else bool(row[0])
