"""ACL controls: the gateway policy and the gateway token."""

import re

from mesh_compliance.acl_rules import Rules, RulesError
from mesh_compliance.controls import control
from mesh_compliance.expected import policy_rules, required_grants
from mesh_compliance.redact import register_secret

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@control(
    "acl-policy",
    title="Gateway ACL policy grants the documented permissions",
    severity="high",
    step="3-4",
    scope="cluster",
    rationale="The terminating gateway needs service:write on itself and on every linked "
              "service; without write on the DB service it never serves it.",
)
def test_acl_policy(site, consul, evidence):
    name = site.acl.policy
    required = required_grants(site)
    evidence.expect("policy", name)
    evidence.expect("grants (at least)", [grant.describe() for grant in required])

    policy = consul.policy_by_name(name)
    evidence.observe("policy", f"{name} (ID {policy['ID']})" if policy else "not found")
    assert policy is not None, evidence.why(f"ACL policy {name} does not exist")

    evidence.record("stored rules", policy.get("Rules", ""))
    try:
        rules = Rules.parse(policy.get("Rules", ""))
    except RulesError as exc:
        raise AssertionError(evidence.why(f"the rules of ACL policy {name} do not parse: {exc}")) from None

    missing = [grant.describe() for grant in rules.missing(required)]
    evidence.observe("missing grants", missing)
    assert not missing, evidence.why(f"ACL policy {name} lacks required grants: {', '.join(missing)}")

    extra_writes = [line for line in rules.beyond(Rules.parse(policy_rules(site))) if line.endswith("write")]
    if extra_writes:
        evidence.warn(f"ACL policy {name} grants more write access than documented: {', '.join(extra_writes)}")


@control(
    "acl-token",
    title="Gateway token is valid, linked to the gateway policy and no broader",
    severity="critical",
    step="6",
    scope="node",
    rationale="The unit authenticates with the token in the token file. An empty, unknown or "
              "expired token stops the gateway; a management token gives it the whole cluster.",
)
def test_acl_token(site, consul, target, evidence):
    path = site.gateway.token_file
    evidence.expect("token file", f"{path} with one ACL token SecretID")

    content = target.read_text(path)
    assert content is not None, evidence.why(f"token file {path} does not exist on {target.name}")
    secret = content.strip()
    if UUID.match(secret):
        register_secret(secret, "Consul token")
    evidence.observe("token file", _shape(secret))
    assert secret and secret != "null", evidence.why(f"token file {path} holds no token")
    assert UUID.match(secret), evidence.why(f"token file {path} does not hold a token SecretID")

    answer = consul.with_token(secret).token_self()
    evidence.record("GET /v1/acl/token/self (gateway token)", f"{answer.status} {answer.text.strip()[:200]}")
    assert answer.status == 200, evidence.why("Consul does not know the token in the token file (deleted or expired)")
    token = answer.body

    policy = consul.policy_by_name(site.acl.policy)
    linked = token.get("Policies") or []
    evidence.expect("linked policy", site.acl.policy)
    evidence.observe("linked policies", [link.get("Name") or link.get("ID") for link in linked] or "none")
    evidence.observe("token", f"AccessorID {token.get('AccessorID')}")
    assert policy is not None, evidence.why(f"the token cannot be linked: ACL policy {site.acl.policy} does not exist")
    assert any(link.get("ID") == policy["ID"] for link in linked), evidence.why(f"the token is not linked to {site.acl.policy}")

    broader = _broader_grants(consul, token, policy)
    evidence.observe("grants beyond the policy", broader or "none")
    assert not broader, evidence.why("the token grants more than the gateway policy")

    if token.get("ExpirationTime"):
        evidence.warn(f"the gateway token expires at {token['ExpirationTime']}; the gateway stops working then")


def _shape(secret: str) -> str:
    if not secret:
        return "empty"
    if secret == "null":
        return "the text null"
    if UUID.match(secret):
        return "one UUID-shaped secret"
    return f"{len(secret)} characters, not a UUID"


def _broader_grants(consul, token: dict, policy: dict) -> list[str]:
    reference = Rules.parse(policy.get("Rules", ""))
    found = []
    for link in token.get("Policies") or []:
        if link.get("ID") == policy["ID"]:
            continue
        if link.get("ID") == GLOBAL_MANAGEMENT_ID:
            found.append("global-management policy (a management token)")
            continue
        other = consul.policy_by_id(link["ID"])
        if other is None:
            continue
        found += [f"{other['Name']}: {line}" for line in Rules.parse(other.get("Rules", "")).beyond(reference)]
    for kind in ("Roles", "ServiceIdentities", "NodeIdentities"):
        if token.get(kind):
            found.append(f"{kind} are linked; their grants are not compared, so they may be broader")
    return found
