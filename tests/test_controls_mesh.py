"""Mesh controls against the lab: intention, protocol, instances, agents, running gateway, names."""

import json

import pytest
import requests

from mesh_compliance import mesh
from mesh_compliance.lab.seed_mesh import gateway_registration
from tests import labstate_mesh
from tests.conftest import needs_root
from tests.labstate import LabState
from tests.suite import run_suite

INTENTION = "intention"
PROTOCOL = "db-service-protocol"
SINGLE = "db-service-single-instance"
NOT_AGENT = "external-node-not-agent"
RUNNING = "gateway-running"
NAMES = "gateway-name-agreement"

DB = "carbonio-files-db"
NODE = "external-files-db-node"
UNIT = "carbonio-gateway.service"

lab = [needs_root, pytest.mark.lab]


def intentions_entry(name, *sources):
    return {"Kind": "service-intentions", "Name": name, "Sources": list(sources)}


def source(name, action):
    return {"Name": name, "Action": action}


def sources_of(state, name=DB):
    return {item["Name"]: item.get("Action") for item in state.consul_ok("GET", f"/v1/config/service-intentions/{name}")["Sources"]}


# -- intention ---------------------------------------------------------------------

class TestIntention:
    pytestmark = lab

    def test_allow_passes(self, suite):
        assert suite("--control", INTENTION).verdict(INTENTION) == "PASS"

    def test_missing_under_default_deny_fails(self, state, suite):
        state.delete_config_entry("service-intentions", DB)
        run = suite("--control", INTENTION)
        assert run.verdict(INTENTION) == "FAIL"
        assert "no intention allows carbonio-files -> carbonio-files-db" in run.message(INTENTION)
        assert "default policy (deny)" in run.message(INTENTION)

    def test_explicit_deny_fails(self, state, suite):
        state.write_config_entry(intentions_entry(DB, source("carbonio-files", "deny"), source("billing", "allow")))
        run = suite("--control", INTENTION)
        assert run.verdict(INTENTION) == "FAIL"
        assert "explicit deny" in run.message(INTENTION)

    def test_higher_precedence_wildcard_deny_fails(self, state, suite):
        state.write_config_entry(intentions_entry("*", source("carbonio-files", "allow")))
        state.write_config_entry(intentions_entry(DB, source("*", "deny")))
        run = suite("--control", INTENTION)
        assert run.verdict(INTENTION) == "FAIL"
        assert "wildcard intention * -> carbonio-files-db: deny (precedence 8)" in run.message(INTENTION)

    def test_wildcard_allow_passes(self, state, suite):
        state.write_config_entry(intentions_entry(DB, source("*", "allow")))
        run = suite("--control", INTENTION)
        assert run.verdict(INTENTION) == "PASS"
        assert "* -> carbonio-files-db: allow" in run.record(INTENTION)["evidence"]["observed"]["matching intentions"]

    def test_l7_permissions_fail(self, state, suite):
        permissions = [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]
        state.write_config_entry(intentions_entry(DB, {"Name": "carbonio-files", "Permissions": permissions}))
        run = suite("--control", INTENTION)
        assert run.verdict(INTENTION) == "FAIL"
        assert "L7 permissions" in run.message(INTENTION)

    def test_unreadable_is_error(self, state, suite, tmp_path):
        policy = state.create_policy("acl-read-only", 'acl = "read"')
        token = state.create_token([{"ID": policy["ID"]}])
        run = suite("--control", INTENTION, token_file=str(state.token_file_for(tmp_path, token)))
        assert run.verdict(INTENTION) == "ERROR"

    def test_fix_creates_missing_entry(self, state, suite):
        state.delete_config_entry("service-intentions", DB)
        run = suite("--control", INTENTION, "--fix")
        assert run.verdict(INTENTION) == "FIXED"
        assert sources_of(state) == {"carbonio-files": "allow"}
        assert suite("--control", INTENTION, "--fix").record(INTENTION)["fix"] is None

    def test_fix_merges_and_keeps_other_sources(self, state, suite, tmp_path):
        state.write_config_entry(intentions_entry(DB, source("billing", "allow"), source("*", "deny")))
        run = suite("--control", INTENTION, "--fix")
        assert run.verdict(INTENTION) == "FIXED"
        assert sources_of(state) == {"billing": "allow", "*": "deny", "carbonio-files": "allow"}
        kept = list(tmp_path.glob("backups/*/consul/service-intentions--carbonio-files-db.json"))
        assert len(kept) == 1
        assert {item["Name"] for item in json.loads(kept[0].read_text())["Sources"]} == {"billing", "*"}
        assert suite("--control", INTENTION, "--fix").record(INTENTION)["fix"] is None

    def test_fix_replaces_only_the_explicit_deny(self, state, suite):
        state.write_config_entry(intentions_entry(DB, source("carbonio-files", "deny"), source("billing", "deny")))
        run = suite("--control", INTENTION, "--fix")
        assert run.verdict(INTENTION) == "FIXED"
        assert "changed from deny to allow" in " ".join(run.record(INTENTION)["fix"]["changes"])
        assert sources_of(state) == {"carbonio-files": "allow", "billing": "deny"}

    def test_fix_outranks_wildcard_deny(self, state, suite):
        state.write_config_entry(intentions_entry("*", source("carbonio-files", "allow")))
        state.write_config_entry(intentions_entry(DB, source("*", "deny")))
        assert suite("--control", INTENTION, "--fix").verdict(INTENTION) == "FIXED"
        assert sources_of(state) == {"*": "deny", "carbonio-files": "allow"}


def test_intention_reasons_name_the_deciding_rule():
    wildcard = {"SourceName": "*", "DestinationName": DB, "Action": "deny", "Precedence": 8}
    allow = {"SourceName": "carbonio-files", "DestinationName": "*", "Action": "allow", "Precedence": 6}
    other = {"SourceName": "billing", "DestinationName": DB, "Action": "allow", "Precedence": 9}
    matches = mesh.matching_intentions([allow, other, wildcard], "carbonio-files", DB)
    assert matches == [wildcard, allow]
    assert "wildcard intention * -> carbonio-files-db: deny" in mesh.denial_reason(matches, "carbonio-files", DB, "deny")
    assert "default policy (deny)" in mesh.denial_reason([], "carbonio-files", DB, "deny")


# -- protocol ------------------------------------------------------------------------

def defaults(**fields):
    return {"Kind": "service-defaults", "Name": DB, **fields}


def proxy_defaults(protocol):
    return {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": protocol}}


class TestProtocol:
    pytestmark = lab

    def test_no_entries_passes_with_warning(self, state, suite):
        state.delete_config_entry("service-defaults", DB)
        run = suite("--control", PROTOCOL)
        assert run.verdict(PROTOCOL) == "WARN"
        assert "write service-defaults carbonio-files-db with Protocol = tcp" in run.message(PROTOCOL)

    def test_explicit_tcp_passes(self, state, suite):
        state.write_config_entry(defaults(Protocol="tcp"))
        state.write_config_entry(proxy_defaults("http"))
        assert suite("--control", PROTOCOL).verdict(PROTOCOL) == "PASS"

    def test_global_http_fails(self, state, suite):
        state.delete_config_entry("service-defaults", DB)
        state.write_config_entry(proxy_defaults("http"))
        run = suite("--control", PROTOCOL)
        assert run.verdict(PROTOCOL) == "FAIL"
        assert "is http (from proxy-defaults/global Config.protocol)" in run.message(PROTOCOL)

    def test_service_defaults_http_fails(self, state, suite):
        state.write_config_entry(defaults(Protocol="http"))
        run = suite("--control", PROTOCOL)
        assert run.verdict(PROTOCOL) == "FAIL"
        assert "from service-defaults/carbonio-files-db" in run.message(PROTOCOL)

    def test_service_defaults_without_protocol_inherits_global(self, state, suite):
        state.write_config_entry(defaults(MaxInboundConnections=50))
        state.write_config_entry(proxy_defaults("grpc"))
        run = suite("--control", PROTOCOL)
        assert run.verdict(PROTOCOL) == "FAIL"
        assert "is grpc" in run.message(PROTOCOL)

    def test_fix_creates_service_defaults_and_leaves_global(self, state, suite):
        state.delete_config_entry("service-defaults", DB)
        state.write_config_entry(proxy_defaults("http"))
        run = suite("--control", PROTOCOL, "--fix")
        assert run.verdict(PROTOCOL) == "FIXED"
        assert state.consul_ok("GET", f"/v1/config/service-defaults/{DB}")["Protocol"] == "tcp"
        assert state.consul_ok("GET", "/v1/config/proxy-defaults/global")["Config"] == {"protocol": "http"}
        assert suite("--control", PROTOCOL, "--fix").record(PROTOCOL)["fix"] is None

    def test_fix_keeps_other_fields(self, state, suite):
        state.write_config_entry(defaults(Protocol="http", MaxInboundConnections=50))
        assert suite("--control", PROTOCOL, "--fix").verdict(PROTOCOL) == "FIXED"
        entry = state.consul_ok("GET", f"/v1/config/service-defaults/{DB}")
        assert (entry["Protocol"], entry["MaxInboundConnections"]) == ("tcp", 50)


def test_protocol_resolution_order():
    assert mesh.effective_protocol(DB, None, None).protocol == "tcp"
    assert mesh.effective_protocol(DB, None, {"Config": {"Protocol": "HTTP"}}).protocol == "http"
    resolved = mesh.effective_protocol(DB, {"Protocol": "tcp"}, {"Config": {"protocol": "http"}})
    assert (resolved.protocol, resolved.explicit) == ("tcp", True)


# -- single instance -------------------------------------------------------------------

def local_instance(name=DB, node="mbox-2", service_id=None):
    return {"Node": node, "Address": "192.0.2.22", "Service": {"ID": service_id or name, "Service": name, "Port": 5432}}


class TestSingleInstance:
    pytestmark = lab

    def test_external_instance_only_passes(self, suite):
        assert suite("--control", SINGLE).verdict(SINGLE) == "PASS"

    def test_leftover_local_instance_fails(self, state, suite):
        state.register(local_instance())
        run = suite("--control", SINGLE, "--fix")
        assert run.verdict(SINGLE) == "FAIL"
        assert "on node mbox-2 (ServiceID carbonio-files-db)" in run.message(SINGLE)
        assert "/etc/zextras/service-discover/carbonio-files-db.hcl" in run.message(SINGLE)
        assert run.record(SINGLE)["fix"]["status"] == "none"

    def test_sidecar_proxy_fails(self, state, suite):
        state.register(local_instance(name=f"{DB}-sidecar-proxy"))
        run = suite("--control", SINGLE)
        assert run.verdict(SINGLE) == "FAIL"
        assert "carbonio-files-db-sidecar-proxy instance on node mbox-2" in run.message(SINGLE)

    def test_second_instance_on_external_node_fails(self, state, suite):
        service = state.site["external_service"]
        state.register({"Node": NODE, "Address": service["address"],
                        "NodeMeta": {"external-node": "true", "external-probe": "true"},
                        "Service": {"ID": "carbonio-files-db-old", "Service": DB, "Port": 5433}})
        run = suite("--control", SINGLE)
        assert run.verdict(SINGLE) == "FAIL"
        assert f"2 carbonio-files-db instances on {NODE}" in run.message(SINGLE)


# -- external node is not an agent -------------------------------------------------------

@needs_root
@pytest.mark.lab
def test_external_node_on_agent_node_fails(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace(f'node = "{NODE}"', 'node = "lab-gateway"'))
    run = suite("--control", NOT_AGENT, f"--site={site}")
    assert run.verdict(NOT_AGENT) == "FAIL"
    assert "lab-gateway at 127.0.0.1 (status alive)" in run.message(NOT_AGENT)


@needs_root
@pytest.mark.lab
def test_external_node_joined_as_agent_fails(drifted_lab, tmp_path):
    # The drifted lab is this module's own, so the member added here outlives no other test.
    assert run_suite(drifted_lab, tmp_path, "--control", NOT_AGENT).verdict(NOT_AGENT) == "PASS"

    editor = LabState(drifted_lab)
    answer = editor.consul("POST", "/_double/members", json={"name": NODE, "address": "192.0.2.30"})
    assert answer.status_code == 200, answer.text
    run = run_suite(drifted_lab, tmp_path, "--control", NOT_AGENT, "--fix")
    assert run.verdict(NOT_AGENT) == "FAIL"
    assert f"{NODE} at 192.0.2.30 (status alive)" in run.message(NOT_AGENT)
    assert run.record(NOT_AGENT)["fix"]["status"] == "none"


@needs_root
@pytest.mark.lab
def test_hidden_members_are_error(state, suite, tmp_path):
    policy = state.create_policy("catalog-no-nodes", 'service_prefix "" { policy = "read" }\nnode "external-files-db-node" { policy = "read" }\nacl = "read"')
    token = state.create_token([{"ID": policy["ID"]}])
    run = suite("--control", NOT_AGENT, token_file=str(state.token_file_for(tmp_path, token)))
    assert run.verdict(NOT_AGENT) == "ERROR"
    assert "node:read" in run.message(NOT_AGENT)


# -- gateway running --------------------------------------------------------------------

class TestGatewayRunning:
    """The live branch runs without --root against a stand-in systemctl, since this machine runs no systemd."""

    pytestmark = lab

    def live(self, suite, tmp_path, **unit_state):
        environment = labstate_mesh.stand_in_systemctl(tmp_path / "stand-in", **unit_state)
        return suite("--control", RUNNING, "--root=", env=environment)

    def test_root_directory_is_not_applicable(self, suite):
        run = suite("--control", RUNNING)
        assert run.verdict(RUNNING) == "N/A"
        assert "systemd does not run" in run.message(RUNNING)
        assert run.code == 0

    def test_steady_and_healthy_passes(self, suite, tmp_path):
        run = self.live(suite, tmp_path)
        assert run.verdict(RUNNING) == "PASS", run.message(RUNNING)

    def test_restart_loop_fails(self, suite, tmp_path):
        run = self.live(suite, tmp_path, active="activating", sub="auto-restart", restarts=57)
        assert run.verdict(RUNNING) == "FAIL"
        assert "is activating (auto-restart)" in run.message(RUNNING)
        assert "NRestarts=57" in run.message(RUNNING)

    def test_growing_restart_count_fails(self, suite, tmp_path):
        run = self.live(suite, tmp_path, restarts=3, restarting=True)
        assert run.verdict(RUNNING) == "FAIL"
        assert "restarted 3 -> 4 times" in run.message(RUNNING)

    def test_unregistered_gateway_fails(self, state, suite, tmp_path):
        labstate_mesh.deregister_gateway(state)
        run = self.live(suite, tmp_path)
        assert run.verdict(RUNNING) == "FAIL"
        assert "no service carbonio-gateway of Kind terminating-gateway" in run.message(RUNNING)

    def test_critical_check_fails(self, state, suite, tmp_path):
        labstate_mesh.register_agent_service(state, gateway_registration(status="critical"))
        run = self.live(suite, tmp_path)
        assert run.verdict(RUNNING) == "FAIL"
        assert "terminating-gateway listening is critical" in run.message(RUNNING)


# -- gateway names ---------------------------------------------------------------------

def gateway_entry(name, *services):
    return {"Kind": "terminating-gateway", "Name": name, "Services": [{"Name": item} for item in services]}


class TestNameAgreement:
    pytestmark = lab

    def test_one_name_passes(self, suite):
        assert suite("--control", NAMES).verdict(NAMES) == "PASS"

    def test_dropin_changes_service_flag_fails(self, state, suite):
        labstate_mesh.write_dropin(state, UNIT, "override.conf", (
            "[Service]\nExecStart=\nExecStart=/usr/bin/consul connect envoy -token-file "
            "/etc/carbonio/gateway/service-discover/token -admin-bind localhost:0 "
            "-gateway=terminating -register -service=carbonio-gw\n"))
        run = suite("--control", NAMES)
        assert run.verdict(NAMES) == "FAIL"
        assert "unit -service carbonio-gw" in run.message(NAMES)

    def test_other_config_entry_name_fails(self, state, suite):
        state.delete_config_entry("terminating-gateway", "carbonio-gateway")
        state.write_config_entry(gateway_entry("carbonio-gw", DB))
        run = suite("--control", NAMES)
        assert run.verdict(NAMES) == "FAIL"
        assert "config entry carbonio-gw" in run.message(NAMES)

    def test_other_registered_name_fails(self, state, suite):
        labstate_mesh.deregister_gateway(state)
        labstate_mesh.register_agent_service(state, gateway_registration(name="carbonio-gw"))
        run = suite("--control", NAMES, "--fix")
        assert run.verdict(NAMES) == "FAIL"
        assert "registered gateway carbonio-gw" in run.message(NAMES)
        assert run.record(NAMES)["fix"]["status"] == "none"

    def test_gateway_services_without_db_fails(self, state, suite):
        state.write_config_entry(gateway_entry("carbonio-gateway", "*"))
        state.deregister(NODE, "carbonio-gateway")
        run = suite("--control", NAMES)
        assert run.verdict(NAMES) == "FAIL"
        assert "does not list carbonio-files-db" in run.message(NAMES)


@needs_root
@pytest.mark.lab
def test_seeded_gateway_is_registered(drifted_lab):
    token = drifted_lab.management_token_file.read_text().strip()
    answer = requests.get(f"{drifted_lab.consul_url}/v1/health/service/carbonio-gateway",
                          headers={"X-Consul-Token": token}, timeout=10)
    [instance] = answer.json()
    assert instance["Service"]["Kind"] == "terminating-gateway"
    assert instance["Service"]["Port"] == 8443
    assert [check["Status"] for check in instance["Checks"] if check["Name"] == "terminating-gateway listening"] == ["passing"]
