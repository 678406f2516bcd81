"""Checks shared by the /v1/acl endpoints."""

from __future__ import annotations

from .errors import ACL_NOT_FOUND, ApiError
from .request import Request

# Consul moved "not found" on ACL reads from 403 to 404 (hashicorp/consul PR 16105,
# merged February 2023). The release that shipped it is assumed to be 1.15.0.
NOT_FOUND_AS_404_SINCE = (1, 15)


def require_acls_enabled(request: Request) -> None:
    """Raise 401 when ACLs are disabled, as every /v1/acl endpoint does."""
    if not request.settings.acl_enabled:
        raise ApiError(401, "ACL support disabled")


def not_found_as_404(request: Request) -> bool:
    return request.settings.version.at_least(*NOT_FOUND_AS_404_SINCE)


def missing_object(request: Request, kind: str) -> ApiError:
    """Return the error for reading a policy or token that does not exist."""
    if not_found_as_404(request):
        return ApiError(404, f"Requested {kind} does not exist: {ACL_NOT_FOUND}")
    return ApiError(403, ACL_NOT_FOUND)


def missing_for_delete(request: Request, kind: str) -> ApiError:
    """Return the error for deleting a policy or token that does not exist."""
    if not_found_as_404(request):
        return ApiError(404, f"Cannot find {kind} to delete")
    return ApiError(403, ACL_NOT_FOUND)
