"""Database administration for the role fixer: role and database creation.

Passwords are sent as SCRAM-SHA-256 verifiers computed here, so the plain
password never reaches the server, its statement log or pg_stat_activity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import psycopg
from psycopg import sql


SCRAM_ITERATIONS = 4096


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for ``password``.

    NOTE: PostgreSQL applies SASLprep to the password first; for ASCII
    passwords that is the identity, for others the verifier may differ.
    """
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    encode = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{encode(salt)}${encode(stored_key)}:{encode(server_key)}"


def role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def database_owner(conn: psycopg.Connection, database: str) -> str | None:
    row = conn.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
    ).fetchone()
    return row[0] if row else None


def create_role_statement(role: str, password: str) -> sql.Composed:
    return sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(scram_verifier(password)))


def create_database_statement(database: str, owner: str) -> sql.Composed:
    return sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner))
