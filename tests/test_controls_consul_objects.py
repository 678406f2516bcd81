"""Catalog registration and gateway config entry controls against the lab."""

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.lab]

CATALOG = "catalog-external-service"
ENTRY = "gateway-config-entry"
NODE = "external-files-db-node"


def registration(state, **changes):
    service = state.site["external_service"]
    body = {
        "Node": NODE,
        "Address": service["address"],
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": "carbonio-gateway", "Service": "carbonio-files-db", "Port": service["port"]},
    }
    body["Service"].update(changes.pop("service", {}))
    body.update(changes)
    return body


def test_catalog_documented_registration_passes_with_warning(suite):
    run = suite("--control", CATALOG)
    assert run.verdict(CATALOG) == "WARN"
    assert "equals the gateway's service name" in run.message(CATALOG)
    assert run.code == 0


def site_with_id(state, directory, service_id):
    site = state.site_file_with(directory, "")
    site.write_text(site.read_text().replace('id = "carbonio-gateway"', f'id = "{service_id}"'))
    return site


def test_catalog_other_service_id_passes(state, suite, tmp_path):
    state.deregister(NODE, "carbonio-gateway")
    state.register(registration(state, service={"ID": "carbonio-files-db-external"}))
    site = site_with_id(state, tmp_path, "carbonio-files-db-external")
    assert suite("--control", CATALOG, f"--site={site}").verdict(CATALOG) == "PASS"


def test_catalog_id_differs_from_site_fails(state, suite, tmp_path):
    site = site_with_id(state, tmp_path, "carbonio-files-db-external")
    run = suite("--control", CATALOG, f"--site={site}")
    assert run.verdict(CATALOG) == "FAIL"
    assert "expected carbonio-files-db-external" in run.message(CATALOG)


def test_catalog_fix_moves_to_site_id(state, suite, tmp_path):
    state.keep_catalog_service()
    site = site_with_id(state, tmp_path, "carbonio-files-db-external")
    assert suite("--control", CATALOG, "--fix", "--allow=deregister-service", f"--site={site}").verdict(CATALOG) == "FIXED"
    entries = state.consul_ok("GET", "/v1/catalog/service/carbonio-files-db")
    assert [entry["ServiceID"] for entry in entries] == ["carbonio-files-db-external"]


def test_catalog_wrong_port_fails(state, suite):
    state.register(registration(state, service={"Port": 5433}))
    run = suite("--control", CATALOG)
    assert run.verdict(CATALOG) == "FAIL"
    assert "port 5433" in run.message(CATALOG)


def test_catalog_missing_probe_meta_fails(state, suite):
    state.register(registration(state, NodeMeta={"external-node": "true"}))
    run = suite("--control", CATALOG)
    assert run.verdict(CATALOG) == "FAIL"
    assert "external-probe" in run.message(CATALOG)


def test_catalog_wrong_address_fails(state, suite):
    state.register(registration(state, Address="192.0.2.10"))
    run = suite("--control", CATALOG)
    assert run.verdict(CATALOG) == "FAIL"
    assert "192.0.2.10" in run.message(CATALOG)


def test_catalog_unregistered_fails(state, suite):
    state.deregister(NODE, "carbonio-gateway")
    run = suite("--control", CATALOG)
    assert run.verdict(CATALOG) == "FAIL"
    assert "not registered on node" in run.message(CATALOG)


def test_catalog_hidden_by_acls_is_error(state, suite, tmp_path):
    nodes_only = state.create_policy("nodes-only", 'node_prefix "" { policy = "read" }\nacl = "read"')
    token = state.create_token([{"ID": nodes_only["ID"]}])
    run = suite("--control", CATALOG, token_file=str(state.token_file_for(tmp_path, token)))
    assert run.verdict(CATALOG) == "ERROR"


def test_catalog_fix_replaces_wrong_id_and_port(state, suite):
    state.deregister(NODE, "carbonio-gateway")
    state.register(registration(state, service={"ID": "old-id", "Port": 5433}))
    run = suite("--control", CATALOG, "--fix", "--allow=deregister-service")
    assert run.verdict(CATALOG) == "FIXED"
    entries = state.consul_ok("GET", "/v1/catalog/service/carbonio-files-db")
    assert [(entry["ServiceID"], entry["ServicePort"]) for entry in entries] == [("carbonio-gateway", state.site["external_service"]["port"])]
    assert suite("--control", CATALOG, "--fix").record(CATALOG)["fix"] is None


def test_catalog_fix_keeps_other_node_meta(state, suite):
    state.register(registration(state, NodeMeta={"external-node": "true", "owner": "dba-team"}))
    suite("--control", CATALOG, "--fix")
    node = state.consul_ok("GET", f"/v1/catalog/node/{NODE}")
    assert node["Node"]["Meta"] == {"external-node": "true", "external-probe": "true", "owner": "dba-team"}


def entry(*services):
    return {"Kind": "terminating-gateway", "Name": "carbonio-gateway", "Services": list(services)}


def test_entry_passes_when_compliant(suite):
    assert suite("--control", ENTRY).verdict(ENTRY) == "PASS"


def test_entry_with_extra_services_passes(state, suite):
    state.write_config_entry(entry({"Name": "carbonio-files-db"}, {"Name": "legacy-ldap"}, {"Name": "billing-db"}))
    assert suite("--control", ENTRY).verdict(ENTRY) == "PASS"


def test_entry_missing_fails(state, suite):
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert "does not exist" in run.message(ENTRY)


def test_entry_without_db_service_fails(state, suite):
    state.write_config_entry(entry({"Name": "legacy-ldap"}))
    run = suite("--control", ENTRY)
    assert run.verdict(ENTRY) == "FAIL"
    assert "does not link carbonio-files-db" in run.message(ENTRY)


def test_entry_ca_file_mismatch_fails(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace("[gateway_entry]", '[gateway_entry]\nca_file = "/etc/carbonio/external-db-ca.pem"'))
    state.write_config_entry(entry({"Name": "carbonio-files-db", "CAFile": "/etc/ssl/other.pem"}))
    run = suite("--control", ENTRY, f"--site={site}")
    assert run.verdict(ENTRY) == "FAIL"
    assert "CAFile" in run.message(ENTRY)


def test_entry_snake_case_written_entry_passes(state, suite, tmp_path):
    site = state.site_file_with(tmp_path, "")
    site.write_text(site.read_text().replace("[gateway_entry]", '[gateway_entry]\nsni = "external-db.local"'))
    state.keep_config_entry("terminating-gateway", "carbonio-gateway")
    state.consul_ok("PUT", "/v1/config", json={"kind": "terminating-gateway", "name": "carbonio-gateway",
                                               "services": [{"name": "carbonio-files-db", "sni": "external-db.local"}]})
    assert suite("--control", ENTRY, f"--site={site}").verdict(ENTRY) == "PASS"


def test_entry_fix_adds_service_and_keeps_others(state, suite):
    state.write_config_entry(entry({"Name": "legacy-ldap", "CAFile": "/etc/ssl/ldap.pem"}))
    run = suite("--control", ENTRY, "--fix")
    assert run.verdict(ENTRY) == "FIXED"
    services = state.consul_ok("GET", "/v1/config/terminating-gateway/carbonio-gateway")["Services"]
    assert sorted(item["Name"] for item in services) == ["carbonio-files-db", "legacy-ldap"]
    assert suite("--control", ENTRY, "--fix").record(ENTRY)["fix"] is None


def test_entry_fix_creates_missing_entry(state, suite):
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")
    assert suite("--control", ENTRY, "--fix").verdict(ENTRY) == "FIXED"
