"""Endpoints under /v1/acl/policy and /v1/acl/policies."""

from __future__ import annotations

from typing import Any

from .acl_common import missing_for_delete, missing_object, require_acls_enabled
from .errors import ApiError
from .policies import POLICY_SPEC, create_policy, delete_policy, render_policy, render_policy_stub, update_policy
from .request import Request
from .routing import Router


def create(request: Request) -> Any:
    require_acls_enabled(request)
    fields = request.decode_body(POLICY_SPEC, "Policy decoding failed")
    if fields.get("ID"):
        raise ApiError(400, "Cannot specify the ID when creating a new policy")
    request.require("acl", "", "write")
    return render_policy(create_policy(request.store, fields))


def read(request: Request, policy_id: str) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "read")
    policy = request.store.policies.get(policy_id)
    if policy is None:
        raise missing_object(request, "policy")
    return render_policy(policy)


def read_by_name(request: Request, name: str) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "read")
    policy = request.store.find_policy_by_name(name)
    if policy is None:
        raise missing_object(request, "policy")
    return render_policy(policy)


def update(request: Request, policy_id: str) -> Any:
    require_acls_enabled(request)
    fields = request.decode_body(POLICY_SPEC, "Policy decoding failed")
    if fields.get("ID") and fields["ID"] != policy_id:
        raise ApiError(400, "Policy ID in URL and payload do not match")
    request.require("acl", "", "write")
    return render_policy(update_policy(request.store, policy_id, fields))


def delete(request: Request, policy_id: str) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "write")
    if not delete_policy(request.store, policy_id):
        raise missing_for_delete(request, "policy")
    return True


def list_policies(request: Request) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "read")
    return [render_policy_stub(request.store.policies[key]) for key in sorted(request.store.policies)]


def register_routes(router: Router) -> None:
    router.add(r"/v1/acl/policy", {"PUT": create})
    router.add(r"/v1/acl/policy/name/(?P<name>.+)", {"GET": read_by_name})
    router.add(r"/v1/acl/policy/(?P<policy_id>[^/]+)", {"GET": read, "PUT": update, "DELETE": delete})
    router.add(r"/v1/acl/policies", {"GET": list_policies})
