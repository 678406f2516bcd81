"""POST /v1/internal/acl/authorize: evaluate a batch of permission checks for the request token."""

from __future__ import annotations

from typing import Any

from .acl import ALL_RESOURCES
from .acl_common import require_acls_enabled
from .decoding import STRING, ListOf, Struct
from .errors import ApiError
from .request import Request
from .routing import Router

MAX_AUTHORIZATIONS = 64
_CHECK_SPEC = ListOf(Struct("ACLAuthorizationRequest", {"Resource": STRING, "Segment": STRING, "Access": STRING}))
_KEY_ACCESS = ("read", "list", "write", "write-prefix")
_DEFAULT_ACCESS = ("read", "write")


def authorize(request: Request) -> Any:
    require_acls_enabled(request)
    checks = request.decode_body(_CHECK_SPEC, "Failed to decode request body")
    request.token()  # an unknown secret is 403 "ACL not found"
    if len(checks) > MAX_AUTHORIZATIONS:
        raise ApiError(400, f"Refusing to process more than {MAX_AUTHORIZATIONS} authorizations at once")
    return [_evaluate(request, check) for check in checks]


def _evaluate(request: Request, check: dict[str, Any]) -> dict[str, Any]:
    resource = check.get("Resource", "")
    segment = check.get("Segment", "")
    access = check.get("Access", "")
    if resource not in ALL_RESOURCES:
        raise ApiError(400, f'Invalid ACL resource requested: "{resource}"')
    valid_access = _KEY_ACCESS if resource == "key" else _DEFAULT_ACCESS
    if access not in valid_access:
        raise ApiError(400, f"Invalid access level for {resource} resource: {access}")
    result: dict[str, Any] = {"Resource": resource}
    if segment:
        result["Segment"] = segment
    result["Access"] = access
    result["Allow"] = request.is_allowed(resource, segment, access)
    return result


def register_routes(router: Router) -> None:
    router.add(r"/v1/internal/acl/authorize", {"POST": authorize})
