"""Tests for the Consul HTTP API double, run against a live instance on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mesh_compliance.lab.consul_double import ConsulDouble

MANAGEMENT = "6f1b8f0e-3c1a-4d0e-9a55-0a4a1c6a9e01"
TIMEOUT = 5
GATEWAY_RULES_HCL = """
key_prefix "carbonio-gateway/" { policy = "read" }
node_prefix "" { policy = "read" }
service "carbonio-gateway" { policy = "write" }
service "carbonio-files-db" { policy = "write" }
"""
GATEWAY_RULES_JSON = json.dumps(
    {
        "key_prefix": {"carbonio-gateway/": {"policy": "read"}},
        "node_prefix": {"": {"policy": "read"}},
        "service": {"carbonio-gateway": {"policy": "write"}, "carbonio-files-db": {"policy": "write"}},
    }
)


class Client:
    """Small requests wrapper bound to one double and one token."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.token is not None:
            headers.setdefault("X-Consul-Token", self.token)
        return requests.request(method, self.url + path, headers=headers, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.call("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def as_token(self, token: str | None) -> "Client":
        return Client(self.url, token)


def start_double(**options) -> ConsulDouble:
    double = ConsulDouble(management_token=MANAGEMENT, **options)
    double.start(host="127.0.0.1", port=0)
    return double


@pytest.fixture
def double():
    instance = start_double()
    yield instance
    instance.stop()


@pytest.fixture
def admin(double) -> Client:
    return Client(double.url, MANAGEMENT)


def make_token(admin: Client, rules: str, name: str = "test-policy") -> str:
    """Create a policy with rules and a token linked to it; return the token secret."""
    policy = admin.put("/v1/acl/policy", json={"Name": name, "Rules": rules})
    assert policy.status_code == 200, policy.text
    token = admin.put("/v1/acl/token", json={"Policies": [{"Name": name}]})
    assert token.status_code == 200, token.text
    return token.json()["SecretID"]


def register_external_service(client: Client, **overrides) -> requests.Response:
    body = {
        "Node": "external-files-db-node",
        "Address": "10.0.0.5",
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": "carbonio-gateway", "Service": "carbonio-files-db", "Port": 5432},
    }
    body.update(overrides)
    return client.put("/v1/catalog/register", json=body)


# ACL enforcement


def test_missing_rule_gets_permission_denied(admin):
    secret = make_token(admin, 'service "other" { policy = "write" }')
    accessor = admin.as_token(secret).get("/v1/acl/token/self").json()["AccessorID"]
    response = register_external_service(admin.as_token(secret), SkipNodeUpdate=True)
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == (
        f"Permission denied: token with AccessorID '{accessor}' lacks permission "
        "'service:write' on \"carbonio-files-db\""
    )


def test_matching_rules_allow_request(admin):
    register_external_service(admin)
    secret = make_token(admin, 'service "carbonio-files-db" { policy = "write" }')
    response = register_external_service(admin.as_token(secret))
    assert response.status_code == 200
    assert response.json() is True


def test_old_versions_send_plain_permission_denied():
    double = start_double(version="1.10.12")
    try:
        response = Client(double.url, None).get("/v1/acl/policies")
        assert response.status_code == 403
        assert response.text == "Permission denied"
    finally:
        double.stop()


@pytest.mark.parametrize("rules", [GATEWAY_RULES_HCL, GATEWAY_RULES_JSON], ids=["hcl", "json"])
def test_hcl_and_json_rules_enforced(admin, rules):
    secret = make_token(admin, rules)
    checks = [
        {"Resource": "service", "Segment": "carbonio-gateway", "Access": "write"},
        {"Resource": "service", "Segment": "carbonio-files-db", "Access": "write"},
        {"Resource": "node", "Segment": "external-files-db-node", "Access": "read"},
        {"Resource": "key", "Segment": "carbonio-gateway/x", "Access": "read"},
        {"Resource": "key", "Segment": "carbonio-files/db-name", "Access": "read"},
        {"Resource": "node", "Segment": "external-files-db-node", "Access": "write"},
    ]
    response = admin.as_token(secret).call("POST", "/v1/internal/acl/authorize", json=checks)
    assert response.status_code == 200
    assert [item["Allow"] for item in response.json()] == [True, True, True, True, False, False]


def test_rules_stored_verbatim(admin):
    created = admin.put("/v1/acl/policy", json={"Name": "verbatim", "Rules": GATEWAY_RULES_HCL})
    read = admin.get("/v1/acl/policy/name/verbatim")
    assert read.json()["Rules"] == GATEWAY_RULES_HCL
    assert read.json()["ID"] == created.json()["ID"]


def test_list_form_rules_accepted(admin):
    secret = make_token(admin, json.dumps({"service": [{"carbonio-files-db": {"policy": "write"}}]}))
    checks = [{"Resource": "service", "Segment": "carbonio-files-db", "Access": "write"}]
    response = admin.as_token(secret).call("POST", "/v1/internal/acl/authorize", json=checks)
    assert response.json()[0]["Allow"] is True


def test_exact_rule_beats_prefix(admin):
    rules = 'service_prefix "" { policy = "write" }\nservice "locked" { policy = "deny" }'
    client = admin.as_token(make_token(admin, rules))
    checks = [
        {"Resource": "service", "Segment": "locked", "Access": "read"},
        {"Resource": "service", "Segment": "locked-other", "Access": "write"},
    ]
    allows = [item["Allow"] for item in client.call("POST", "/v1/internal/acl/authorize", json=checks).json()]
    assert allows == [False, True]


def test_longest_prefix_wins(admin):
    rules = 'key_prefix "app/" { policy = "write" }\nkey_prefix "app/secret/" { policy = "deny" }'
    client = admin.as_token(make_token(admin, rules))
    assert client.put("/v1/kv/app/config", data=b"x").status_code == 200
    assert client.put("/v1/kv/app/secret/pw", data=b"x").status_code == 403


def test_unparsable_rules_rejected(admin):
    response = admin.put("/v1/acl/policy", json={"Name": "broken", "Rules": 'service "x" { policy = '})
    assert response.status_code == 500
    assert response.text.startswith("Failed to parse ACL rules: ")


def test_invalid_rule_level_rejected(admin):
    response = admin.put("/v1/acl/policy", json={"Name": "bad", "Rules": 'service "x" { policy = "list" }'})
    assert response.status_code == 500
    assert response.text.startswith("Invalid service policy: ")


def test_unknown_secret_is_acl_not_found(admin):
    response = admin.as_token("a4d6c3f0-0000-4000-8000-000000000000").get("/v1/catalog/services")
    assert response.status_code == 403
    assert response.text == "ACL not found"


def test_token_sources_follow_precedence(double):
    bearer = requests.get(
        double.url + "/v1/acl/token/self", headers={"Authorization": f"Bearer {MANAGEMENT}"}, timeout=TIMEOUT
    )
    query_wins = requests.get(
        double.url + "/v1/acl/token/self", params={"token": "bogus"}, headers={"X-Consul-Token": MANAGEMENT},
        timeout=TIMEOUT,
    )
    assert bearer.status_code == 200
    assert query_wins.status_code == 404


def test_anonymous_token_without_header(double):
    response = requests.get(double.url + "/v1/acl/token/self", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["AccessorID"] == "00000000-0000-0000-0000-000000000002"


# Version differences


@pytest.mark.parametrize(
    ("version", "status", "body"),
    [("1.14.8", 403, "ACL not found"), ("1.21.4", 404, "Requested policy does not exist: ACL not found")],
)
def test_missing_policy_status_by_version(version, status, body):
    double = start_double(version=version)
    try:
        response = Client(double.url, MANAGEMENT).get("/v1/acl/policy/name/carbonio-gateway-policy")
        assert response.status_code == status
        assert response.text == body
    finally:
        double.stop()


@pytest.mark.parametrize(
    ("version", "status", "body"),
    [("1.14.8", 403, "ACL not found"), ("1.15.0", 404, "Supplied token does not exist")],
)
def test_token_self_unknown_by_version(version, status, body):
    double = start_double(version=version)
    try:
        response = Client(double.url, "0f0e0d0c-0000-4000-8000-000000000000").get("/v1/acl/token/self")
        assert response.status_code == status
        assert response.text == body
    finally:
        double.stop()


@pytest.mark.parametrize(("version", "status"), [("1.12.0", 403), ("1.16.1", 404)])
def test_delete_missing_policy_by_version(version, status):
    double = start_double(version=version)
    try:
        response = Client(double.url, MANAGEMENT).delete("/v1/acl/policy/5e1a2b3c-0000-4000-8000-000000000000")
        assert response.status_code == status
    finally:
        double.stop()


@pytest.mark.parametrize(("version", "body"), [("1.12.0", ""), ("1.21.4", "Invalid URL path: not a recognized HTTP API endpoint")])
def test_unknown_path_body_by_version(version, body):
    double = start_double(version=version)
    try:
        response = Client(double.url, MANAGEMENT).get("/v1/no/such/endpoint")
        assert response.status_code == 404
        assert response.text == body
    finally:
        double.stop()


# Transport details


def test_error_bodies_are_text_plain(admin):
    responses = [
        admin.put("/v1/acl/policy", json={"Name": "bad name!"}),
        admin.put("/v1/acl/policy", json={"Name": "x", "Bogus": 1}),
        admin.get("/v1/config/terminating-gateway/absent"),
        admin.as_token(None).get("/v1/acl/policies"),
    ]
    for response in responses:
        assert response.status_code >= 400
        assert response.headers["Content-Type"] == "text/plain"
        assert not response.text.startswith("{")


def test_wrong_method_gets_405_allow(admin):
    response = admin.call("POST", "/v1/acl/policies")
    assert response.status_code == 405
    assert response.headers["Allow"] == "OPTIONS,GET"


def test_read_headers_are_set(admin):
    response = admin.get("/v1/catalog/services")
    assert int(response.headers["X-Consul-Index"]) > 0
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert response.headers["X-Consul-Default-ACL-Policy"] == "deny"


def test_filtered_header_when_items_hidden(admin):
    register_external_service(admin)
    admin.put("/v1/catalog/register", json={"Node": "other", "Address": "10.0.0.6", "Service": {"Service": "hidden"}})
    client = admin.as_token(make_token(admin, 'service "carbonio-files-db" { policy = "read" }'))
    response = client.get("/v1/catalog/services")
    assert response.json() == {"carbonio-files-db": []}
    assert response.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"


def test_strict_decoding_rejects_unknown_field(admin):
    response = admin.put("/v1/acl/token", json={"Description": "x", "Bogus": True})
    assert response.status_code == 400
    assert response.text == 'Token decoding failed: json: unknown field "Bogus"'


def test_field_names_match_case_insensitively(admin):
    response = admin.put("/v1/acl/policy", json={"name": "lower-case", "rules": 'node "n" { policy = "read" }'})
    assert response.status_code == 200
    assert response.json()["Name"] == "lower-case"


def test_acls_disabled_answer_401():
    double = start_double(acl_enabled=False)
    try:
        client = Client(double.url, None)
        assert client.get("/v1/acl/policies").status_code == 401
        assert client.get("/v1/acl/policies").text == "ACL support disabled"
        assert client.call("POST", "/v1/internal/acl/authorize", json=[]).status_code == 401
        assert register_external_service(client).status_code == 200
    finally:
        double.stop()


# ACL policies and tokens


def test_policy_validation_errors(admin):
    admin.put("/v1/acl/policy", json={"Name": "taken"})
    cases = [
        ({"Name": ""}, 500, "Invalid Policy: no Name is set"),
        ({"Name": "a b"}, 500, "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"),
        ({"Name": "taken"}, 500, 'Invalid Policy: A Policy with Name "taken" already exists'),
        ({"Name": "x", "ID": "5e1a2b3c-0000-4000-8000-000000000000"}, 400, "Cannot specify the ID when creating a new policy"),
    ]
    for body, status, text in cases:
        response = admin.put("/v1/acl/policy", json=body)
        assert (response.status_code, response.text) == (status, text)


def test_policy_update_replaces_fields(admin):
    created = admin.put("/v1/acl/policy", json={"Name": "p", "Description": "d", "Rules": 'node "n" { policy = "read" }'})
    policy_id = created.json()["ID"]
    updated = admin.put(f"/v1/acl/policy/{policy_id}", json={"Name": "p"})
    assert updated.json()["Description"] == ""
    assert updated.json()["Rules"] == ""
    assert updated.json()["ModifyIndex"] > created.json()["ModifyIndex"]
    mismatch = admin.put(f"/v1/acl/policy/{policy_id}", json={"ID": "5e1a2b3c-0000-4000-8000-000000000000", "Name": "p"})
    assert (mismatch.status_code, mismatch.text) == (400, "Policy ID in URL and payload do not match")


def test_policy_list_omits_rules(admin):
    admin.put("/v1/acl/policy", json={"Name": "listed", "Rules": 'node "n" { policy = "read" }'})
    stubs = admin.get("/v1/acl/policies").json()
    assert {stub["Name"] for stub in stubs} == {"global-management", "listed"}
    assert all("Rules" not in stub for stub in stubs)


def test_deleted_policy_link_disappears(admin):
    policy = admin.put("/v1/acl/policy", json={"Name": "gone"}).json()
    token = admin.put("/v1/acl/token", json={"Policies": [{"ID": policy["ID"]}]}).json()
    assert admin.delete(f"/v1/acl/policy/{policy['ID']}").json() is True
    admin.put("/v1/acl/policy", json={"Name": "gone"})
    read = admin.get(f"/v1/acl/token/{token['AccessorID']}").json()
    assert read["Policies"] == []


def test_unknown_policy_name_rejected(admin):
    response = admin.put("/v1/acl/token", json={"Policies": [{"Name": "nope"}]})
    assert (response.status_code, response.text) == (500, 'No such ACL policy with name "nope"')


def test_secret_hidden_for_acl_read(admin):
    created = admin.put("/v1/acl/token", json={"Description": "target"}).json()
    reader = admin.as_token(make_token(admin, 'acl = "read"'))
    read = reader.get(f"/v1/acl/token/{created['AccessorID']}").json()
    assert read["SecretID"] == "<hidden>"
    assert admin.get(f"/v1/acl/token/{created['AccessorID']}").json()["SecretID"] == created["SecretID"]


def test_token_list_filters_by_policy(admin):
    policy = admin.put("/v1/acl/policy", json={"Name": "gw"}).json()
    linked = admin.put("/v1/acl/token", json={"Policies": [{"Name": "gw"}]}).json()
    admin.put("/v1/acl/token", json={"Description": "unlinked"})
    listed = admin.get("/v1/acl/tokens", params={"policy": policy["ID"]}).json()
    assert [token["AccessorID"] for token in listed] == [linked["AccessorID"]]


def test_expired_token_acts_missing():
    double = start_double(token_min_ttl_seconds=0.1)
    try:
        admin = Client(double.url, MANAGEMENT)
        token = admin.put("/v1/acl/token", json={"ExpirationTTL": "300ms"}).json()
        assert "ExpirationTime" in token
        time.sleep(0.5)
        assert admin.as_token(token["SecretID"]).get("/v1/catalog/services").text == "ACL not found"
        assert admin.get(f"/v1/acl/token/{token['AccessorID']}").status_code == 404
        assert all(item["AccessorID"] != token["AccessorID"] for item in admin.get("/v1/acl/tokens").json())
    finally:
        double.stop()


def test_expiration_ttl_range_checked(admin):
    too_long = admin.put("/v1/acl/token", json={"ExpirationTTL": "25h"})
    too_short = admin.put("/v1/acl/token", json={"ExpirationTTL": 30 * 10**9})
    assert too_long.text == "ExpirationTime cannot be more than 24h0m0s in the future (was 25h0m0s)"
    assert too_short.text == "ExpirationTime cannot be less than 1m0s in the future (was 30s)"


def test_token_update_rules_enforced(admin):
    token = admin.put("/v1/acl/token", json={"Description": "a"}).json()
    path = f"/v1/acl/token/{token['AccessorID']}"
    secret_change = admin.put(path, json={"SecretID": "5e1a2b3c-0000-4000-8000-000000000000"})
    mismatch = admin.put(path, json={"AccessorID": "5e1a2b3c-0000-4000-8000-000000000000"})
    updated = admin.put(path, json={"Description": "b"})
    assert secret_change.text == "Changing a token's SecretID is not permitted"
    assert (mismatch.status_code, mismatch.text) == (400, "Token Accessor ID in URL and payload do not match")
    assert updated.json()["SecretID"] == token["SecretID"]


def test_delete_own_token_rejected(admin):
    secret = make_token(admin, 'acl = "write"')
    client = admin.as_token(secret)
    accessor = client.get("/v1/acl/token/self").json()["AccessorID"]
    response = client.delete(f"/v1/acl/token/{accessor}")
    assert (response.status_code, response.text) == (
        500,
        "Deletion of the request's authorization token is not permitted",
    )


def test_token_clone_copies_policies(admin):
    admin.put("/v1/acl/policy", json={"Name": "cloned"})
    source = admin.put("/v1/acl/token", json={"Policies": [{"Name": "cloned"}]}).json()
    clone = admin.put(f"/v1/acl/token/{source['AccessorID']}/clone", json={"Description": "copy"}).json()
    assert clone["Policies"] == source["Policies"]
    assert clone["AccessorID"] != source["AccessorID"]
    assert clone["Description"] == "copy"


def test_authorize_rejects_bad_requests(admin):
    too_many = admin.call("POST", "/v1/internal/acl/authorize", json=[{"Resource": "acl", "Access": "read"}] * 65)
    bad_resource = admin.call("POST", "/v1/internal/acl/authorize", json=[{"Resource": "nope", "Access": "read"}])
    bad_access = admin.call("POST", "/v1/internal/acl/authorize", json=[{"Resource": "service", "Access": "list"}])
    assert (too_many.status_code, too_many.text) == (400, "Refusing to process more than 64 authorizations at once")
    assert bad_resource.text == 'Invalid ACL resource requested: "nope"'
    assert bad_access.text == "Invalid access level for service resource: list"


# Catalog


def test_register_overwrites_node_meta(admin):
    register_external_service(admin)
    register_external_service(admin, NodeMeta=None)
    entry = admin.get("/v1/catalog/service/carbonio-files-db").json()[0]
    assert entry["NodeMeta"] is None


def test_skip_node_update_keeps_meta(admin):
    register_external_service(admin)
    register_external_service(admin, NodeMeta=None, SkipNodeUpdate=True, Address="")
    entry = admin.get("/v1/catalog/service/carbonio-files-db").json()[0]
    assert entry["NodeMeta"] == {"external-node": "true", "external-probe": "true"}
    assert entry["Address"] == "10.0.0.5"


def test_service_registration_fully_replaced(admin):
    register_external_service(admin, Service={"ID": "carbonio-gateway", "Service": "carbonio-files-db", "Port": 5432, "Tags": ["a"]})
    register_external_service(admin, Service={"ID": "carbonio-gateway", "Service": "carbonio-files-db"})
    entry = admin.get("/v1/catalog/service/carbonio-files-db").json()[0]
    assert entry["ServicePort"] == 0
    assert entry["ServiceTags"] == []


def test_new_node_needs_node_write(admin):
    client = admin.as_token(make_token(admin, GATEWAY_RULES_HCL))
    response = register_external_service(client)
    assert response.status_code == 403
    assert "lacks permission 'node:write' on \"external-files-db-node\"" in response.text


def test_register_without_address_rejected(admin):
    response = register_external_service(admin, Address="")
    assert (response.status_code, response.text) == (500, "Must provide address if SkipNodeUpdate is not set")


def test_missing_service_returns_empty_list(admin):
    response = admin.get("/v1/catalog/service/absent")
    assert response.status_code == 200
    assert response.json() == []


def test_catalog_filter_expression(admin):
    register_external_service(admin)
    admin.put(
        "/v1/catalog/register",
        json={"Node": "plain", "Address": "10.0.0.7", "Service": {"ID": "other", "Service": "carbonio-files-db"}},
    )
    expression = 'NodeMeta["external-node"] == "true" and ServiceID == "carbonio-gateway"'
    entries = admin.get("/v1/catalog/service/carbonio-files-db", params={"filter": expression}).json()
    assert [entry["Node"] for entry in entries] == ["external-files-db-node"]


def test_missing_node_returns_null(admin):
    response = admin.get("/v1/catalog/node/absent")
    assert response.status_code == 200
    assert response.json() is None


def test_deregister_removes_service_only(admin):
    register_external_service(admin)
    admin.put("/v1/catalog/deregister", json={"Node": "external-files-db-node", "ServiceID": "carbonio-gateway"})
    node = admin.get("/v1/catalog/node/external-files-db-node").json()
    assert node["Node"]["Meta"] == {"external-node": "true", "external-probe": "true"}
    assert node["Services"] == {}


# Config entries


def test_config_entry_snake_case_keys(admin):
    body = {
        "kind": "terminating-gateway",
        "name": "carbonio-gateway",
        "services": [{"name": "carbonio-files-db", "ca_file": "/etc/ca.pem", "sni": "db.example"}],
    }
    assert admin.put("/v1/config", json=body).json() is True
    entry = admin.get("/v1/config/terminating-gateway/carbonio-gateway").json()
    assert entry["Services"] == [{"Name": "carbonio-files-db", "CAFile": "/etc/ca.pem", "SNI": "db.example"}]


def test_config_entry_unknown_key_rejected(admin):
    body = {"Kind": "terminating-gateway", "Name": "gw", "Services": [{"Name": "db", "Bogus": 1}]}
    response = admin.put("/v1/config", json=body)
    assert response.status_code == 400
    assert response.text.startswith("Request decoding failed: ")
    assert 'invalid config key "Services[0].Bogus"' in response.text


def test_config_entry_round_trip_tolerated(admin):
    admin.put("/v1/config", json={"Kind": "terminating-gateway", "Name": "gw", "Services": [{"Name": "db"}]})
    entry = admin.get("/v1/config/terminating-gateway/gw").json()
    assert admin.put("/v1/config", json=entry).json() is True


def test_config_entry_cas(admin):
    body = {"Kind": "service-defaults", "Name": "db", "Protocol": "tcp"}
    assert admin.put("/v1/config", params={"cas": 0}, json=body).json() is True
    assert admin.put("/v1/config", params={"cas": 0}, json=body).json() is False
    index = admin.get("/v1/config/service-defaults/db").json()["ModifyIndex"]
    assert admin.put("/v1/config", params={"cas": index}, json=body).json() is True
    assert admin.put("/v1/config", params={"cas": index}, json=body).json() is False


def test_config_entry_missing_404(admin):
    response = admin.get("/v1/config/terminating-gateway/carbonio-gateway")
    assert response.status_code == 404
    assert response.text == 'Config entry not found for "terminating-gateway" / "carbonio-gateway"'


def test_config_entry_validation_errors(admin):
    duplicate = {"Kind": "terminating-gateway", "Name": "gw", "Services": [{"Name": "db"}, {"Name": "db"}]}
    partial_tls = {"Kind": "terminating-gateway", "Name": "gw", "Services": [{"Name": "db", "CertFile": "/c"}]}
    assert admin.put("/v1/config", json=duplicate).text == 'Service "db" was specified more than once within a namespace'
    assert admin.put("/v1/config", json=partial_tls).text == (
        'Service "db" must have a CertFile, CAFile, and KeyFile specified for TLS origination'
    )


def test_gateway_entry_needs_mesh_write(admin):
    client = admin.as_token(make_token(admin, GATEWAY_RULES_HCL))
    response = client.put("/v1/config", json={"Kind": "terminating-gateway", "Name": "gw", "Services": []})
    assert response.status_code == 403
    assert "lacks permission 'mesh:write'" in response.text


def test_gateway_services_follow_entry(admin):
    assert admin.get("/v1/catalog/gateway-services/carbonio-gateway").json() is None
    admin.put(
        "/v1/config",
        json={"Kind": "terminating-gateway", "Name": "carbonio-gateway", "Services": [{"Name": "carbonio-files-db"}]},
    )
    items = admin.get("/v1/catalog/gateway-services/carbonio-gateway").json()
    assert items[0]["Service"] == {"Name": "carbonio-files-db"}
    assert items[0]["GatewayKind"] == "terminating-gateway"


# KV


def test_kv_raw_body_round_trip(admin):
    assert admin.put("/v1/kv/carbonio-files/db-name", data=b"carbonio-files-db").json() is True
    item = admin.get("/v1/kv/carbonio-files/db-name").json()[0]
    raw = admin.get("/v1/kv/carbonio-files/db-name", params={"raw": ""})
    assert base64.b64decode(item["Value"]) == b"carbonio-files-db"
    assert raw.content == b"carbonio-files-db"
    assert raw.headers["X-Content-Type-Options"] == "nosniff"


def test_kv_empty_value_is_null(admin):
    admin.put("/v1/kv/empty", data=b"")
    assert admin.get("/v1/kv/empty").json()[0]["Value"] is None


def test_kv_missing_key_empty_404(admin):
    response = admin.get("/v1/kv/absent")
    assert response.status_code == 404
    assert response.text == ""
    assert int(response.headers["X-Consul-Index"]) > 0


def test_kv_acl_single_403_recurse_404(admin):
    admin.put("/v1/kv/carbonio-files/db-password", data=b"secret")
    client = admin.as_token(make_token(admin, GATEWAY_RULES_HCL))
    single = client.get("/v1/kv/carbonio-files/db-password")
    recurse = client.get("/v1/kv/carbonio-files/", params={"recurse": ""})
    assert single.status_code == 403
    assert recurse.status_code == 404


def test_kv_cas_and_size_limit(admin):
    assert admin.put("/v1/kv/k", params={"cas": 0}, data=b"1").json() is True
    assert admin.put("/v1/kv/k", params={"cas": 0}, data=b"2").json() is False
    too_large = admin.put("/v1/kv/big", data=b"x" * (512 * 1024 + 1))
    assert too_large.status_code == 413
    assert too_large.text.startswith("Request body(524289 bytes) too large, max size: 524288 bytes.")


def test_kv_keys_with_separator(admin):
    for key in ("a/b/c", "a/b/d", "a/e"):
        admin.put(f"/v1/kv/{key}", data=b"v")
    keys = admin.get("/v1/kv/a/", params={"keys": "", "separator": "/"}).json()
    assert keys == ["a/b/", "a/e"]


# Intentions


def test_wildcard_deny_precedence(admin):
    admin.put("/v1/connect/intentions/exact", params={"source": "*", "destination": "carbonio-files-db"}, json={"Action": "deny"})
    admin.put(
        "/v1/connect/intentions/exact",
        params={"source": "carbonio-files", "destination": "carbonio-files-db"},
        json={"Action": "allow"},
    )
    allowed = admin.get("/v1/connect/intentions/check", params={"source": "carbonio-files", "destination": "carbonio-files-db"})
    denied = admin.get("/v1/connect/intentions/check", params={"source": "intruder", "destination": "carbonio-files-db"})
    assert allowed.json() == {"Allowed": True}
    assert denied.json() == {"Allowed": False}


def test_intention_default_follows_policy():
    for policy, expected in (("deny", False), ("allow", True)):
        double = start_double(default_policy=policy)
        try:
            response = Client(double.url, MANAGEMENT).get(
                "/v1/connect/intentions/check", params={"source": "a", "destination": "b"}
            )
            assert response.json() == {"Allowed": expected}
        finally:
            double.stop()


def test_intention_stored_as_config_entry(admin):
    admin.put("/v1/connect/intentions/exact", params={"source": "web", "destination": "db"}, json={"Action": "allow"})
    entry = admin.get("/v1/config/service-intentions/db").json()
    exact = admin.get("/v1/connect/intentions/exact", params={"source": "web", "destination": "db"}).json()
    assert entry["Sources"][0]["Name"] == "web"
    assert entry["Sources"][0]["Precedence"] == 9
    assert exact["Action"] == "allow"


def test_missing_intention_404(admin):
    response = admin.get("/v1/connect/intentions/exact", params={"source": "web", "destination": "db"})
    assert (response.status_code, response.text) == (404, "Intention not found")


def test_intention_write_needs_intentions_rule(admin):
    reader = admin.as_token(make_token(admin, 'service "db" { policy = "read" }'))
    writer = admin.as_token(make_token(admin, 'service "db" { policy = "read"\n intentions = "write" }', name="w"))
    params = {"source": "web", "destination": "db"}
    denied = reader.put("/v1/connect/intentions/exact", params=params, json={"Action": "allow"})
    assert denied.status_code == 403
    assert "lacks permission 'intention:write' on \"db\"" in denied.text
    assert writer.put("/v1/connect/intentions/exact", params=params, json={"Action": "allow"}).status_code == 200


# Agent and health


def test_agent_register_reaches_catalog(admin):
    body = {
        "Kind": "terminating-gateway",
        "Name": "carbonio-gateway",
        "ID": "carbonio-gateway",
        "Port": 8443,
        "Check": {"Name": "terminating-gateway listening", "TCP": "127.0.0.1:8443", "Interval": "10s", "Status": "passing"},
    }
    assert admin.put("/v1/agent/service/register", json=body).status_code == 200
    entries = admin.get("/v1/catalog/service/carbonio-gateway").json()
    checks = admin.get("/v1/health/checks/carbonio-gateway").json()
    assert entries[0]["ServiceKind"] == "terminating-gateway"
    assert entries[0]["Node"] == "lab-gateway"
    assert checks[0]["Name"] == "terminating-gateway listening"
    assert admin.get("/v1/agent/service/carbonio-gateway").json()["Kind"] == "terminating-gateway"


def test_agent_deregister_unknown_404(admin):
    response = admin.put("/v1/agent/service/deregister/carbonio-gateway")
    assert response.status_code == 404
    assert response.text == (
        'Unknown service ID "carbonio-gateway". Ensure that the service ID is passed, not the service name.'
    )


def test_agent_self_and_members(admin):
    me = admin.get("/v1/agent/self").json()
    added = admin.call("POST", "/_double/members", json={"name": "peer", "address": "127.0.0.2", "status": "failed"})
    members = admin.get("/v1/agent/members").json()
    assert me["Config"]["NodeName"] == "lab-gateway"
    assert me["Config"]["Version"] == "1.21.4"
    assert added.status_code == 200
    assert [(member["Name"], member["Status"]) for member in members] == [("lab-gateway", 1), ("peer", 4)]


def test_status_leader_answers(double):
    assert requests.get(double.url + "/v1/status/leader", timeout=TIMEOUT).json() == "127.0.0.1:8300"


# Control API and faults


def test_control_api_needs_management(double):
    response = requests.get(double.url + "/_double/state", timeout=TIMEOUT)
    assert response.status_code == 403


def test_fault_status500_then_recovers(admin):
    admin.call("POST", "/_double/faults", json={"path_prefix": "/v1/acl/policy", "method": "PUT", "mode": "status500", "count": 1})
    failed = admin.put("/v1/acl/policy", json={"Name": "after-fault"})
    recovered = admin.put("/v1/acl/policy", json={"Name": "after-fault"})
    assert (failed.status_code, failed.text) == (500, "injected fault")
    assert recovered.status_code == 200


def test_fault_stall_times_out_client(admin):
    admin.call("POST", "/_double/faults", json={"path_prefix": "/v1/kv/", "mode": "stall", "stall_seconds": 1.5})
    with pytest.raises(requests.exceptions.ReadTimeout):
        admin.get("/v1/kv/anything", timeout=0.3)


def test_fault_drop_closes_connection(admin):
    admin.call("POST", "/_double/faults", json={"path_prefix": "/v1/catalog/", "mode": "drop", "count": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        admin.get("/v1/catalog/services")
    assert admin.get("/v1/catalog/services").status_code == 200


def test_fault_rules_cleared(admin):
    admin.call("POST", "/_double/faults", json={"path_prefix": "/v1/", "mode": "status500", "count": 5})
    assert admin.delete("/_double/faults").status_code == 200
    assert admin.get("/v1/catalog/services").status_code == 200


# Startup


def test_non_loopback_bind_rejected():
    double = ConsulDouble(management_token=MANAGEMENT)
    for host in ("0.0.0.0", "10.1.2.3", "localhost"):
        with pytest.raises(ValueError, match="loopback"):
            double.start(host=host, port=0)


def test_cli_writes_ready_file(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(MANAGEMENT + "\n")
    ready_file = tmp_path / "ready.json"
    command = [
        sys.executable, "-m", "mesh_compliance.lab.consul_double",
        "--bind", "127.0.0.1", "--port", "0",
        "--management-token-file", str(token_file),
        "--version", "1.21.4", "--ready-file", str(ready_file),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 15
        while not ready_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        response = requests.get(ready["url"] + "/v1/acl/token/self", headers={"X-Consul-Token": MANAGEMENT}, timeout=TIMEOUT)
        assert ready["pid"] == process.pid
        assert ready["url"].startswith("http://127.0.0.1:")
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "GET /v1/acl/token/self -> 200" in stderr
    assert MANAGEMENT not in stderr


def test_cli_rejects_non_loopback(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(MANAGEMENT)
    command = [
        sys.executable, "-m", "mesh_compliance.lab.consul_double", "--bind", "0.0.0.0",
        "--management-token-file", str(token_file), "--ready-file", str(tmp_path / "ready.json"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert not (tmp_path / "ready.json").exists()
