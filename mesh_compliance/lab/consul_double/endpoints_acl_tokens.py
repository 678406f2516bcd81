"""Endpoints under /v1/acl/token and /v1/acl/tokens."""

from __future__ import annotations

from typing import Any

from .acl_common import missing_for_delete, missing_object, not_found_as_404, require_acls_enabled
from .errors import ACL_NOT_FOUND, ApiError, rpc_error
from .request import Request
from .routing import Router
from .state import ANONYMOUS_ACCESSOR_ID
from .tokens import TOKEN_SPEC, clone_token, create_token, is_expired, live_token, render_token, update_token


def _reveal_secrets(request: Request) -> bool:
    return request.is_allowed("acl", "", "write")


def create(request: Request) -> Any:
    require_acls_enabled(request)
    fields = request.decode_body(TOKEN_SPEC, "Token decoding failed")
    request.require("acl", "", "write")
    return render_token(request.store, create_token(request.store, fields), reveal_secret=True)


def read(request: Request, accessor: str) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "read")
    token = live_token(request.store, accessor)
    if token is None:
        raise missing_object(request, "token")
    return render_token(
        request.store, token, reveal_secret=_reveal_secrets(request), expanded=request.has_param("expanded")
    )


def read_self(request: Request) -> Any:
    require_acls_enabled(request)
    try:
        token = request.token()
    except ApiError as exc:
        if exc.message == ACL_NOT_FOUND and not_found_as_404(request):
            raise ApiError(404, "Supplied token does not exist") from None
        raise
    return render_token(request.store, token, reveal_secret=True)


def update(request: Request, accessor: str) -> Any:
    require_acls_enabled(request)
    fields = request.decode_body(TOKEN_SPEC, "Token decoding failed")
    if fields.get("AccessorID") and fields["AccessorID"] != accessor:
        raise ApiError(400, "Token Accessor ID in URL and payload do not match")
    request.require("acl", "", "write")
    return render_token(request.store, update_token(request.store, accessor, fields), reveal_secret=True)


def clone(request: Request, accessor: str) -> Any:
    require_acls_enabled(request)
    fields = request.decode_body(TOKEN_SPEC, "Token decoding failed") if request.body.strip() else {}
    request.require("acl", "", "write")
    source = live_token(request.store, accessor)
    if source is None:
        # NOTE: assumed to stay 403 "ACL not found" on every version; only reads
        # and deletes are known to have moved to 404.
        raise ApiError(403, ACL_NOT_FOUND)
    token = clone_token(request.store, source, fields.get("Description"))
    return render_token(request.store, token, reveal_secret=True)


def delete(request: Request, accessor: str) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "write")
    if accessor == ANONYMOUS_ACCESSOR_ID:
        raise rpc_error("Delete operation not permitted on the anonymous token")
    token = live_token(request.store, accessor)
    if token is None:
        raise missing_for_delete(request, "token")
    if token["SecretID"] == request.token_secret():
        raise rpc_error("Deletion of the request's authorization token is not permitted")
    del request.store.tokens[accessor]
    request.store.next_index()
    return True


def list_tokens(request: Request) -> Any:
    require_acls_enabled(request)
    request.require("acl", "", "read")
    reveal = _reveal_secrets(request)
    tokens = [
        token
        for _, token in sorted(request.store.tokens.items())
        if not is_expired(token) and _matches_filters(request, token)
    ]
    return [render_token(request.store, token, reveal_secret=reveal) for token in tokens]


def _matches_filters(request: Request, token: dict[str, Any]) -> bool:
    policy_id = request.param("policy")
    if policy_id and policy_id not in token["policy_ids"]:
        return False
    if request.param("role"):
        return False  # the double has no ACL roles, so no token links one
    auth_method = request.param("authmethod")
    if auth_method and token["AuthMethod"] != auth_method:
        return False
    service_name = request.param("servicename")
    if service_name:
        names = {identity["ServiceName"] for identity in token["ServiceIdentities"]}
        if service_name not in names:
            return False
    return True


def register_routes(router: Router) -> None:
    router.add(r"/v1/acl/token", {"PUT": create})
    router.add(r"/v1/acl/token/self", {"GET": read_self})
    router.add(r"/v1/acl/token/(?P<accessor>[^/]+)/clone", {"PUT": clone})
    router.add(r"/v1/acl/token/(?P<accessor>[^/]+)", {"GET": read, "PUT": update, "DELETE": delete})
    router.add(r"/v1/acl/tokens", {"GET": list_tokens})
