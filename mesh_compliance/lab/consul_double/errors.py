"""Errors that the HTTP layer turns into text/plain responses."""

from __future__ import annotations

ACL_NOT_FOUND = "ACL not found"
PERMISSION_DENIED = "Permission denied"


class ApiError(Exception):
    """An error sent to the client as a status code and a text/plain body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def rpc_error(message: str) -> ApiError:
    """Map a server RPC error to its HTTP status the way Consul's agent/http.go does.

    Consul matches the error text: "Permission denied" and "ACL not found" become 403,
    and every other RPC error, including validation errors, becomes 500.
    """
    if PERMISSION_DENIED in message or ACL_NOT_FOUND in message:
        return ApiError(403, message)
    return ApiError(500, message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
