"""ACL controls against the lab: policy rules by meaning, the gateway token file."""

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.lab]

POLICY = "acl-policy"
TOKEN = "acl-token"

HCL_SUPERSET = '''
key_prefix "carbonio-gateway/" { policy = "read" }
node_prefix "" { policy = "read" }
service "carbonio-gateway" { policy = "write" }
service "carbonio-files-db" { policy = "write" }
agent_prefix "" { policy = "read" }
'''

JSON_WITHOUT_DB = (
    '{"key_prefix":[{"carbonio-gateway/":{"policy":"read"}}],'
    '"node_prefix":[{"":{"policy":"read"}}],'
    '"service":[{"carbonio-gateway":{"policy":"write"}}]}'
)


def test_policy_passes_when_compliant(suite):
    assert suite("--control", POLICY).verdict(POLICY) == "PASS"


def test_policy_hcl_superset_passes(state, suite):
    state.set_policy_rules(HCL_SUPERSET)
    assert suite("--control", POLICY).verdict(POLICY) == "PASS"


def test_policy_json_without_db_write_fails(state, suite):
    state.set_policy_rules(JSON_WITHOUT_DB)
    run = suite("--control", POLICY)
    assert run.verdict(POLICY) == "FAIL"
    assert 'service "carbonio-files-db" write' in run.message(POLICY)
    assert run.code == 10


def test_policy_extra_write_warns(state, suite):
    state.set_policy_rules(HCL_SUPERSET + 'service_prefix "" { policy = "write" }\n')
    run = suite("--control", POLICY)
    assert run.verdict(POLICY) == "WARN"
    assert run.code == 0


def test_policy_missing_fails_with_management_token(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace('policy = "carbonio-gateway-policy"', 'policy = "no-such-policy"'))
    run = suite("--control", POLICY, f"--site={site}")
    assert run.verdict(POLICY) == "FAIL"
    assert "no-such-policy does not exist" in run.message(POLICY)


def test_policy_anonymous_token_is_error(suite, tmp_path):
    empty = tmp_path / "empty-token"
    empty.write_text("")
    run = suite("--control", POLICY, token_file=str(empty))
    assert run.verdict(POLICY) == "ERROR"
    assert run.code == 11


def test_policy_unknown_token_is_error(suite, tmp_path):
    bogus = tmp_path / "bogus-token"
    bogus.write_text("6a1253a8-4b3c-4f5e-9d4a-0f6e2b9d1c11\n")
    run = suite("--control", POLICY, token_file=str(bogus))
    assert run.verdict(POLICY) == "ERROR"
    assert "unknown to Consul" in run.message(POLICY)


def test_policy_token_without_acl_read_is_error(state, suite, tmp_path):
    reader = state.create_policy("kv-reader-only", 'key_prefix "" { policy = "read" }')
    token = state.create_token([{"ID": reader["ID"]}])
    run = suite("--control", POLICY, token_file=str(state.token_file_for(tmp_path, token)))
    assert run.verdict(POLICY) == "ERROR"
    assert "lacks permission" in run.message(POLICY)
    assert token["SecretID"] not in run.output


def test_policy_fix_updates_rules_in_place(state, suite):
    before = state.policy()
    state.set_policy_rules(JSON_WITHOUT_DB)
    run = suite("--control", POLICY, "--fix")
    assert run.verdict(POLICY) == "FIXED"
    assert state.policy()["ID"] == before["ID"]
    assert suite("--control", POLICY, "--fix").record(POLICY)["fix"] is None


def test_policy_fix_keeps_previous_version(state, suite, tmp_path):
    state.set_policy_rules(JSON_WITHOUT_DB)
    suite("--control", POLICY, "--fix")
    kept = list(tmp_path.glob("backups/*/consul/acl-policy--carbonio-gateway-policy.json"))
    assert len(kept) == 1
    assert "carbonio-gateway/" in kept[0].read_text()


TOKEN_FILE = "/etc/carbonio/gateway/service-discover/token"


def test_token_passes_when_compliant(suite):
    assert suite("--control", TOKEN).verdict(TOKEN) == "PASS"


@pytest.mark.parametrize("content, reason", [
    ("", "holds no token"),
    ("null\n", "holds no token"),
    ("00000000-0000-0000-0000-000000000000\n", "does not know the token"),
    ("not-a-token\n", "does not hold a token SecretID"),
])
def test_token_file_bad_content_fails(state, suite, content, reason):
    state.write_file(TOKEN_FILE, content)
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert reason in run.message(TOKEN)


def test_token_file_missing_fails(state, suite):
    state.remove_file(TOKEN_FILE)
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert "does not exist" in run.message(TOKEN)


def test_management_token_in_file_fails(state, suite):
    token = state.create_token([{"ID": "00000000-0000-0000-0000-000000000001"}, {"Name": "carbonio-gateway-policy"}])
    state.write_file(TOKEN_FILE, token["SecretID"] + "\n")
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert "global-management" in run.message(TOKEN)
    assert token["SecretID"] not in run.output


def test_token_not_linked_to_policy_fails(state, suite):
    other = state.create_policy("unrelated", 'service "x" { policy = "read" }')
    token = state.create_token([{"ID": other["ID"]}])
    state.write_file(TOKEN_FILE, token["SecretID"] + "\n")
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert "not linked to carbonio-gateway-policy" in run.message(TOKEN)


def test_token_with_harmless_second_policy_passes(state, suite):
    narrow = state.create_policy("narrow", 'service "carbonio-gateway" { policy = "read" }')
    token = state.create_token([{"Name": "carbonio-gateway-policy"}, {"ID": narrow["ID"]}])
    state.write_file(TOKEN_FILE, token["SecretID"] + "\n")
    assert suite("--control", TOKEN).verdict(TOKEN) == "PASS"


def test_expiring_token_warns(state, suite):
    token = state.create_token([{"Name": "carbonio-gateway-policy"}], ExpirationTTL="1h")
    state.write_file(TOKEN_FILE, token["SecretID"] + "\n")
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "WARN"
    assert "expires at" in run.message(TOKEN)


def test_token_fix_writes_private_file(state, suite):
    state.write_file(TOKEN_FILE, "null\n")
    run = suite("--control", TOKEN, "--fix")
    assert run.verdict(TOKEN) == "FIXED"
    info = state.root_path(TOKEN_FILE).stat()
    assert oct(info.st_mode & 0o777) == "0o600"
    assert info.st_uid != 0
    backups = list(state.root_path(TOKEN_FILE).parent.glob("token.*.bak"))
    assert "null\n" in [path.read_text() for path in backups]
    for path in backups:
        state.on_restore(path.unlink)


def test_token_fix_second_run_changes_nothing(state, suite):
    state.write_file(TOKEN_FILE, "")
    suite("--control", TOKEN, "--fix")
    content = state.root_path(TOKEN_FILE).read_text()
    for path in state.root_path(TOKEN_FILE).parent.glob("token.*.bak"):
        state.on_restore(path.unlink)
    run = suite("--control", TOKEN, "--fix")
    assert run.verdict(TOKEN) == "PASS"
    assert state.root_path(TOKEN_FILE).read_text() == content
