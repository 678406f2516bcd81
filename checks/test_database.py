"""Database ownership control: the KV role owns, or may create objects in, the KV database."""

from mesh_compliance import dbroles
from mesh_compliance.controls import control
from mesh_compliance.expected import KV_NAMES
from mesh_compliance.redact import register_secret


@control(
    "db-ownership",
    title="The KV role exists, can log in and owns the KV database",
    severity="high",
    step="13",
    scope="cluster",
    rationale="Files creates its tables at start-up. PostgreSQL 15 and later no longer grant CREATE "
              "on the public schema to every role, so the role must own its database or hold CREATE "
              "there. Superuser is not needed, and managed PostgreSQL services do not grant it.",
)
def test_db_ownership(site, consul, evidence):
    values = _kv_values(site, consul)
    role, database = values["db-username"], values["db-name"]
    evidence.expect("database", f"{database or 'the KV database'} exists")
    evidence.expect("role", f"{role or 'the KV role'} exists with LOGIN, not superuser")
    evidence.expect("ownership", "owns the database, or has CREATE on its public schema")

    missing = [site.kv.key(name) for name, value in values.items() if value is None]
    assert not missing, evidence.why(f"cannot check ownership: KV lacks {', '.join(missing)}")

    inspection = dbroles.inspect(site, role, database, values["db-password"])
    evidence.observe("inspected as", inspection.via)
    if inspection.facts is None:
        evidence.observe("login", inspection.login.reason)
        raise AssertionError(evidence.why(_login_failure(inspection.login, role, database)))

    facts = inspection.facts
    _observe(evidence, facts)
    absent = []
    if not facts.database_exists:
        absent.append(f"database {database} ({site.kv.key('db-name')})")
    if not facts.role_exists:
        absent.append(f"role {role} ({site.kv.key('db-username')})")
    assert not absent, evidence.why(f"KV names what does not exist on {site.db_host}:{site.db_port}: {', '.join(absent)}")

    assert facts.can_login, evidence.why(f"role {role} has NOLOGIN")
    assert not facts.password_expired, evidence.why(f"the password of role {role} has expired (VALID UNTIL)")
    assert facts.can_connect, evidence.why(f"role {role} lacks CONNECT on database {database}")
    assert facts.owns or facts.create_in_public, evidence.why(
        f"role {role} neither owns database {database} (owner {facts.owner}) nor has CREATE on its public schema")

    if facts.superuser:
        evidence.warn(f"role {role} is a superuser; Files needs only LOGIN and ownership of its database")


def _kv_values(site, consul) -> dict[str, str | None]:
    values = {}
    for name in KV_NAMES:
        _, value = consul.kv_get(site.kv.key(name))
        values[name] = value.strip() if value and value.strip() else None
    register_secret(values["db-password"], "database password")
    return values


def _login_failure(login, role: str, database: str) -> str:
    if login.sqlstate == "3D000":
        return f"database {database} does not exist"
    return f"role {role} cannot log in to database {database}, so its ownership cannot be read: {login.reason}"


def _observe(evidence, facts) -> None:
    evidence.observe("database", f"{facts.database} owned by {facts.owner}" if facts.database_exists else "not found")
    if not facts.role_exists:
        evidence.observe("role", "not found")
        return
    flags = ["LOGIN" if facts.can_login else "NOLOGIN"]
    flags += [name for name, on in (("SUPERUSER", facts.superuser), ("password expired", facts.password_expired)) if on]
    evidence.observe("role", f"{facts.role} ({', '.join(flags)})")
    create = {True: "yes", False: "no", None: "not read"}[facts.create_in_public]
    evidence.observe("ownership", f"owns: {'yes' if facts.owns else 'no'}; CREATE on public schema: {create}")
