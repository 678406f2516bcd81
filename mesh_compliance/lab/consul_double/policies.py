"""ACL policy records: validation, hashing, rendering and the builtin policy."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from .acl import RulesError, parse_rules
from .decoding import INT, STRING, ListOf, Struct
from .errors import ApiError, rpc_error
from .state import GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_MANAGEMENT_RULES, Store, new_uuid

POLICY_SPEC = Struct(
    "ACLPolicy",
    {
        "ID": STRING,
        "Name": STRING,
        "Description": STRING,
        "Rules": STRING,
        "Datacenters": ListOf(STRING),
        "Hash": STRING,
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)

_POLICY_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(text: str) -> bool:
    return bool(_UUID.match(text))


def bootstrap_global_management(store: Store) -> None:
    """Create the builtin global-management policy."""
    index = store.next_index()
    policy = {
        "ID": GLOBAL_MANAGEMENT_POLICY_ID,
        "Name": "global-management",
        "Description": "Builtin Policy that grants unlimited access",
        "Rules": GLOBAL_MANAGEMENT_RULES,
        "Datacenters": None,
        "CreateIndex": index,
        "ModifyIndex": index,
    }
    policy["Hash"] = hash_policy(policy)
    store.policies[policy["ID"]] = policy


def hash_policy(policy: dict[str, Any]) -> str:
    digest = hashlib.blake2b(digest_size=32)
    for part in (policy["Name"], policy["Description"], policy["Rules"]):
        digest.update(part.encode())
    for datacenter in policy.get("Datacenters") or []:
        digest.update(datacenter.encode())
    return base64.b64encode(digest.digest()).decode()


def render_policy(policy: dict[str, Any]) -> dict[str, Any]:
    return dict(policy)


def render_policy_stub(policy: dict[str, Any]) -> dict[str, Any]:
    """Return the list form of a policy, which omits Rules."""
    return {key: value for key, value in policy.items() if key != "Rules"}


def _validate_name(name: str) -> None:
    if not name:
        raise rpc_error("Invalid Policy: no Name is set")
    if not _POLICY_NAME.match(name):
        raise rpc_error("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")


def _validate_rules(rules: str) -> None:
    try:
        parse_rules(rules)
    except RulesError as exc:
        raise rpc_error(str(exc)) from None


def create_policy(store: Store, fields: dict[str, Any]) -> dict[str, Any]:
    """Create a policy from decoded body fields, raising ApiError like PolicySet."""
    if fields.get("ID"):
        raise ApiError(400, "Cannot specify the ID when creating a new policy")
    name = fields.get("Name", "")
    _validate_name(name)
    if store.find_policy_by_name(name) is not None:
        raise rpc_error(f'Invalid Policy: A Policy with Name "{name}" already exists')
    rules = fields.get("Rules", "")
    _validate_rules(rules)
    index = store.next_index()
    policy = {
        "ID": new_uuid(),
        "Name": name,
        "Description": fields.get("Description", ""),
        "Rules": rules,
        "Datacenters": fields.get("Datacenters") or None,
        "CreateIndex": index,
        "ModifyIndex": index,
    }
    policy["Hash"] = hash_policy(policy)
    store.policies[policy["ID"]] = policy
    return policy


def update_policy(store: Store, policy_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Replace a policy's Name, Description, Rules and Datacenters (full replacement)."""
    if fields.get("ID") and fields["ID"] != policy_id:
        raise ApiError(400, "Policy ID in URL and payload do not match")
    name = fields.get("Name", "")
    _validate_name(name)
    if not is_uuid(policy_id):
        raise rpc_error("Policy ID invalid UUID")

    existing = store.policies.get(policy_id)
    if existing is None:
        raise rpc_error(f"cannot find policy {policy_id}")
    other = store.find_policy_by_name(name)
    if other is not None and other["ID"] != policy_id:
        raise rpc_error(f'Invalid Policy: A policy with name "{name}" already exists')

    rules = fields.get("Rules", "")
    datacenters = fields.get("Datacenters") or None
    if policy_id == GLOBAL_MANAGEMENT_POLICY_ID:
        # NOTE: message texts from memory of Consul's PolicySet, not from the reference digest.
        if rules != existing["Rules"]:
            raise rpc_error("Changing the Rules for the builtin global-management policy is not permitted")
        if datacenters:
            raise rpc_error("Changing the Datacenters of the builtin global-management policy is not permitted")
    _validate_rules(rules)

    existing.update(
        {
            "Name": name,
            "Description": fields.get("Description", ""),
            "Rules": rules,
            "Datacenters": datacenters,
            "ModifyIndex": store.next_index(),
        }
    )
    existing["Hash"] = hash_policy(existing)
    return existing


def delete_policy(store: Store, policy_id: str) -> bool:
    """Delete a policy; return False when it does not exist."""
    if policy_id == GLOBAL_MANAGEMENT_POLICY_ID:
        raise rpc_error("Delete operation not permitted on the builtin global-management policy")
    if store.policies.pop(policy_id, None) is None:
        return False
    store.next_index()
    return True
