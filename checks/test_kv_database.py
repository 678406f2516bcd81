"""KV credentials and the database login they must allow."""

from mesh_compliance.controls import control
from mesh_compliance.dbprobe import connection_keywords, try_login
from mesh_compliance.expected import KV_NAMES
from mesh_compliance.redact import register_secret
from mesh_compliance.vantage import from_node


def read_credentials(site, consul) -> dict[str, str | None]:
    """Return the three KV values as Carbonio Files reads them (trimmed; None when absent or empty)."""
    values = {}
    for name in KV_NAMES:
        _, value = consul.kv_get(site.kv.key(name))
        values[name] = value.strip() if value and value.strip() else None
    register_secret(values["db-password"], "database password")
    return values


@control(
    "kv-db-credentials",
    title="Database credentials are in Consul KV",
    severity="high",
    step="12",
    scope="cluster",
    rationale="Carbonio Files reads its database name, user and password from KV and silently "
              "falls back to carbonio-files-db and an empty password when a key is missing.",
)
def test_kv_db_credentials(site, consul, evidence):
    keys = [site.kv.key(name) for name in KV_NAMES]
    evidence.expect("keys", f"{', '.join(keys)} ({site.kv.layout} layout), each non-empty")

    values = read_credentials(site, consul)
    evidence.observe("db-name", values["db-name"] or "missing or empty")
    evidence.observe("db-username", values["db-username"] or "missing or empty")
    evidence.observe("db-password", "set" if values["db-password"] else "missing or empty")

    missing = [site.kv.key(name) for name, value in values.items() if value is None]
    assert not missing, evidence.why(f"KV keys missing or empty: {', '.join(missing)}")


@control(
    "db-login",
    title="The KV role can log in to the KV database",
    severity="critical",
    step="13",
    scope="cluster",
    rationale="Files logs in with the KV credentials; a role, password or database that "
              "does not match KV stops Files at start-up with a misleading error.",
)
def test_db_login(site, consul, db_vantage, evidence):
    values = read_credentials(site, consul)
    where = f"{site.db_host}:{site.db_port}"
    evidence.expect("login", f"role from KV to database from KV on {where}")

    missing = [name for name, value in values.items() if value is None]
    assert not missing, evidence.why(f"cannot log in: KV lacks {', '.join(missing)}")

    node, ssh_config = db_vantage
    with from_node(node, ssh_config, site.db_host, site.db_port) as vantage:
        evidence.observe("vantage point", vantage.description)
        keywords = connection_keywords(vantage.host, vantage.port, values["db-name"], values["db-username"],
                                       values["db-password"], site.database.sslmode, site.database.connect_timeout)
        result = try_login(keywords)
    evidence.observe("login", result.reason)
    assert result.ok, evidence.why(f"role {values['db-username']} cannot log in to database {values['db-name']} on {where}")

    evidence.observe("server version", result.server_version)
    if result.is_superuser:
        evidence.warn(f"role {values['db-username']} is a superuser; Files needs only LOGIN and ownership of its database")
