"""Node file controls against the lab root: account, configuration tree, token file, CA file, pending setups, package leftovers."""

import os
import stat

import pytest

from tests.conftest import needs_root
from tests.labstate import build_package
from tests.labstate_node_files import (
    account_line,
    forget_backups,
    gateway_ids,
    make_directory,
    move_aside,
    put_file,
    remove_account_lines,
    set_account_field,
    set_directory,
)

pytestmark = [needs_root, pytest.mark.lab]

ACCOUNT = "gateway-account"
TREE = "gateway-config-tree"
TOKEN = "gateway-token-file"
TLS = "gateway-tls-options"
PENDING = "pending-setups"
PACKAGE = "files-db-package-absent"

USER = "carbonio-gateway"
CONFIG_DIR = "/etc/carbonio/gateway/service-discover"
TOKEN_FILE = f"{CONFIG_DIR}/token"
POLICIES_FILE = f"{CONFIG_DIR}/policies.json"
CA_FILE = "/etc/carbonio/external-db-ca.pem"
PENDING_DIR = "/etc/zextras/pending-setups.d"
SERVICE_DEFINITION = "/etc/zextras/service-discover/carbonio-files-db.hcl"
CA_TEXT = "-----BEGIN CERTIFICATE-----\nlab stand-in, never parsed\n-----END CERTIFICATE-----\n"


def entry(*services: dict) -> dict:
    return {"Kind": "terminating-gateway", "Name": "carbonio-gateway", "Services": list(services)}


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- gateway-account -----------------------------------------------------------------

def test_account_passes_when_compliant(suite):
    assert suite("--control", ACCOUNT).verdict(ACCOUNT) == "PASS"


def test_account_missing_user_fails(state, suite):
    remove_account_lines(state, USER, ("/etc/passwd", "/etc/shadow"))
    run = suite("--control", ACCOUNT)
    assert run.verdict(ACCOUNT) == "FAIL"
    assert f"user {USER} does not exist" in run.message(ACCOUNT)


def test_account_missing_group_fails(state, suite):
    remove_account_lines(state, USER, ("/etc/group", "/etc/gshadow"))
    run = suite("--control", ACCOUNT)
    assert run.verdict(ACCOUNT) == "FAIL"
    assert f"group {USER} does not exist" in run.message(ACCOUNT)


def test_account_login_shell_fails(state, suite):
    set_account_field(state, USER, 6, "/bin/bash")
    run = suite("--control", ACCOUNT)
    assert run.verdict(ACCOUNT) == "FAIL"
    assert "login shell /bin/bash" in run.message(ACCOUNT)


@pytest.mark.parametrize("shell", ["/usr/sbin/nologin", "/bin/false"])
def test_account_other_nologin_shell_passes(state, suite, shell):
    set_account_field(state, USER, 6, shell)
    assert suite("--control", ACCOUNT).verdict(ACCOUNT) == "PASS"


def test_account_regular_uid_fails(state, suite):
    set_account_field(state, USER, 2, "1500")
    run = suite("--control", ACCOUNT)
    assert run.verdict(ACCOUNT) == "FAIL"
    assert "uid 1500, outside the system range 1-999" in run.message(ACCOUNT)


def test_account_uid_above_login_defs_max_fails(state, suite):
    uid = int(account_line(state, USER)[2])
    state.write_file("/etc/login.defs", f"# lab login.defs\nSYS_UID_MAX\t\t{uid - 1}\n")
    run = suite("--control", ACCOUNT)
    assert run.verdict(ACCOUNT) == "FAIL"
    assert f"outside the system range 1-{uid - 1}" in run.message(ACCOUNT)
    assert f"SYS_UID_MAX {uid - 1}" in run.record(ACCOUNT)["evidence"]["raw"]["system range"]


def test_account_fix_changes_shell(state, suite):
    set_account_field(state, USER, 6, "/bin/bash")
    state.keep_file("/etc/passwd-")
    run = suite("--control", ACCOUNT, "--fix")
    assert run.verdict(ACCOUNT) == "FIXED"
    assert account_line(state, USER)[6] == "/sbin/nologin"
    assert suite("--control", ACCOUNT, "--fix").record(ACCOUNT)["fix"] is None


def test_account_fix_creates_user_and_group(state, suite):
    remove_account_lines(state, USER)
    run = suite("--control", ACCOUNT, "--fix")
    assert run.verdict(ACCOUNT) == "FIXED"
    user = account_line(state, USER)
    group = account_line(state, USER, "/etc/group")
    assert 0 < int(user[2]) <= 999
    assert int(user[3]) == int(group[2])
    assert user[6] == "/sbin/nologin"
    assert not state.root_path(user[5]).exists()
    assert suite("--control", ACCOUNT, "--fix").record(ACCOUNT)["fix"] is None


def test_account_fix_keeps_regular_uid_account(state, suite):
    set_account_field(state, USER, 2, "1500")
    run = suite("--control", ACCOUNT, "--fix")
    assert run.verdict(ACCOUNT) == "FIX FAILED"
    assert "change it by hand" in run.record(ACCOUNT)["fix"]["reason"]
    assert account_line(state, USER)[2] == "1500"


# -- gateway-config-tree ---------------------------------------------------------------

def test_tree_passes_when_compliant(suite):
    assert suite("--control", TREE).verdict(TREE) == "PASS"


def test_tree_file_owned_by_root_fails(state, suite):
    state.chmod(POLICIES_FILE, 0o640, owner="root")
    run = suite("--control", TREE)
    assert run.verdict(TREE) == "FAIL"
    assert f"{POLICIES_FILE} (root:root)" in run.message(TREE)


def test_tree_fix_gives_files_to_gateway(state, suite):
    state.chmod(POLICIES_FILE, 0o640, owner="root")
    run = suite("--control", TREE, "--fix")
    assert run.verdict(TREE) == "FIXED"
    info = state.root_path(POLICIES_FILE).stat()
    assert (info.st_uid, info.st_gid) == gateway_ids(state)
    assert suite("--control", TREE, "--fix").record(TREE)["fix"] is None


def test_tree_directory_root_700_fails(state, suite):
    set_directory(state, CONFIG_DIR, 0o700, uid=0, gid=0)
    run = suite("--control", TREE)
    assert run.verdict(TREE) == "FAIL"
    assert f"{CONFIG_DIR} (root:root)" in run.message(TREE)
    assert f"{USER} cannot search {CONFIG_DIR}" in run.message(TREE)


def test_tree_fix_repairs_root_directory(state, suite):
    set_directory(state, CONFIG_DIR, 0o700, uid=0, gid=0)
    run = suite("--control", TREE, "--fix")
    assert run.verdict(TREE) == "FIXED"
    info = state.root_path(CONFIG_DIR).stat()
    assert (info.st_uid, info.st_gid) == gateway_ids(state)


def test_tree_parent_not_searchable_fails(state, suite):
    set_directory(state, "/etc/carbonio", 0o700)
    run = suite("--control", TREE)
    assert run.verdict(TREE) == "FAIL"
    assert f"{USER} cannot search /etc/carbonio," in run.message(TREE)


def test_tree_fix_adds_search_bit_to_parent(state, suite):
    set_directory(state, "/etc/carbonio", 0o700)
    run = suite("--control", TREE, "--fix")
    assert run.verdict(TREE) == "FIXED"
    assert mode_of(state.root_path("/etc/carbonio")) == 0o701
    assert any("added o+x" in change for change in run.record(TREE)["fix"]["changes"])


def test_tree_fix_sets_inner_directory_mode(state, suite):
    uid, gid = gateway_ids(state)
    make_directory(state, f"{CONFIG_DIR}/certs", 0o600, uid, gid)
    assert suite("--control", TREE).verdict(TREE) == "FAIL"
    run = suite("--control", TREE, "--fix")
    assert run.verdict(TREE) == "FIXED"
    assert mode_of(state.root_path(f"{CONFIG_DIR}/certs")) == 0o750


def test_tree_missing_directory_fails(state, suite):
    move_aside(state, CONFIG_DIR)
    run = suite("--control", TREE)
    assert run.verdict(TREE) == "FAIL"
    assert "does not exist" in run.message(TREE)


def test_tree_fix_creates_missing_directory(state, suite):
    move_aside(state, CONFIG_DIR)
    run = suite("--control", TREE, "--fix")
    assert run.verdict(TREE) == "FIXED"
    path = state.root_path(CONFIG_DIR)
    assert (path.stat().st_uid, path.stat().st_gid) == gateway_ids(state)
    assert mode_of(path) == 0o750


def test_tree_blocked_runner_directory_is_error(state, suite):
    lab_dir = state.root_path("/").parent
    mode = mode_of(lab_dir)
    os.chmod(lab_dir, 0o700)
    state.on_restore(lambda: os.chmod(lab_dir, mode))
    run = suite("--control", TREE)
    assert run.verdict(TREE) == "ERROR"
    assert f"cannot search {lab_dir} on the runner" in run.message(TREE)


# -- gateway-token-file -----------------------------------------------------------------

def test_token_file_passes_when_compliant(suite):
    assert suite("--control", TOKEN).verdict(TOKEN) == "PASS"


def test_token_file_without_newline_passes(state, suite):
    secret = state.root_path(TOKEN_FILE).read_text().strip()
    uid, gid = gateway_ids(state)
    put_file(state, TOKEN_FILE, secret, 0o600, uid, gid)
    assert suite("--control", TOKEN).verdict(TOKEN) == "PASS"


def test_token_file_root_600_fails(state, suite):
    state.chmod(TOKEN_FILE, 0o600, owner="root")
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert f"owned by root, not {USER}" in run.message(TOKEN)
    assert f"{USER} cannot read it" in run.message(TOKEN)


def test_token_file_world_readable_fails(state, suite):
    state.chmod(TOKEN_FILE, 0o644, owner=USER)
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert "mode 0644 gives group or world access" in run.message(TOKEN)


def test_token_file_in_root_700_directory_fails(state, suite):
    set_directory(state, CONFIG_DIR, 0o700, uid=0, gid=0)
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert f"{USER} cannot read it (it cannot search {CONFIG_DIR})" in run.message(TOKEN)


@pytest.mark.parametrize("content, shape", [
    ("", "nothing (empty)"),
    ("null\n", "the text null"),
    ("4f1c2a9e-0000-4000-8000-000000000001\n4f1c2a9e-0000-4000-8000-000000000002\n", "2 lines"),
    ("not-a-token\n", "11 characters, not a UUID"),
])
def test_token_file_bad_content_fails(state, suite, content, shape):
    uid, gid = gateway_ids(state)
    put_file(state, TOKEN_FILE, content, 0o600, uid, gid)
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert f"it holds {shape}, not one token SecretID" in run.message(TOKEN)


def test_token_file_unknown_secret_fails(state, suite):
    uid, gid = gateway_ids(state)
    put_file(state, TOKEN_FILE, "00000000-0000-0000-0000-000000000000\n", 0o600, uid, gid)
    run = suite("--control", TOKEN)
    assert run.verdict(TOKEN) == "FAIL"
    assert "Consul does not know the secret" in run.message(TOKEN)


def test_token_file_fix_sets_owner_and_mode(state, suite):
    before = state.root_path(TOKEN_FILE).read_text()
    state.chmod(TOKEN_FILE, 0o644, owner="root")
    run = suite("--control", TOKEN, "--fix")
    assert run.verdict(TOKEN) == "FIXED"
    path = state.root_path(TOKEN_FILE)
    assert (path.stat().st_uid, path.stat().st_gid) == gateway_ids(state)
    assert mode_of(path) == 0o600
    assert path.read_text() == before
    assert suite("--control", TOKEN, "--fix").record(TOKEN)["fix"] is None


def test_token_file_fix_repairs_directory(state, suite):
    set_directory(state, CONFIG_DIR, 0o700, uid=0, gid=0)
    run = suite("--control", TOKEN, "--fix")
    assert run.verdict(TOKEN) == "FIXED"
    info = state.root_path(CONFIG_DIR).stat()
    assert (info.st_uid, info.st_gid) == gateway_ids(state)


def test_token_file_fix_never_changes_content(state, suite):
    uid, gid = gateway_ids(state)
    put_file(state, TOKEN_FILE, "null\n", 0o644, uid, gid)
    run = suite("--control", TOKEN, "--fix")
    assert run.verdict(TOKEN) == "FIX FAILED"
    assert "acl-token" in run.record(TOKEN)["fix"]["reason"]
    assert state.root_path(TOKEN_FILE).read_text() == "null\n"
    assert mode_of(state.root_path(TOKEN_FILE)) == 0o600


# -- gateway-tls-options ------------------------------------------------------------------

def test_tls_passes_without_options(suite):
    assert suite("--control", TLS).verdict(TLS) == "PASS"


def test_tls_passes_without_entry(state, suite):
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")
    assert suite("--control", TLS).verdict(TLS) == "PASS"


def test_tls_sni_without_ca_file_warns(state, suite):
    state.write_config_entry(entry({"Name": "carbonio-files-db", "SNI": "external-db.local"}))
    run = suite("--control", TLS)
    assert run.verdict(TLS) == "WARN"
    assert "without CAFile" in run.message(TLS)


def test_tls_readable_ca_file_warns_for_postgresql(state, suite):
    put_file(state, CA_FILE, CA_TEXT, 0o644)
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": CA_FILE, "SNI": "db.example.invalid"}))
    run = suite("--control", TLS)
    assert run.verdict(TLS) == "WARN"
    assert "PostgreSQL" in run.message(TLS)
    assert "SSLRequest" in run.message(TLS)


def test_tls_missing_ca_file_fails(state, suite):
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": CA_FILE}))
    run = suite("--control", TLS)
    assert run.verdict(TLS) == "FAIL"
    assert f"CAFile {CA_FILE} of carbonio-files-db does not exist" in run.message(TLS)


def test_tls_root_only_ca_file_fails(state, suite):
    put_file(state, CA_FILE, CA_TEXT, 0o600)
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": CA_FILE}))
    run = suite("--control", TLS)
    assert run.verdict(TLS) == "FAIL"
    assert f"{USER} cannot read CAFile {CA_FILE}" in run.message(TLS)


def test_tls_wildcard_item_applies(state, suite):
    state.write_config_entry(entry({"Name": "*", "CAFile": CA_FILE}))
    run = suite("--control", TLS)
    assert run.verdict(TLS) == "FAIL"
    assert "does not exist" in run.message(TLS)


def test_tls_fix_makes_ca_file_readable(state, suite):
    put_file(state, CA_FILE, CA_TEXT, 0o600)
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": CA_FILE}))
    run = suite("--control", TLS, "--fix")
    assert run.verdict(TLS) == "FIXED"
    assert "PostgreSQL" in run.message(TLS)
    path = state.root_path(CA_FILE)
    assert path.stat().st_gid == gateway_ids(state)[1]
    assert mode_of(path) == 0o640
    services = state.consul_ok("GET", "/v1/config/terminating-gateway/carbonio-gateway")["Services"]
    assert services[0]["CAFile"] == CA_FILE


def test_tls_fix_never_removes_ca_file(state, suite):
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": CA_FILE}))
    run = suite("--control", TLS, "--fix")
    assert run.verdict(TLS) == "FIX FAILED"
    assert "never removes CAFile" in run.record(TLS)["fix"]["reason"]
    services = state.consul_ok("GET", "/v1/config/terminating-gateway/carbonio-gateway")["Services"]
    assert services[0]["CAFile"] == CA_FILE


# -- pending-setups ---------------------------------------------------------------------------

def test_pending_setups_missing_directory_passes(suite):
    run = suite("--control", PENDING)
    assert run.verdict(PENDING) == "PASS"
    assert "pending-setups is not installed" in run.record(PENDING)["evidence"]["raw"]["pending-setups"]


def test_pending_setups_done_only_passes(state, suite):
    make_directory(state, f"{PENDING_DIR}/done", 0o700)
    (state.root_path(f"{PENDING_DIR}/done") / "carbonio-files.sh").write_text("carbonio-files-setup\n")
    (state.root_path(PENDING_DIR) / "README").write_text("not a setup script\n")
    (state.root_path(PENDING_DIR) / "old.sh").mkdir()
    assert suite("--control", PENDING).verdict(PENDING) == "PASS"


def test_pending_setups_script_fails(state, suite):
    make_directory(state, PENDING_DIR, 0o700)
    (state.root_path(PENDING_DIR) / "111-carbonio-files-db-setup.sh").write_text("carbonio-files-db setup\n")
    (state.root_path(PENDING_DIR) / "broken.sh").symlink_to("does-not-exist.sh")
    run = suite("--control", PENDING)
    assert run.verdict(PENDING) == "FAIL"
    assert "111-carbonio-files-db-setup.sh" in run.message(PENDING)
    assert "broken.sh" not in run.message(PENDING)


def test_pending_setups_linked_script_fails(state, suite):
    make_directory(state, "/usr/share/carbonio", 0o755)
    (state.root_path("/usr/share/carbonio") / "setup.sh").write_text("true\n")
    make_directory(state, PENDING_DIR, 0o700)
    (state.root_path(PENDING_DIR) / "carbonio-tasks.sh").symlink_to("../../../usr/share/carbonio/setup.sh")
    run = suite("--control", PENDING)
    assert run.verdict(PENDING) == "FAIL"
    assert "carbonio-tasks.sh" in run.message(PENDING)


def test_pending_setups_has_no_fixer(state, suite):
    make_directory(state, PENDING_DIR, 0o700)
    (state.root_path(PENDING_DIR) / "carbonio-tasks.sh").write_text("carbonio-tasks setup\n")
    run = suite("--control", PENDING, "--fix")
    assert run.verdict(PENDING) == "FAIL"
    assert run.record(PENDING)["fix"]["status"] == "none"
    assert state.root_path(f"{PENDING_DIR}/carbonio-tasks.sh").exists()


# -- files-db-package-absent: removed packages that leave their service definition ------------

def test_package_leftover_service_definition_fails(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    state.dpkg("--remove", "carbonio-files-db")
    assert state.package_status("carbonio-files-db") == "deinstall ok config-files"
    run = suite("--control", PACKAGE)
    assert run.verdict(PACKAGE) == "FAIL"
    assert SERVICE_DEFINITION in run.message(PACKAGE)


def test_package_fix_purges_config_files_state(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    state.dpkg("--remove", "carbonio-files-db")
    run = suite("--control", PACKAGE, "--fix", "--allow=remove-package")
    assert run.verdict(PACKAGE) == "FIXED"
    assert state.package_status("carbonio-files-db") == "not-installed"
    assert not state.root_path(SERVICE_DEFINITION).exists()


def test_package_config_files_fix_needs_opt_in(state, suite, tmp_path):
    state.install_package(build_package(tmp_path))
    state.dpkg("--remove", "carbonio-files-db")
    run = suite("--control", PACKAGE, "--fix")
    assert run.verdict(PACKAGE) == "FAIL"
    assert "remove-package" in run.record(PACKAGE)["fix"]["reason"]
    assert state.root_path(SERVICE_DEFINITION).exists()
