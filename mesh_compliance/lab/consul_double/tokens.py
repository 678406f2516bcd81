"""ACL token records: creation, update, cloning, link resolution and rendering."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

from .acl import Authorizer, RuleSet, merge_rule_sets, node_identity_rules, parse_rules, service_identity_rules
from .decoding import ANY, BOOL, INT, STRING, ListOf, Struct
from .durations import format_go_duration, format_rfc3339, parse_go_duration, parse_rfc3339
from .errors import ApiError, rpc_error
from .policies import is_uuid
from .state import (
    ANONYMOUS_ACCESSOR_ID,
    ANONYMOUS_SECRET_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
    Store,
    new_uuid,
    now_utc,
)

_LINK = Struct("ACLTokenPolicyLink", {"ID": STRING, "Name": STRING})
TOKEN_SPEC = Struct(
    "ACLToken",
    {
        "AccessorID": STRING,
        "SecretID": STRING,
        "Description": STRING,
        "Policies": ListOf(_LINK),
        "Roles": ListOf(Struct("ACLTokenRoleLink", {"ID": STRING, "Name": STRING})),
        "ServiceIdentities": ListOf(
            Struct("ACLServiceIdentity", {"ServiceName": STRING, "Datacenters": ListOf(STRING)})
        ),
        "NodeIdentities": ListOf(Struct("ACLNodeIdentity", {"NodeName": STRING, "Datacenter": STRING})),
        "TemplatedPolicies": ANY,
        "Local": BOOL,
        "AuthMethod": STRING,
        "ExpirationTime": STRING,
        "ExpirationTTL": ANY,
        "CreateTime": STRING,
        "Hash": STRING,
        "CreateIndex": INT,
        "ModifyIndex": INT,
    },
)
HIDDEN_SECRET = "<hidden>"
_RESERVED_PREFIX = "00000000-0000-0000-0000-0000000000"
_IDENTITY_NAME = re.compile(r"^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$")


def bootstrap_tokens(store: Store) -> None:
    """Create the management token (global-management) and the anonymous token."""
    created = now_utc()
    management = _new_record(store, new_uuid(), store.settings.management_token, created)
    management.update(Description="Bootstrap Token (Global Management)", policy_ids=[GLOBAL_MANAGEMENT_POLICY_ID])
    _finish(store, management)
    anonymous = _new_record(store, ANONYMOUS_ACCESSOR_ID, ANONYMOUS_SECRET_ID, created)
    anonymous["Description"] = "Anonymous Token"
    _finish(store, anonymous)


def _new_record(store: Store, accessor: str, secret: str, created: datetime) -> dict[str, Any]:
    index = store.next_index()
    return {
        "AccessorID": accessor,
        "SecretID": secret,
        "Description": "",
        "policy_ids": [],
        "ServiceIdentities": [],
        "NodeIdentities": [],
        "Local": False,
        "AuthMethod": "",
        "ExpirationTime": None,
        "CreateTime": created,
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def _finish(store: Store, token: dict[str, Any]) -> None:
    token["Hash"] = _hash_token(token)
    store.tokens[token["AccessorID"]] = token


def _hash_token(token: dict[str, Any]) -> str:
    digest = hashlib.blake2b(digest_size=32)
    digest.update(token["Description"].encode())
    for policy_id in token["policy_ids"]:
        digest.update(policy_id.encode())
    for identity in token["ServiceIdentities"] + token["NodeIdentities"]:
        digest.update(repr(sorted(identity.items())).encode())
    digest.update(b"local" if token["Local"] else b"global")
    return base64.b64encode(digest.digest()).decode()


def is_expired(token: dict[str, Any], moment: datetime | None = None) -> bool:
    expiration = token.get("ExpirationTime")
    return expiration is not None and expiration <= (moment or now_utc())


def live_token(store: Store, accessor: str) -> dict[str, Any] | None:
    """Return the token with this AccessorID unless it is missing or expired."""
    token = store.tokens.get(accessor)
    if token is None or is_expired(token):
        return None
    return token


def live_token_by_secret(store: Store, secret: str) -> dict[str, Any] | None:
    token = store.find_token_by_secret(secret)
    if token is None or is_expired(token):
        return None
    return token


def linked_policies(store: Store, token: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the policies the token links to; links to deleted policies are dropped."""
    return [store.policies[pid] for pid in token["policy_ids"] if pid in store.policies]


def authorizer_for(store: Store, token: dict[str, Any]) -> Authorizer:
    """Build the authorizer from the token's policies and identities."""
    settings = store.settings
    policies = linked_policies(store, token)
    if any(policy["ID"] == GLOBAL_MANAGEMENT_POLICY_ID for policy in policies):
        return Authorizer(RuleSet(), settings.default_allow, management=True)
    rule_sets = [
        parse_rules(policy["Rules"])
        for policy in policies
        if not policy.get("Datacenters") or settings.datacenter in policy["Datacenters"]
    ]
    for identity in token["ServiceIdentities"]:
        datacenters = identity.get("Datacenters") or []
        if not datacenters or settings.datacenter in datacenters:
            rule_sets.append(service_identity_rules(identity["ServiceName"]))
    for identity in token["NodeIdentities"]:
        if identity.get("Datacenter") == settings.datacenter:
            rule_sets.append(node_identity_rules(identity["NodeName"]))
    return Authorizer(merge_rule_sets(rule_sets), settings.default_allow)


def render_token(
    store: Store, token: dict[str, Any], reveal_secret: bool, expanded: bool = False
) -> dict[str, Any]:
    """Render a token as the API returns it; SecretID is "<hidden>" unless reveal_secret."""
    policies = linked_policies(store, token)
    body: dict[str, Any] = {
        "AccessorID": token["AccessorID"],
        "SecretID": token["SecretID"] if reveal_secret else HIDDEN_SECRET,
        "Description": token["Description"],
        "Policies": [{"ID": policy["ID"], "Name": policy["Name"]} for policy in policies],
    }
    if token["ServiceIdentities"]:
        body["ServiceIdentities"] = token["ServiceIdentities"]
    if token["NodeIdentities"]:
        body["NodeIdentities"] = token["NodeIdentities"]
    body["Local"] = token["Local"]
    if token["AuthMethod"]:
        body["AuthMethod"] = token["AuthMethod"]
    if token["ExpirationTime"] is not None:
        body["ExpirationTime"] = format_rfc3339(token["ExpirationTime"])
    body.update(
        CreateTime=format_rfc3339(token["CreateTime"]),
        Hash=token["Hash"],
        CreateIndex=token["CreateIndex"],
        ModifyIndex=token["ModifyIndex"],
    )
    if expanded:
        settings = store.settings
        body.update(
            ExpandedPolicies=[dict(policy) for policy in policies],
            ExpandedRoles=[],
            NamespaceDefaultPolicyIDs=None,
            NamespaceDefaultRoleIDs=None,
            AgentACLDefaultPolicy=settings.default_policy,
            AgentACLDownPolicy="extend-cache",
            ResolvedByAgent=settings.node_name,
        )
    return body


def _check_new_id(store: Store, field: str, value: str) -> None:
    if not is_uuid(value):
        # NOTE: Consul returns the uuid library's parse error here; this text is an approximation.
        raise rpc_error(f"Invalid Token: {field} is not a valid UUID")
    if value.startswith(_RESERVED_PREFIX):
        raise rpc_error(f"Invalid Token: {field} is a reserved value")
    in_use = store.tokens.get(value) if field == "AccessorID" else store.find_token_by_secret(value)
    if in_use is not None:
        raise rpc_error(f"Invalid Token: {field} is already in use")


def _resolve_policy_links(store: Store, links: list[dict[str, Any]]) -> list[str]:
    policy_ids: list[str] = []
    for link in links:
        if link.get("ID"):
            if link["ID"] not in store.policies:
                raise rpc_error(f'No such ACL policy with ID "{link["ID"]}"')
            policy_id = link["ID"]
        else:
            policy = store.find_policy_by_name(link.get("Name", ""))
            if policy is None:
                raise rpc_error(f'No such ACL policy with name "{link.get("Name", "")}"')
            policy_id = policy["ID"]
        if policy_id not in policy_ids:
            policy_ids.append(policy_id)
    return policy_ids


def _check_role_links(links: list[dict[str, Any]]) -> None:
    # NOTE: the double has no ACL roles, so every role link is reported as missing.
    for link in links:
        if link.get("ID"):
            raise rpc_error(f'No such ACL role with ID "{link["ID"]}"')
        raise rpc_error(f'No such ACL role with name "{link.get("Name", "")}"')


def _check_identities(fields: dict[str, Any]) -> None:
    for identity in fields.get("ServiceIdentities", []):
        name = identity.get("ServiceName", "")
        if not name:
            raise rpc_error("Service identity is missing the service name field on this token")
        if not _IDENTITY_NAME.match(name):
            raise rpc_error(
                f'Service identity "{name}" has an invalid name. '
                "Only lowercase alphanumeric characters, '-' and '_' are allowed"
            )
    for identity in fields.get("NodeIdentities", []):
        name = identity.get("NodeName", "")
        if not name:
            raise rpc_error("Node identity is missing the node name field on this token")
        if not identity.get("Datacenter"):
            raise rpc_error(f'Node identity "{name}" is missing the datacenter field on this token')


def _expiration_ttl_seconds(value: Any) -> float:
    """Read ExpirationTTL as a Go duration string or as nanoseconds."""
    if isinstance(value, bool):
        raise ApiError(400, "Token decoding failed: json: cannot unmarshal bool into ExpirationTTL")
    if isinstance(value, (int, float)):
        return value / 1e9
    if isinstance(value, str):
        try:
            return parse_go_duration(value)
        except ValueError as exc:
            raise ApiError(400, f"Token decoding failed: {exc}") from None
    raise ApiError(400, "Token decoding failed: ExpirationTTL must be a duration string or nanoseconds")


def _expiration_time(store: Store, fields: dict[str, Any], created: datetime) -> datetime | None:
    ttl = fields.get("ExpirationTTL")
    raw_time = fields.get("ExpirationTime")
    ttl_seconds = _expiration_ttl_seconds(ttl) if ttl is not None else 0.0
    if ttl_seconds < 0:
        raise rpc_error(f"Token Expiration TTL '{format_go_duration(ttl_seconds)}' should be > 0")
    if raw_time and ttl_seconds:
        raise rpc_error("Token Expiration TTL and Expiration Time cannot both be set")
    if ttl_seconds:
        expiration: datetime | None = created + timedelta(seconds=ttl_seconds)
    elif raw_time:
        try:
            expiration = parse_rfc3339(raw_time)
        except ValueError as exc:
            raise ApiError(400, f"Token decoding failed: {exc}") from None
    else:
        return None
    _check_expiration_range(store, expiration, created)
    return expiration


def _check_expiration_range(store: Store, expiration: datetime, created: datetime) -> None:
    if expiration < created:
        raise rpc_error("ExpirationTime cannot be before CreateTime")
    expires_in = (expiration - created).total_seconds()
    settings = store.settings
    if expires_in > settings.token_max_ttl_seconds:
        raise rpc_error(
            f"ExpirationTime cannot be more than {format_go_duration(settings.token_max_ttl_seconds)} "
            f"in the future (was {format_go_duration(expires_in)})"
        )
    if expires_in < settings.token_min_ttl_seconds:
        raise rpc_error(
            f"ExpirationTime cannot be less than {format_go_duration(settings.token_min_ttl_seconds)} "
            f"in the future (was {format_go_duration(expires_in)})"
        )


def create_token(store: Store, fields: dict[str, Any]) -> dict[str, Any]:
    """Create a token from decoded body fields, raising ApiError like the token writer."""
    accessor = fields.get("AccessorID") or ""
    secret = fields.get("SecretID") or ""
    if accessor:
        _check_new_id(store, "AccessorID", accessor)
    if secret:
        _check_new_id(store, "SecretID", secret)
    created = now_utc()
    expiration = _expiration_time(store, fields, created)
    policy_ids = _resolve_policy_links(store, fields.get("Policies", []))
    _check_role_links(fields.get("Roles", []))
    _check_identities(fields)
    token = _new_record(store, accessor or new_uuid(), secret or new_uuid(), created)
    token.update(
        Description=fields.get("Description", ""),
        policy_ids=policy_ids,
        ServiceIdentities=fields.get("ServiceIdentities", []),
        NodeIdentities=fields.get("NodeIdentities", []),
        Local=fields.get("Local", False),
        AuthMethod=fields.get("AuthMethod", ""),
        ExpirationTime=expiration,
    )
    _finish(store, token)
    return token


def update_token(store: Store, accessor: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Replace a token's description, links and identities (full replacement)."""
    if fields.get("AccessorID") and fields["AccessorID"] != accessor:
        raise ApiError(400, "Token Accessor ID in URL and payload do not match")
    existing = live_token(store, accessor)
    if existing is None:
        # NOTE: the update-of-a-missing-token text is from memory of Consul's token writer.
        raise rpc_error(f'Cannot find token "{accessor}"')
    if fields.get("SecretID") and fields["SecretID"] != existing["SecretID"]:
        raise rpc_error("Changing a token's SecretID is not permitted")
    if fields.get("Local", existing["Local"]) != existing["Local"]:
        raise rpc_error(f"Cannot toggle local mode of {accessor}")
    if fields.get("AuthMethod") and fields["AuthMethod"] != existing["AuthMethod"]:
        raise rpc_error(f"Cannot change AuthMethod of {accessor}")
    _check_expiration_unchanged(existing, fields, accessor)
    policy_ids = _resolve_policy_links(store, fields.get("Policies", []))
    _check_role_links(fields.get("Roles", []))
    _check_identities(fields)
    existing.update(
        Description=fields.get("Description", ""),
        policy_ids=policy_ids,
        ServiceIdentities=fields.get("ServiceIdentities", []),
        NodeIdentities=fields.get("NodeIdentities", []),
        ModifyIndex=store.next_index(),
    )
    existing["Hash"] = _hash_token(existing)
    return existing


def _check_expiration_unchanged(existing: dict[str, Any], fields: dict[str, Any], accessor: str) -> None:
    if fields.get("ExpirationTTL"):
        raise rpc_error(f"Cannot change expiration time of {accessor}")
    raw_time = fields.get("ExpirationTime")
    if not raw_time:
        return
    try:
        requested = parse_rfc3339(raw_time)
    except ValueError as exc:
        raise ApiError(400, f"Token decoding failed: {exc}") from None
    if existing["ExpirationTime"] is None or requested != existing["ExpirationTime"]:
        raise rpc_error(f"Cannot change expiration time of {accessor}")


def clone_token(store: Store, source: dict[str, Any], description: str | None) -> dict[str, Any]:
    """Copy a token's links, identities and expiration under a new AccessorID and SecretID."""
    token = _new_record(store, new_uuid(), new_uuid(), now_utc())
    token.update(
        Description=source["Description"] if description is None else description,
        policy_ids=list(source["policy_ids"]),
        ServiceIdentities=list(source["ServiceIdentities"]),
        NodeIdentities=list(source["NodeIdentities"]),
        Local=source["Local"],
        AuthMethod=source["AuthMethod"],
        ExpirationTime=source["ExpirationTime"],
    )
    _finish(store, token)
    return token
