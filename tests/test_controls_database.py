"""KV credentials and database login against the lab's Consul and real PostgreSQL."""

import socket

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.lab]

KV = "kv-db-credentials"
LOGIN = "db-login"
ROLE = "carbonio-files-adm"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_kv_passes_when_compliant(suite):
    assert suite("--control", KV).verdict(KV) == "PASS"


def test_kv_missing_password_fails(state, suite):
    state.kv_delete("carbonio-files/db-password")
    run = suite("--control", KV)
    assert run.verdict(KV) == "FAIL"
    assert "carbonio-files/db-password" in run.message(KV)


def test_kv_blank_value_fails(state, suite):
    state.kv_put("carbonio-files/db-name", "  \n")
    run = suite("--control", KV)
    assert run.verdict(KV) == "FAIL"
    assert "carbonio-files/db-name" in run.message(KV)


def test_kv_nested_layout_reads_nested_keys(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace('layout = "flat"', 'layout = "nested"'))
    assert suite("--control", KV, f"--site={site}").verdict(KV) == "FAIL"
    for name in ("db-name", "db-username", "db-password"):
        state.kv_put(f"carbonio-files/database/credentials/{name}", state.kv_value(f"carbonio-files/{name}"))
    assert suite("--control", KV, f"--site={site}").verdict(KV) == "PASS"


def test_kv_unreadable_is_error(state, suite, tmp_path):
    policy = state.create_policy("gateway-kv-only", 'key_prefix "carbonio-gateway/" { policy = "read" }\nacl = "read"')
    token = state.create_token([{"ID": policy["ID"]}])
    run = suite("--control", KV, token_file=str(state.token_file_for(tmp_path, token)))
    assert run.verdict(KV) == "ERROR"
    assert "lacks permission" in run.message(KV)


def test_kv_fix_writes_operator_value(state, suite):
    password = state.kv_value("carbonio-files/db-password")
    state.kv_delete("carbonio-files/db-password")
    run = suite("--control", KV, "--fix")
    assert run.verdict(KV) == "FIXED"
    assert state.kv_value("carbonio-files/db-password") == password
    assert password not in run.output
    assert suite("--control", KV, "--fix").record(KV)["fix"] is None


def test_kv_fix_never_invents_a_password(state, suite, tmp_path):
    state.kv_delete("carbonio-files/db-password")
    site = state.site_file_with(tmp_path, "")
    lines = [line for line in site.read_text().splitlines() if not line.startswith("db_password")]
    site.write_text("\n".join(lines) + "\n")
    run = suite("--control", KV, "--fix", f"--site={site}")
    assert run.verdict(KV) == "FAIL"
    assert "never invents a password" in run.record(KV)["fix"]["reason"]
    assert state.kv_value("carbonio-files/db-password") is None


def test_login_passes_without_superuser(suite):
    run = suite("--control", LOGIN)
    assert run.verdict(LOGIN) == "PASS"
    assert "vantage point" in run.record(LOGIN)["evidence"]["observed"]


def test_login_superuser_warns(state, suite):
    state.sql(f'ALTER ROLE "{ROLE}" SUPERUSER', undo=f'ALTER ROLE "{ROLE}" NOSUPERUSER')
    run = suite("--control", LOGIN)
    assert run.verdict(LOGIN) == "WARN"
    assert "superuser" in run.message(LOGIN)


def test_login_wrong_password_fails(state, suite):
    state.kv_put("carbonio-files/db-password", "wrong-password-for-test")
    run = suite("--control", LOGIN)
    assert run.verdict(LOGIN) == "FAIL"
    assert "28P01" in run.message(LOGIN)
    assert "wrong-password-for-test" not in run.output


def test_login_missing_database_fails(state, suite):
    state.kv_put("carbonio-files/db-name", "no-such-database")
    run = suite("--control", LOGIN)
    assert run.verdict(LOGIN) == "FAIL"
    assert "3D000" in run.message(LOGIN)


def test_login_refused_connection_is_error(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace("[database]", f'[database]\nport = {free_port()}'))
    run = suite("--control", LOGIN, f"--site={site}")
    assert run.verdict(LOGIN) == "ERROR"
    assert "cannot reach database host" in run.message(LOGIN)


def test_login_without_kv_credentials_fails(state, suite):
    state.kv_delete("carbonio-files/db-username")
    run = suite("--control", LOGIN)
    assert run.verdict(LOGIN) == "FAIL"
    assert "KV lacks db-username" in run.message(LOGIN)


def test_login_fix_creates_role_and_database(state, suite):
    state.sql(f'DROP DATABASE "{ROLE}" WITH (FORCE)')
    state.sql(f'DROP ROLE "{ROLE}"')
    run = suite("--control", LOGIN, "--fix", "--allow=create-db-role")
    assert run.verdict(LOGIN) == "FIXED"
    assert any("created" in change for change in run.record(LOGIN)["fix"]["changes"])
    assert suite("--control", LOGIN, "--fix").record(LOGIN)["fix"] is None


def test_login_fix_leaves_other_password_alone(state, suite):
    state.kv_put("carbonio-files/db-password", "a-different-password")
    run = suite("--control", LOGIN, "--fix")
    assert run.verdict(LOGIN) == "FAIL"
    assert "password differs from KV" in run.record(LOGIN)["fix"]["reason"]


def test_login_fix_needs_admin_credentials(state, suite, tmp_path):
    state.kv_put("carbonio-files/db-name", "another-database")
    site = state.site_file_with(tmp_path, "")
    text = site.read_text()
    site.write_text(text[: text.index("[database.admin]")] + text[text.index("[packages]"):])
    run = suite("--control", LOGIN, "--fix", f"--site={site}")
    assert run.verdict(LOGIN) == "FAIL"
    assert "[database.admin]" in run.record(LOGIN)["fix"]["reason"]


def test_login_rejected_by_pg_hba_fails(state, suite, compliant_lab):
    hba = compliant_lab.pg.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 reject\n" + original)
    state.sql("SELECT pg_reload_conf()")
    state.on_restore(lambda: state.sql("SELECT pg_reload_conf()"))
    state.on_restore(lambda: hba.write_text(original))
    run = suite("--control", LOGIN)
    assert run.verdict(LOGIN) == "FAIL"
    assert "28000" in run.message(LOGIN)
