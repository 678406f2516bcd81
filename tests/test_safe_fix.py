"""Safe remediation: dry run, prerequisites, opt-ins, journal and rollback, lock, faults, self-token guard."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import ALL_OPT_INS, needs_root
from tests.labstate import LabState
from tests.suite import CHECKOUT, run_suite

pytestmark = [needs_root, pytest.mark.lab]

TOKEN_FILE = "/etc/carbonio/gateway/service-discover/token"
JSON_WITHOUT_DB = (
    '{"key_prefix":[{"carbonio-gateway/":{"policy":"read"}}],'
    '"node_prefix":[{"":{"policy":"read"}}],'
    '"service":[{"carbonio-gateway":{"policy":"write"}}]}'
)
EXIT_LOCKED = 13
STALL_SECONDS = 4
EXIT_ROLLBACK_INCOMPLETE = 14


def lab_digest(lab) -> dict:
    """Fingerprint everything a fixer could change: Consul, the root's files, PostgreSQL."""
    token = Path(lab.management_token_file).read_text().strip()
    consul = requests.get(f"{lab.consul_url}/_double/state", headers={"X-Consul-Token": token}, timeout=10).json()

    files = {}
    for path in sorted(Path(lab.root).rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            content = os.readlink(path).encode()
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = b""
        files[str(path)] = (info.st_mode, info.st_uid, info.st_gid, hashlib.sha256(content).hexdigest())

    with psycopg.connect(**lab.pg.connect_kwargs()) as conn:
        roles = conn.execute("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY 1").fetchall()
        databases = conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database ORDER BY 1").fetchall()
    return {"consul": consul, "files": files, "roles": roles, "databases": databases}


def inject(lab, **fault) -> None:
    token = Path(lab.management_token_file).read_text().strip()
    answer = requests.post(f"{lab.consul_url}/_double/faults", json=fault, headers={"X-Consul-Token": token}, timeout=10)
    answer.raise_for_status()


def clear_faults(lab) -> None:
    token = Path(lab.management_token_file).read_text().strip()
    requests.delete(f"{lab.consul_url}/_double/faults", headers={"X-Consul-Token": token}, timeout=10)


# -- dry run ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dry(drifted_lab, tmp_path_factory):
    work = tmp_path_factory.mktemp("dry")
    before = lab_digest(drifted_lab)
    run = run_suite(drifted_lab, work, "--fix", "--dry-run", *ALL_OPT_INS, f"--html={work / 'plan.html'}")
    return {"run": run, "before": before, "after": lab_digest(drifted_lab), "work": work}


def test_dry_run_changes_nothing(dry):
    assert dry["before"] == dry["after"]


def test_dry_run_keeps_failures_and_plans(dry):
    run = dry["run"]
    assert run.verdict("acl-policy") == "FAIL"
    assert run.record("acl-policy")["fix"]["status"] == "planned"
    assert run.code == 10


def test_dry_run_shows_policy_rules_diff(dry):
    plan = "\n".join(dry["run"].record("acl-policy")["fix"]["plan"])
    assert "would update ACL policy carbonio-gateway-policy" in plan
    assert '+    "carbonio-files-db": {' in plan


def test_dry_run_names_kv_key_not_value(dry, drifted_lab):
    plan = "\n".join(dry["run"].record("kv-db-credentials")["fix"]["plan"])
    assert "KV key carbonio-files/db-password" in plan
    password = (Path(drifted_lab.dir) / "secrets" / "db-password").read_text().strip()
    assert password not in dry["run"].output
    assert password not in (dry["work"] / "plan.html").read_text()


def test_dry_run_shows_unit_file_diff(dry):
    plan = "\n".join(dry["run"].record("gateway-unit")["fix"]["plan"])
    assert "-token-file /etc/carbonio/gateway/service-discover/token" in plan
    assert "enable carbonio-gateway.service" in plan


def test_dry_run_masks_sql_secrets(state, suite):
    state.sql('DROP DATABASE "carbonio-files-adm" WITH (FORCE)')
    state.sql('DROP ROLE "carbonio-files-adm"')
    run = suite("--control", "db-login", "--dry-run", "--allow=create-db-role")
    plan = "\n".join(run.record("db-login")["fix"]["plan"])
    assert 'CREATE ROLE "carbonio-files-adm" LOGIN PASSWORD <scram verifier>' in plan
    assert 'CREATE DATABASE "carbonio-files-adm"' in plan
    assert state.kv_value("carbonio-files/db-password") not in run.output
    fixed = suite("--control", "db-login", "--fix", "--allow=create-db-role")
    assert fixed.verdict("db-login") == "FIXED"


def test_dry_run_plan_in_html_report(dry):
    assert "Planned change" in (dry["work"] / "plan.html").read_text()


# -- opt-ins ------------------------------------------------------------------------------

def test_create_db_role_needs_opt_in(state, suite):
    state.sql('DROP DATABASE "carbonio-files-adm" WITH (FORCE)')
    state.sql('DROP ROLE "carbonio-files-adm"')
    refused = suite("--control", "db-login", "--fix")
    assert refused.verdict("db-login") == "FAIL"
    assert "--allow=create-db-role" in refused.record("db-login")["fix"]["reason"]
    assert suite("--control", "db-login", "--fix", "--allow=create-db-role").verdict("db-login") == "FIXED"


def test_deregister_service_needs_opt_in(state, suite):
    service = state.site["external_service"]
    state.deregister("external-files-db-node", "carbonio-gateway")
    state.register({"Node": "external-files-db-node", "Address": service["address"],
                    "NodeMeta": {"external-node": "true", "external-probe": "true"},
                    "Service": {"ID": "stale-id", "Service": "carbonio-files-db", "Port": service["port"]}})
    refused = suite("--control", "catalog-external-service", "--fix")
    assert refused.verdict("catalog-external-service") == "FAIL"
    assert "--allow=deregister-service" in refused.record("catalog-external-service")["fix"]["reason"]
    allowed = suite("--control", "catalog-external-service", "--fix", "--allow=deregister-service")
    assert allowed.verdict("catalog-external-service") == "FIXED"


# -- self-token guard -------------------------------------------------------------------

def test_guard_keeps_own_token_permissions(state, suite, tmp_path):
    own = state.create_token([{"ID": "00000000-0000-0000-0000-000000000001"}, {"Name": "carbonio-gateway-policy"}])
    state.set_policy_rules(JSON_WITHOUT_DB)
    run = suite("--control", "acl-policy", "--fix", token_file=str(state.token_file_for(tmp_path, own)))
    assert run.verdict("acl-policy") == "FIX FAILED"
    assert "authenticates with" in run.record("acl-policy")["fix"]["reason"]
    assert state.policy()["Rules"] == JSON_WITHOUT_DB


# -- faults in the middle of a fix -------------------------------------------------------

def break_policy(state):
    state.set_policy_rules(JSON_WITHOUT_DB)


def break_token(state):
    state.write_file(TOKEN_FILE, "null\n")
    for path in state.root_path(TOKEN_FILE).parent.glob("token.*.bak"):
        state.on_restore(lambda path=path: path.unlink(missing_ok=True))


def break_registration(state):
    service = state.site["external_service"]
    state.register({"Node": "external-files-db-node", "Address": service["address"],
                    "NodeMeta": {"external-node": "true", "external-probe": "true"},
                    "Service": {"ID": "carbonio-gateway", "Service": "carbonio-files-db", "Port": 5433}})


def break_entry(state):
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")


def break_intention(state):
    state.delete_config_entry("service-intentions", "carbonio-files-db")


def break_kv(state):
    state.kv_delete("carbonio-files/db-password")


FAULT_CASES = {
    "acl-policy": (break_policy, "/v1/acl/policy/", "PUT"),
    "acl-token": (break_token, "/v1/acl/token", "PUT"),
    "catalog-external-service": (break_registration, "/v1/catalog/register", "PUT"),
    "gateway-config-entry": (break_entry, "/v1/config", "PUT"),
    "intention": (break_intention, "/v1/config", "PUT"),
    "kv-db-credentials": (break_kv, "/v1/kv/carbonio-files/", "PUT"),
}


@pytest.mark.parametrize("mode", ["status500", "stall", "drop"])
@pytest.mark.parametrize("control_id", sorted(FAULT_CASES))
def test_fault_mid_fix_then_rerun_completes(state, suite, compliant_lab, control_id, mode):
    breaker, prefix, method = FAULT_CASES[control_id]
    breaker(state)
    state.on_restore(lambda: clear_faults(compliant_lab))
    inject(compliant_lab, path_prefix=prefix, method=method, mode=mode, count=1, stall_seconds=STALL_SECONDS)

    failed = suite("--control", control_id, "--fix", "--consul-timeout=2")
    assert failed.verdict(control_id) == "FIX FAILED", failed.output[-2000:]
    assert failed.record(control_id)["fix"]["reason"]
    assert failed.code == 10

    clear_faults(compliant_lab)
    if mode == "stall":
        # The stalled write is still pending in Consul; a rerun that started
        # now would see it land mid-fix and correctly refuse to overwrite it.
        time.sleep(STALL_SECONDS)
    again = suite("--control", control_id, "--fix")
    # A stalled write may still land after the client gave up, so the rerun can find it done.
    assert again.verdict(control_id) in ("FIXED", "PASS", "WARN")


# -- prerequisites -------------------------------------------------------------------------

def test_failed_prerequisite_skips_dependant(drifted_lab, tmp_path):
    inject(drifted_lab, path_prefix="/v1/acl/policy/", method="PUT", mode="status500", count=5)
    try:
        run = run_suite(drifted_lab, tmp_path, "--fix", "--control", "acl-policy", "--control", "acl-token")
    finally:
        clear_faults(drifted_lab)
    assert run.verdict("acl-policy") == "FIX FAILED"
    assert run.verdict("acl-token") == "FAIL"
    fix = run.record("acl-token")["fix"]
    assert fix["status"] == "not attempted"
    assert "acl-policy" in fix["reason"]


# -- lock ------------------------------------------------------------------------------------

def test_second_fix_waits_then_stops(compliant_lab, suite):
    from mesh_compliance.consul import ConsulClient, resolve_settings
    from mesh_compliance.locking import FixLock

    settings = resolve_settings(compliant_lab.consul_url, str(compliant_lab.management_token_file))
    holder = FixLock("test-holder", str(Path(compliant_lab.root) / "run/lock/carbonio-mesh-compliance.lock"),
                     ConsulClient(settings), timeout=5)
    holder.acquire()
    try:
        blocked = suite("--fix", "--lock-timeout=1")
        audit = suite()
    finally:
        holder.release()
    assert blocked.code == EXIT_LOCKED
    assert "test-holder" in blocked.output
    assert audit.code == 0
    assert suite("--fix").code == 0


def test_concurrent_fix_runs_never_both_apply(compliant_lab, state, tmp_path):
    break_policy(state)
    state.on_restore(lambda: clear_faults(compliant_lab))
    inject(compliant_lab, path_prefix="/v1/acl/policy/", method="PUT", mode="stall", count=1, stall_seconds=6)

    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={CHECKOUT}",
               *compliant_lab.pytest_args, "--control=acl-policy", "--fix", "--consul-timeout=10",
               f"--backup-dir={tmp_path / 'backups'}", str(CHECKOUT / "checks")]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONSUL_")}
    first = subprocess.Popen(command, cwd=CHECKOUT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2.5)
        second = subprocess.run([*command[:-1], "--lock-timeout=1", command[-1]], cwd=CHECKOUT, env=environment,
                                capture_output=True, text=True, timeout=120)
    finally:
        output, _ = first.communicate(timeout=120)
    assert second.returncode == EXIT_LOCKED, second.stdout[-2000:]
    assert first.returncode == 0, output[-2000:]


# -- journal and rollback ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def rolled_back(lab_parent, tmp_path_factory):
    from mesh_compliance.lab import Lab

    lab = Lab.up(lab_parent / "rollback")
    work = tmp_path_factory.mktemp("rollback")
    state = LabState(lab)
    seeded = {
        "rules": state.policy()["Rules"],
        "token": state.root_path(TOKEN_FILE).read_text(),
        "unit": state.root_path("/lib/systemd/system/carbonio-gateway.service").read_text(),
        "catalog": state.consul_ok("GET", "/v1/catalog/service/carbonio-files-db"),
        "entry": state.consul("GET", "/v1/config/terminating-gateway/carbonio-gateway").status_code,
        "password": state.kv_value("carbonio-files/db-password"),
        "enabled": state.systemctl("is-enabled", "carbonio-gateway.service").stdout.strip(),
    }
    fixed = run_suite(lab, work, "--fix", *ALL_OPT_INS, f"--journal-dir={work / 'journal'}")
    run_id = fixed.document["run_id"]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONSUL_")}
    rollback = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={CHECKOUT}", *lab.pytest_args,
         f"--journal-dir={work / 'journal'}", f"--rollback={run_id}"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=300, env=environment,
    )
    current = {
        "rules": state.policy()["Rules"],
        "token": state.root_path(TOKEN_FILE).read_text(),
        "unit": state.root_path("/lib/systemd/system/carbonio-gateway.service").read_text(),
        "catalog": state.consul_ok("GET", "/v1/catalog/service/carbonio-files-db"),
        "entry": state.consul("GET", "/v1/config/terminating-gateway/carbonio-gateway").status_code,
        "password": state.kv_value("carbonio-files/db-password"),
        "enabled": state.systemctl("is-enabled", "carbonio-gateway.service").stdout.strip(),
    }
    journal = (work / "journal" / f"{run_id}.jsonl").read_text()
    yield {"seeded": seeded, "current": current, "rollback": rollback, "journal": journal, "fixed": fixed, "lab": lab}
    lab.down()


@pytest.mark.parametrize("key", ["rules", "token", "unit", "entry", "password", "enabled"])
def test_rollback_restores_previous_state(rolled_back, key):
    assert rolled_back["current"][key] == rolled_back["seeded"][key], rolled_back["rollback"].stdout[-3000:]


def test_rollback_restores_catalog_entry(rolled_back):
    def brief(entries):
        return [(entry["ServiceID"], entry["ServicePort"], entry["NodeMeta"]) for entry in entries]
    assert brief(rolled_back["current"]["catalog"]) == brief(rolled_back["seeded"]["catalog"])


def test_rollback_reports_what_it_cannot_undo(rolled_back):
    output = rolled_back["rollback"].stdout
    assert rolled_back["rollback"].returncode == EXIT_ROLLBACK_INCOMPLETE
    assert "NOT restored" in output
    assert "dpkg" in output


def test_journal_has_no_secrets(rolled_back):
    lab = rolled_back["lab"]
    secrets = [path.read_text().strip() for path in (Path(lab.dir) / "secrets").iterdir()]
    secrets.append(Path(lab.management_token_file).read_text().strip())
    for secret in secrets:
        assert secret not in rolled_back["journal"]
    entries = [json.loads(line) for line in rolled_back["journal"].splitlines()]
    assert {entry["control"] for entry in entries} >= {"acl-policy", "acl-token", "gateway-unit"}
    assert all(entry["run_id"] == rolled_back["fixed"].document["run_id"] for entry in entries)
