"""Configuration file controls against the lab: each file compared with what Consul stores, and rewritten from it."""

import json
import os
import stat

import hcl
import pytest

from mesh_compliance.expected import policy_rules
from mesh_compliance.site import Site
from tests.conftest import needs_root
from tests.labstate_node_files import forget_backups, gateway_ids

pytestmark = [needs_root, pytest.mark.lab]

POLICY = "policy-file-matches"
REGISTRATION = "registration-file-matches"
ENTRY = "gateway-config-file-matches"

CONFIG_DIR = "/etc/carbonio/gateway/service-discover"
POLICIES_FILE = f"{CONFIG_DIR}/policies.json"
REGISTRATION_FILE = f"{CONFIG_DIR}/carbonio-files-db-external.json"
ENTRY_FILE = f"{CONFIG_DIR}/gateway-config.hcl"

HCL_RULES = """\
key_prefix "carbonio-gateway/" { policy = "read" }
node_prefix "" { policy = "read" }
service "carbonio-gateway" { policy = "write" }
service "carbonio-files-db" { policy = "write" }
"""
TRIMMED_RULES = json.dumps({
    "key_prefix": {"carbonio-gateway/": {"policy": "read"}},
    "node_prefix": {"": {"policy": "read"}},
    "service": {"carbonio-gateway": {"policy": "write"}},
})


def entry(*services: dict) -> dict:
    return {"Kind": "terminating-gateway", "Name": "carbonio-gateway", "Services": list(services)}


def registration_file(state) -> dict:
    return json.loads(state.root_path(REGISTRATION_FILE).read_text())


def assert_rewritten(state, node_path: str) -> None:
    path = state.root_path(node_path)
    assert (path.stat().st_uid, path.stat().st_gid) == gateway_ids(state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert list(path.parent.glob(f"{path.name}.*.bak")), f"no backup of {node_path}"


# -- policy-file-matches ------------------------------------------------------------------

def test_policy_file_passes_when_compliant(suite):
    assert suite("--control", POLICY).verdict(POLICY) == "PASS"


def test_policy_file_in_hcl_passes(state, suite):
    state.write_file(POLICIES_FILE, HCL_RULES)
    assert suite("--control", POLICY).verdict(POLICY) == "PASS"


def test_policy_file_missing_fails(state, suite):
    state.remove_file(POLICIES_FILE)
    run = suite("--control", POLICY)
    assert run.verdict(POLICY) == "FAIL"
    assert f"{POLICIES_FILE} does not exist" in run.message(POLICY)


def test_policy_file_not_parsing_fails(state, suite):
    state.write_file(POLICIES_FILE, '{"service": {"carbonio-gateway": ')
    run = suite("--control", POLICY)
    assert run.verdict(POLICY) == "FAIL"
    assert "does not parse" in run.message(POLICY)


def test_policy_file_lacking_grant_fails(state, suite):
    state.write_file(POLICIES_FILE, TRIMMED_RULES)
    run = suite("--control", POLICY)
    assert run.verdict(POLICY) == "FAIL"
    assert 'only Consul grants service "carbonio-files-db" write' in run.message(POLICY)


def test_policy_file_extra_grant_fails(state, suite):
    state.write_file(POLICIES_FILE, HCL_RULES + 'agent_prefix "" { policy = "read" }\n')
    run = suite("--control", POLICY)
    assert run.verdict(POLICY) == "FAIL"
    assert 'only the file grants agent_prefix "" read' in run.message(POLICY)


def test_policy_missing_in_consul_fails(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace('policy = "carbonio-gateway-policy"', 'policy = "carbonio-gateway-policy-2"'))
    run = suite("--control", POLICY, f"--site={site}")
    assert run.verdict(POLICY) == "FAIL"
    assert "the file would re-create it" in run.message(POLICY)


def test_policy_file_fix_rewrites_json(state, suite):
    state.write_file(POLICIES_FILE, TRIMMED_RULES)
    forget_backups(state, POLICIES_FILE)
    run = suite("--control", POLICY, "--fix")
    assert run.verdict(POLICY) == "FIXED"
    assert json.loads(state.root_path(POLICIES_FILE).read_text()) == json.loads(policy_rules(Site()))
    assert_rewritten(state, POLICIES_FILE)
    assert suite("--control", POLICY, "--fix").record(POLICY)["fix"] is None


def test_policy_file_fix_converts_hcl_rules(state, suite):
    state.set_policy_rules(HCL_RULES + 'agent_prefix "" { policy = "read" }\n')
    state.keep_file(POLICIES_FILE)
    forget_backups(state, POLICIES_FILE)
    assert suite("--control", POLICY).verdict(POLICY) == "FAIL"
    run = suite("--control", POLICY, "--fix")
    assert run.verdict(POLICY) == "FIXED"
    rules = json.loads(state.root_path(POLICIES_FILE).read_text())
    assert rules["agent_prefix"] == {"": {"policy": "read"}}
    assert rules["service"]["carbonio-files-db"] == {"policy": "write"}


# -- registration-file-matches -------------------------------------------------------------

def test_registration_file_passes_when_compliant(suite):
    assert suite("--control", REGISTRATION).verdict(REGISTRATION) == "PASS"


def test_registration_file_lowercase_keys_pass(state, suite):
    body = registration_file(state)
    lowered = {"node": body["Node"], "address": body["Address"], "nodemeta": body["NodeMeta"],
               "service": {"id": body["Service"]["ID"], "service": body["Service"]["Service"], "port": body["Service"]["Port"]}}
    state.write_file(REGISTRATION_FILE, json.dumps(lowered))
    assert suite("--control", REGISTRATION).verdict(REGISTRATION) == "PASS"


def test_registration_file_other_port_fails(state, suite):
    body = registration_file(state)
    body["Service"]["Port"] = 5433
    state.write_file(REGISTRATION_FILE, json.dumps(body))
    run = suite("--control", REGISTRATION)
    assert run.verdict(REGISTRATION) == "FAIL"
    assert "Service.Port: file 5433" in run.message(REGISTRATION)


def test_registration_file_other_meta_fails(state, suite):
    body = registration_file(state)
    body["NodeMeta"] = {"external-node": "true"}
    body["Address"] = "db.example.invalid"
    state.write_file(REGISTRATION_FILE, json.dumps(body))
    run = suite("--control", REGISTRATION)
    assert run.verdict(REGISTRATION) == "FAIL"
    assert "NodeMeta: file" in run.message(REGISTRATION)
    assert "Address: file 'db.example.invalid'" in run.message(REGISTRATION)


def test_registration_file_not_json_fails(state, suite):
    state.write_file(REGISTRATION_FILE, "Node = external-files-db-node\n")
    run = suite("--control", REGISTRATION)
    assert run.verdict(REGISTRATION) == "FAIL"
    assert "does not parse" in run.message(REGISTRATION)


def test_registration_file_missing_fails(state, suite):
    state.remove_file(REGISTRATION_FILE)
    run = suite("--control", REGISTRATION)
    assert run.verdict(REGISTRATION) == "FAIL"
    assert "does not exist" in run.message(REGISTRATION)


def test_registration_missing_in_consul_fails(state, suite):
    state.deregister("external-files-db-node", "carbonio-gateway")
    run = suite("--control", REGISTRATION)
    assert run.verdict(REGISTRATION) == "FAIL"
    assert "the file would re-create it" in run.message(REGISTRATION)


def test_registration_file_fix_rewrites_json(state, suite):
    expected = registration_file(state)
    body = dict(expected, Address="db.example.invalid")
    state.write_file(REGISTRATION_FILE, json.dumps(body))
    forget_backups(state, REGISTRATION_FILE)
    run = suite("--control", REGISTRATION, "--fix")
    assert run.verdict(REGISTRATION) == "FIXED"
    assert registration_file(state) == expected
    assert_rewritten(state, REGISTRATION_FILE)
    assert suite("--control", REGISTRATION, "--fix").record(REGISTRATION)["fix"] is None


# -- gateway-config-file-matches -----------------------------------------------------------

def test_entry_file_passes_when_compliant(suite):
    assert suite("--control", ENTRY).verdict(ENTRY) == "PASS"


def test_entry_file_snake_case_passes(state, suite):
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": "/etc/carbonio/external-db-ca.pem", "SNI": "external-db.local"}))
    state.write_file(ENTRY_FILE, 'kind = "terminating-gateway"\nname = "carbonio-gateway"\nservices = [\n'
                                 '  { name = "carbonio-files-db", ca_file = "/etc/carbonio/external-db-ca.pem", sni = "external-db.local" }\n]\n')
    assert suite("--control", ENTRY).verdict(ENTRY) == "PASS"


def test_entry_file_lacking_ca_file_fails(state, suite):
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": "/etc/carbonio/external-db-ca.pem"}))
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert 'Services[carbonio-files-db].CAFile: file unset, Consul "/etc/carbonio/external-db-ca.pem"' in run.message(ENTRY)


def test_entry_file_extra_service_fails(state, suite):
    text = state.root_path(ENTRY_FILE).read_text().replace("  }\n]", '  },\n  { Name = "legacy-ldap" }\n]')
    state.write_file(ENTRY_FILE, text)
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert "Services[legacy-ldap]: linked only in the file" in run.message(ENTRY)


def test_entry_file_other_name_fails(state, suite):
    text = state.root_path(ENTRY_FILE).read_text().replace('Name = "carbonio-gateway"', 'Name = "carbonio-gateway-2"')
    state.write_file(ENTRY_FILE, text)
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert 'Name: file "carbonio-gateway-2", Consul "carbonio-gateway"' in run.message(ENTRY)


def test_entry_file_not_parsing_fails(state, suite):
    state.write_file(ENTRY_FILE, 'Kind = "terminating-gateway"\nServices = [\n')
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert "does not parse as HCL" in run.message(ENTRY)


def test_entry_file_missing_fails(state, suite):
    state.remove_file(ENTRY_FILE)
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert "does not exist" in run.message(ENTRY)


def test_entry_missing_in_consul_fails(state, suite):
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert "the file would re-create it" in run.message(ENTRY)


def test_entry_file_fix_rewrites_hcl(state, suite):
    state.write_config_entry(entry(
        {"Name": "carbonio-files-db", "CAFile": "/etc/carbonio/external-db-ca.pem", "SNI": "external-db.local"},
        {"Name": "legacy-ldap"},
    ))
    state.keep_file(ENTRY_FILE)
    forget_backups(state, ENTRY_FILE)
    run = suite("--control", ENTRY, "--fix")
    assert run.verdict(ENTRY) == "FIXED"
    written = hcl.loads(state.root_path(ENTRY_FILE).read_text())
    assert written["Kind"] == "terminating-gateway"
    assert written["Name"] == "carbonio-gateway"
    assert written["Services"][0] == {"Name": "carbonio-files-db", "CAFile": "/etc/carbonio/external-db-ca.pem",
                                      "SNI": "external-db.local"}
    assert written["Services"][1] == {"Name": "legacy-ldap"}
    assert_rewritten(state, ENTRY_FILE)
    assert suite("--control", ENTRY, "--fix").record(ENTRY)["fix"] is None


def test_entry_file_fix_needs_entry(state, suite):
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")
    run = suite("--control", ENTRY, "--fix")
    assert run.verdict(ENTRY) == "FIX FAILED"
    assert "gateway-config-entry" in run.record(ENTRY)["fix"]["reason"]
