"""db-ownership against the lab's real PostgreSQL: existence, LOGIN, ownership, CREATE and superuser."""

import psycopg
import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.lab]

OWNERSHIP = "db-ownership"
ROLE = "carbonio-files-adm"
DATABASE = "carbonio-files-adm"


def in_database(lab, statement: str) -> None:
    """Run a statement as the lab's admin inside the KV database (schema privileges are per database)."""
    with psycopg.connect(**lab.pg.connect_kwargs(dbname=DATABASE), autocommit=True) as conn:
        conn.execute(statement)


def give_database_to_admin(state, compliant_lab) -> str:
    admin = compliant_lab.pg.admin_user
    state.sql(f'ALTER DATABASE "{DATABASE}" OWNER TO "{admin}"', undo=f'ALTER DATABASE "{DATABASE}" OWNER TO "{ROLE}"')
    return admin


def site_without_admin(state, directory):
    site = state.site_file_with(directory, "")
    text = site.read_text()
    site.write_text(text[: text.index("[database.admin]")] + text[text.index("[packages]"):])
    return site


@pytest.fixture(scope="module")
def server_version(compliant_lab) -> int:
    with psycopg.connect(**compliant_lab.pg.connect_kwargs(), autocommit=True) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])


def test_owner_without_superuser_passes(suite):
    run = suite("--control", OWNERSHIP)
    assert run.verdict(OWNERSHIP) == "PASS"
    assert run.record(OWNERSHIP)["evidence"]["observed"]["inspected as"].startswith("admin role")


def test_superuser_warns(state, suite):
    state.sql(f'ALTER ROLE "{ROLE}" SUPERUSER', undo=f'ALTER ROLE "{ROLE}" NOSUPERUSER')
    run = suite("--control", OWNERSHIP)
    assert run.verdict(OWNERSHIP) == "WARN"
    assert "is a superuser" in run.message(OWNERSHIP)


def test_not_owner_without_create_fails(state, suite, compliant_lab, server_version):
    if server_version < 150000:
        # Before PostgreSQL 15 every role has CREATE on public, which this case removes.
        in_database(compliant_lab, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        state.on_restore(lambda: in_database(compliant_lab, "GRANT CREATE ON SCHEMA public TO PUBLIC"))
    admin = give_database_to_admin(state, compliant_lab)
    run = suite("--control", OWNERSHIP, "--fix")
    assert run.verdict(OWNERSHIP) == "FAIL"
    assert f"neither owns database {DATABASE} (owner {admin})" in run.message(OWNERSHIP)
    assert run.record(OWNERSHIP)["fix"]["status"] == "none"


def test_not_owner_with_create_on_public_passes(state, suite, compliant_lab):
    give_database_to_admin(state, compliant_lab)
    in_database(compliant_lab, f'GRANT CREATE ON SCHEMA public TO "{ROLE}"')
    state.on_restore(lambda: in_database(compliant_lab, f'REVOKE CREATE ON SCHEMA public FROM "{ROLE}"'))
    run = suite("--control", OWNERSHIP)
    assert run.verdict(OWNERSHIP) == "PASS"
    assert "CREATE on public schema: yes" in run.record(OWNERSHIP)["evidence"]["observed"]["ownership"]


def test_member_of_owning_role_passes(state, suite):
    state.sql('CREATE ROLE "files-owners" NOLOGIN', undo='DROP ROLE "files-owners"')
    state.sql(f'GRANT "files-owners" TO "{ROLE}"')
    state.sql(f'ALTER DATABASE "{DATABASE}" OWNER TO "files-owners"', undo=f'ALTER DATABASE "{DATABASE}" OWNER TO "{ROLE}"')
    assert suite("--control", OWNERSHIP).verdict(OWNERSHIP) == "PASS"


def test_kv_database_missing_fails(state, suite):
    state.kv_put("carbonio-files/db-name", "no-such-database")
    run = suite("--control", OWNERSHIP)
    assert run.verdict(OWNERSHIP) == "FAIL"
    assert "database no-such-database (carbonio-files/db-name)" in run.message(OWNERSHIP)


def test_kv_role_missing_fails(state, suite):
    state.kv_put("carbonio-files/db-username", "no-such-role")
    run = suite("--control", OWNERSHIP)
    assert run.verdict(OWNERSHIP) == "FAIL"
    assert "role no-such-role (carbonio-files/db-username)" in run.message(OWNERSHIP)


def test_nologin_role_fails(state, suite):
    state.sql(f'ALTER ROLE "{ROLE}" NOLOGIN', undo=f'ALTER ROLE "{ROLE}" LOGIN')
    run = suite("--control", OWNERSHIP)
    assert run.verdict(OWNERSHIP) == "FAIL"
    assert "has NOLOGIN" in run.message(OWNERSHIP)


def test_without_admin_checks_as_kv_role(state, suite, tmp_path):
    run = suite("--control", OWNERSHIP, f"--site={site_without_admin(state, tmp_path)}")
    assert run.verdict(OWNERSHIP) == "PASS"
    assert run.record(OWNERSHIP)["evidence"]["observed"]["inspected as"] == f"KV role {ROLE}"


def test_without_admin_missing_database_fails(state, suite, tmp_path):
    state.kv_put("carbonio-files/db-name", "no-such-database")
    run = suite("--control", OWNERSHIP, f"--site={site_without_admin(state, tmp_path)}")
    assert run.verdict(OWNERSHIP) == "FAIL"
    assert "database no-such-database does not exist" in run.message(OWNERSHIP)


def test_without_admin_superuser_warns(state, suite, tmp_path):
    state.sql(f'ALTER ROLE "{ROLE}" SUPERUSER', undo=f'ALTER ROLE "{ROLE}" NOSUPERUSER')
    run = suite("--control", OWNERSHIP, f"--site={site_without_admin(state, tmp_path)}")
    assert run.verdict(OWNERSHIP) == "WARN"


def test_rejected_admin_is_error(state, suite, tmp_path):
    wrong = tmp_path / "wrong-admin-password"
    wrong.write_text("not-the-admin-password\n")
    wrong.chmod(0o600)
    site = state.site_file_with(tmp_path, "")
    text = site.read_text()
    start = text.index("[database.admin]")
    section = text[start: text.index("[packages]")]
    admin_file = section.split('file = "', 1)[1].split('"', 1)[0]
    site.write_text(text.replace(admin_file, str(wrong)))
    run = suite("--control", OWNERSHIP, f"--site={site}")
    assert run.verdict(OWNERSHIP) == "ERROR"
    assert "cannot log in" in run.message(OWNERSHIP)
    assert "not-the-admin-password" not in run.output
