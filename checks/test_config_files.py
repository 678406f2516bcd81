"""Configuration file controls: the files in the gateway's directory describe what Consul holds.

An operator who re-runs the documented commands from these files gets back
what they contain, so a file that differs from Consul re-creates something
else than what runs now.
"""

from mesh_compliance.acl_rules import Rules, RulesError
from mesh_compliance.config_files import (
    ConfigFileError,
    canonical_entry,
    catalog_registration,
    entry_differences,
    parse_entry_file,
    parse_policy_file,
    policy_differences,
    registration_from_catalog,
    registration_from_file,
)
from mesh_compliance.controls import control


@control(
    "policy-file-matches",
    title="policies.json grants what the gateway ACL policy grants",
    severity="low",
    step="3",
    scope="node",
    rationale="policies.json is the input of consul acl policy create; a file that differs from "
              "the stored policy re-creates other permissions when the procedure is repeated.",
)
def test_policy_file_matches(site, consul, target, evidence):
    path = site.gateway.config_path(site.gateway.policies_file)
    name = site.acl.policy
    evidence.expect("file", f"{path} with the same grants as ACL policy {name}, compared by meaning")

    file_rules = _parsed_file(target, path, parse_policy_file, evidence)

    policy = consul.policy_by_name(name)
    evidence.observe("policy", f"{name} (ID {policy['ID']})" if policy else "not found")
    assert policy is not None, evidence.why(f"ACL policy {name} does not exist in Consul; the file would re-create it")
    evidence.record("stored rules", policy.get("Rules", ""))
    try:
        consul_rules = Rules.parse(policy.get("Rules", ""))
    except RulesError as exc:
        raise AssertionError(evidence.why(f"the rules of ACL policy {name} do not parse: {exc}")) from None

    differences = policy_differences(file_rules, consul_rules)
    evidence.observe("differences", differences or "none")
    assert not differences, evidence.why(f"{path} differs from ACL policy {name}: " + "; ".join(differences))


@control(
    "registration-file-matches",
    title="The external service definition file matches the catalog registration",
    severity="low",
    step="7",
    scope="node",
    rationale="The file is the body of the documented catalog registration; a file that differs "
              "from the catalog registers another node, address or port when the procedure is repeated.",
)
def test_registration_file_matches(site, consul, target, evidence):
    path = site.gateway.config_path(site.gateway.registration_file)
    service = site.external_service
    evidence.expect("file", f"{path} with the Node, Address, NodeMeta and Service ID, Service and Port "
                            f"of {service.name} on node {service.node} in the catalog")

    in_file = _parsed_file(target, path, registration_from_file, evidence)

    entry = catalog_registration(consul, site, in_file.get("Service.ID"))
    evidence.observe("catalog", f"{service.name} (ID {entry.get('ServiceID')}) on {service.node}" if entry else "not found")
    assert entry is not None, evidence.why(
        f"service {service.name} is not registered on node {service.node}; the file would re-create it")
    in_consul = registration_from_catalog(entry)

    differences = [f"{key}: file {in_file.get(key)!r}, Consul {in_consul.get(key)!r}"
                   for key in dict.fromkeys([*in_file, *in_consul]) if in_file.get(key) != in_consul.get(key)]
    evidence.observe("differences", differences or "none")
    assert not differences, evidence.why(f"{path} differs from the catalog registration: " + "; ".join(differences))


@control(
    "gateway-config-file-matches",
    title="gateway-config.hcl matches the terminating-gateway config entry",
    severity="low",
    step="9",
    scope="node",
    rationale="The file is the input of consul config write; a file that differs from the stored "
              "entry links other services or TLS options when the procedure is repeated.",
)
def test_gateway_config_file_matches(site, consul, target, evidence):
    path = site.gateway.config_path(site.gateway.config_entry_file)
    name = site.gateway.service
    evidence.expect("file", f"{path} with the Kind, Name, Meta and Services of config entry terminating-gateway/{name}")

    in_file = _parsed_file(target, path, parse_entry_file, evidence)

    entry = consul.config_entry("terminating-gateway", name)
    evidence.observe("entry", f"terminating-gateway/{name}" if entry else "not found")
    assert entry is not None, evidence.why(
        f"config entry terminating-gateway/{name} does not exist in Consul; the file would re-create it")
    evidence.record(f"GET /v1/config/terminating-gateway/{name}", canonical_entry(entry))

    differences = entry_differences(in_file, canonical_entry(entry))
    evidence.observe("differences", differences or "none")
    assert not differences, evidence.why(f"{path} differs from config entry terminating-gateway/{name}: " + "; ".join(differences))


def _parsed_file(target, path: str, parse, evidence):
    """Return ``parse`` of the file at ``path``; a missing or unparsable file fails the control."""
    text = target.read_text(path)
    evidence.observe("file", "found" if text is not None else "not found")
    assert text is not None, evidence.why(f"{path} does not exist on {target.name}")
    evidence.record(path, text)

    try:
        return parse(text)
    except ConfigFileError as exc:
        raise AssertionError(evidence.why(f"{path} does not parse: {exc}")) from None
