"""Request context for endpoint handlers: query parameters, token resolution and ACL checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

from .acl import Authorizer, allow_all
from .decoding import DecodeError, decode
from .errors import ACL_NOT_FOUND, PERMISSION_DENIED, ApiError
from .state import ANONYMOUS_ACCESSOR_ID, Store
from .tokens import authorizer_for, live_token_by_secret


@dataclass
class Response:
    """A handler result: a JSON body, or raw bytes with their own content type."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class Request:
    """One HTTP request as endpoint handlers see it."""

    def __init__(
        self,
        method: str,
        path: str,
        raw_query: str,
        headers: Message,
        body: bytes,
        store: Store,
    ) -> None:
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.query = parse_qs(raw_query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.store = store
        self.settings = store.settings
        self.results_filtered = False
        self._token: dict[str, Any] | None = None
        self._authorizer: Authorizer | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def has_param(self, name: str) -> bool:
        return name in self.query

    def token_secret(self) -> str | None:
        """Return the request token from ?token=, X-Consul-Token or Authorization: Bearer, in that order."""
        from_query = self.param("token")
        if from_query:
            return from_query
        from_header = self.headers.get("X-Consul-Token")
        if from_header:
            return from_header
        authorization = self.headers.get("Authorization", "")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.split():
            return rest.split()[0]
        return None

    def token(self) -> dict[str, Any]:
        """Return the token record the request uses; an unknown or expired secret is 403 ACL not found."""
        if self._token is None:
            secret = self.token_secret()
            if secret is None:
                self._token = self.store.tokens[ANONYMOUS_ACCESSOR_ID]
            else:
                token = live_token_by_secret(self.store, secret)
                if token is None:
                    raise ApiError(403, ACL_NOT_FOUND)
                self._token = token
        return self._token

    def authorizer(self) -> Authorizer:
        if self._authorizer is None:
            if not self.settings.acl_enabled:
                self._authorizer = allow_all()
            else:
                self._authorizer = authorizer_for(self.store, self.token())
        return self._authorizer

    def is_allowed(self, resource: str, name: str, access: str) -> bool:
        return self.authorizer().allowed(resource, name, access)

    def require(self, resource: str, name: str, access: str) -> None:
        """Raise 403 Permission denied unless the token grants access on resource name."""
        if not self.is_allowed(resource, name, access):
            raise self.permission_denied(resource, name, access)

    def permission_denied(self, resource: str, name: str, access: str) -> ApiError:
        if not self.settings.version.at_least(1, 11):
            return ApiError(403, PERMISSION_DENIED)
        accessor = self.token()["AccessorID"]
        message = f"{PERMISSION_DENIED}: token with AccessorID '{accessor}' lacks permission '{resource}:{access}'"
        if name:
            message += f' on "{name}"'
        return ApiError(403, message)

    def filter_allowed(self, items: list[Any], allowed: Any) -> list[Any]:
        """Keep the items for which allowed(item) is true and record whether any were hidden."""
        visible = [item for item in items if allowed(item)]
        if len(visible) < len(items):
            self.results_filtered = True
        return visible

    def readable(self, items: list[Any], resource: str, name_of: Any) -> list[Any]:
        """Keep the items whose ``resource`` named ``name_of(item)`` the token may read."""
        return self.filter_allowed(items, lambda item: self.is_allowed(resource, name_of(item), "read"))

    def decode_body(self, spec: Any, prefix: str) -> Any:
        """Decode the JSON body strictly, raising 400 "<prefix>: <reason>" on failure."""
        try:
            return decode(self.body, spec)
        except DecodeError as exc:
            raise ApiError(400, f"{prefix}: {exc}") from None

    def is_anonymous(self) -> bool:
        return self.token_secret() is None
