"""Fixers for the gateway ACL policy and token."""

from mesh_compliance.acl_rules import Rules, RulesError
from mesh_compliance.errors import FixError
from mesh_compliance.expected import policy_rules, required_grants
from mesh_compliance.fixing import FixContext, FixRefused
from mesh_compliance.redact import register_secret


def fix_policy(ctx: FixContext) -> None:
    """Create the policy, or rewrite its rules in place so linked tokens keep it."""
    site = ctx.site
    rules = policy_rules(site)
    policy = ctx.consul.policy_by_name(site.acl.policy)

    if policy is None:
        created = ctx.consul.create_policy({"Name": site.acl.policy, "Description": site.acl.policy_description, "Rules": rules})
        ctx.changed(f"ACL policy {site.acl.policy}", "created", f"ID {created['ID']}")
        return

    if _grants_all(policy, site) and policy.get("Description") == site.acl.policy_description:
        return

    ctx.keep_consul_object("acl-policy", site.acl.policy, policy)
    # Update by ID: tokens link to the policy's ID, so deleting and
    # re-creating it would silently unlink every token.
    body = {
        "ID": policy["ID"],
        "Name": policy["Name"],
        "Description": site.acl.policy_description,
        "Rules": rules,
        "Datacenters": policy.get("Datacenters"),
    }
    ctx.consul.update_policy(policy["ID"], body)
    ctx.changed(f"ACL policy {site.acl.policy}", "updated rules in place", f"ID {policy['ID']}")


def _grants_all(policy: dict, site) -> bool:
    try:
        return not Rules.parse(policy.get("Rules", "")).missing(required_grants(site))
    except RulesError:
        return False


def fix_token(ctx: FixContext) -> None:
    """Create a token linked to the policy and write its SecretID to the token file.

    An existing token is never modified or deleted: it may be in use
    elsewhere (or be the token this suite authenticates with).
    """
    site = ctx.site
    target = ctx.require_target()
    policy = ctx.consul.policy_by_name(site.acl.policy)
    if policy is None:
        raise FixRefused(f"ACL policy {site.acl.policy} does not exist; control acl-policy must pass first")
    if target.account(site.gateway.user) is None:
        raise FixError(f"user {site.gateway.user} does not exist on {target.name}; create the account first")

    token = ctx.consul.create_token({"Description": site.acl.token_description, "Policies": [{"ID": policy["ID"]}]})
    secret = token.get("SecretID", "")
    register_secret(secret, "Consul token")
    if not secret or secret == "<hidden>":
        raise FixError(f"Consul created token {token.get('AccessorID')} but did not return its SecretID; the fixing token needs acl:write")
    ctx.changed("ACL token", "created", f"AccessorID {token['AccessorID']} linked to {site.acl.policy}")

    backup = ctx.write_file(site.gateway.token_file, secret + "\n", owner=site.gateway.user, group=site.gateway.group, mode=0o600)
    detail = f"owner {site.gateway.user}:{site.gateway.group}, mode 0600" + (f", previous file kept as {backup}" if backup else "")
    ctx.changed(f"token file {site.gateway.token_file}", "wrote", detail)
