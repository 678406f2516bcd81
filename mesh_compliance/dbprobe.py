"""Database login probe with psycopg, classifying each failure.

A server-side rejection (wrong password, pg_hba, missing database or role)
is a verdict about the target and becomes FAIL. A failed TCP connection
(refused, timed out, name not resolved) means the probe could not decide: ERROR.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psycopg

from mesh_compliance.errors import DatabaseUnreachable
from mesh_compliance.log import logger
from mesh_compliance.redact import redact, register_secret

# SQLSTATE classes that the server sends when it rejects a login.
REJECTIONS = {
    "28P01": "wrong password (or no such role)",
    "28000": "rejected by pg_hba.conf or invalid authorization",
    "3D000": "database does not exist",
    "42501": "role lacks CONNECT privilege",
    "53300": "too many connections",
    "57P03": "server is starting up or shutting down",
}


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    sqlstate: str | None
    reason: str
    server_version: str = ""
    is_superuser: bool = False


def connection_keywords(host: str, port: int, dbname: str, user: str, password: str,
                        sslmode: str, connect_timeout: int) -> dict:
    """Return psycopg keywords; connection strings are never assembled by hand."""
    register_secret(password, "database password")
    return {
        "host": host, "port": port, "dbname": dbname, "user": user,
        "password": password, "sslmode": sslmode, "connect_timeout": connect_timeout,
        "application_name": "carbonio-mesh-compliance",
    }


def try_login(keywords: dict) -> LoginResult:
    """Log in once and classify the outcome; raise DatabaseUnreachable when no server responds."""
    where = f"{keywords['host']}:{keywords['port']}"
    _check_reachable(keywords["host"], keywords["port"], keywords["connect_timeout"])
    logger.debug("db login %s dbname=%s user=%s", where, keywords["dbname"], keywords["user"])

    try:
        with psycopg.connect(**keywords, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('server_version'), rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    except psycopg.OperationalError as exc:
        return _classify(exc, where)

    version, superuser = row if row else ("", False)
    return LoginResult(True, None, f"logged in to {where}", version, bool(superuser))


def _check_reachable(host: str, port: int, timeout: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout as exc:
        raise DatabaseUnreachable(f"database host {host}:{port} did not respond within {timeout}s") from exc
    except OSError as exc:
        raise DatabaseUnreachable(f"cannot reach database host {host}:{port}: {exc.strerror or exc}") from exc


def _classify(exc: psycopg.OperationalError, where: str) -> LoginResult:
    text = str(exc).strip()
    message = redact(text.splitlines()[-1] if text else type(exc).__name__)

    # libpq reports no SQLSTATE for errors during connection start-up, but a
    # FATAL line means the server itself rejected the login.
    sqlstate = getattr(exc, "sqlstate", None) or _sqlstate_from_text(text)
    if sqlstate is None and "FATAL:" not in text:
        raise DatabaseUnreachable(f"login to {where} failed before the server responded: {message}") from exc

    label = REJECTIONS.get(sqlstate or "", "rejected by the server")
    suffix = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return LoginResult(False, sqlstate, f"{label}{suffix}: {message}")


# Server messages of the FATAL lines libpq passes on, mapped to their SQLSTATE.
MESSAGE_SQLSTATES = (
    ("password authentication failed", "28P01"),
    ("no pg_hba.conf entry", "28000"),
    ("pg_hba.conf rejects connection", "28000"),
    ("role \"", "28000"),
    ("permission denied for database", "42501"),
    ("sorry, too many clients", "53300"),
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
)


def _sqlstate_from_text(message: str) -> str | None:
    lowered = message.lower()
    if "database" in lowered and "does not exist" in lowered:
        return "3D000"
    for fragment, sqlstate in MESSAGE_SQLSTATES:
        if fragment in lowered:
            return sqlstate
    return None
