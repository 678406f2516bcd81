"""ACL rules compared by meaning, in HCL and JSON."""

import pytest

from mesh_compliance.acl_rules import Grant, Rules, RulesError
from mesh_compliance.expected import policy_rules, required_grants
from mesh_compliance.site import Site

SITE = Site()

HCL_FULL = '''
key_prefix "carbonio-gateway/" { policy = "read" }
node_prefix "" { policy = "read" }
service "carbonio-gateway" { policy = "write" }
service "carbonio-files-db" { policy = "write" }
'''

JSON_LIST_MISSING_DB = (
    '{"key_prefix":[{"carbonio-gateway/":{"policy":"read"}}],'
    '"node_prefix":[{"":{"policy":"read"}}],'
    '"service":[{"carbonio-gateway":{"policy":"write"}}]}'
)


def test_documented_json_grants_everything():
    assert Rules.parse(policy_rules(SITE)).missing(required_grants(SITE)) == []


def test_hcl_form_grants_everything():
    assert Rules.parse(HCL_FULL).missing(required_grants(SITE)) == []


def test_json_list_form_missing_db_write():
    missing = Rules.parse(JSON_LIST_MISSING_DB).missing(required_grants(SITE))
    assert [grant.describe() for grant in missing] == ['service "carbonio-files-db" write']


def test_superset_with_agent_read_still_grants():
    rules = Rules.parse(HCL_FULL + 'agent_prefix "" { policy = "read" }\n')
    assert rules.missing(required_grants(SITE)) == []


def test_service_prefix_grants_named_service():
    rules = Rules.parse('service_prefix "carbonio-" { policy = "write" }')
    assert rules.grants(Grant("service", "carbonio-files-db", False, "write"))


def test_exact_deny_beats_prefix_write():
    rules = Rules.parse('service_prefix "" { policy = "write" }\nservice "carbonio-files-db" { policy = "deny" }')
    assert not rules.grants(Grant("service", "carbonio-files-db", False, "write"))


def test_longest_prefix_wins():
    rules = Rules.parse('key_prefix "" { policy = "read" }\nkey_prefix "carbonio-gateway/" { policy = "deny" }')
    assert rules.level("key", "carbonio-gateway/x") == "deny"
    assert rules.level("key", "other/x") == "read"


def test_deny_below_prefix_breaks_prefix_grant():
    rules = Rules.parse('key_prefix "carbonio-gateway/" { policy = "read" }\nkey "carbonio-gateway/secret" { policy = "deny" }')
    assert not rules.grants(Grant("key", "carbonio-gateway/", True, "read"))


def test_read_does_not_satisfy_write():
    rules = Rules.parse('service "carbonio-files-db" { policy = "read" }')
    assert not rules.grants(Grant("service", "carbonio-files-db", False, "write"))


def test_typo_in_service_name_misses_grant():
    rules = Rules.parse(HCL_FULL.replace("carbonio-files-db", "carbonio-file-db"))
    assert Grant("service", "carbonio-files-db", False, "write") in rules.missing(required_grants(SITE))


def test_beyond_lists_broader_grants():
    reference = Rules.parse(policy_rules(SITE))
    broader = Rules.parse('acl = "write"\nservice_prefix "" { policy = "write" }')
    assert broader.beyond(reference) == ['service_prefix "" write', 'acl = "write"']


def test_beyond_empty_for_subset():
    reference = Rules.parse(policy_rules(SITE))
    subset = Rules.parse('service "carbonio-gateway" { policy = "read" }')
    assert subset.beyond(reference) == []


def test_unknown_keyword_rejected():
    with pytest.raises(RulesError, match="service_prefixx"):
        Rules.parse('service_prefixx "" { policy = "read" }')


def test_bad_level_rejected():
    with pytest.raises(RulesError, match="invalid service policy"):
        Rules.parse('service "x" { policy = "admin" }')


def test_unparsable_text_rejected():
    with pytest.raises(RulesError, match="do not parse"):
        Rules.parse('service "x" { policy = ')


def test_empty_rules_grant_nothing():
    assert Rules.parse("").missing(required_grants(SITE)) == required_grants(SITE)
