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
    register_secret(password)
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
    sqlstate = getattr(exc, "sqlstate", None)
    message = redact(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__)

    if sqlstate is None:
        # psycopg puts no SQLSTATE on errors raised before the server spoke;
        # the server's FATAL line still carries the reason.
        sqlstate = _sqlstate_from_text(message)
    if sqlstate is None:
        raise DatabaseUnreachable(f"login to {where} failed before the server responded: {message}") from exc

    label = REJECTIONS.get(sqlstate, "rejected by the server")
    return LoginResult(False, sqlstate, f"{label} (SQLSTATE {sqlstate}): {message}")


def _sqlstate_from_text(message: str) -> str | None:
    lowered = message.lower()
    if "password authentication failed" in lowered:
        return "28P01"
    if "no pg_hba.conf entry" in lowered:
        return "28000"
    if "does not exist" in lowered and "database" in lowered:
        return "3D000"
    return None
