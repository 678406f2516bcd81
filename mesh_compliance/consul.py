"""Consul HTTP API client built on requests.

It is written to the HTTP API of Consul 1.10 to 1.21 and has no code for
the lab's double, which it is tested against. The address, TLS settings and token follow the consul CLI:
``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_SSL``, ``CONSUL_HTTP_SSL_VERIFY``,
``CONSUL_CACERT``, ``CONSUL_CLIENT_CERT``/``CONSUL_CLIENT_KEY`` and the token
order ``-token-file``, ``CONSUL_HTTP_TOKEN_FILE``, ``CONSUL_HTTP_TOKEN``.

Error bodies from Consul are ``text/plain``; every failure becomes one of the
exceptions in ``mesh_compliance.errors`` so that controls can tell "missing"
from "could not look".
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from mesh_compliance.errors import (
    ConsulPermissionDenied,
    ConsulTokenInvalid,
    ConsulUnexpected,
    ConsulUnreachable,
)
from mesh_compliance.log import logger
from mesh_compliance.redact import redact, register_secret

DEFAULT_ADDR = "http://127.0.0.1:8500"

# Fields Consul fills in on write; a config entry sent back must leave them out.
SERVER_FIELDS = ("CreateIndex", "ModifyIndex", "Hash")
DEFAULT_TIMEOUT = 10.0


class ConsulConfigError(ValueError):
    """The Consul address, TLS or token settings are invalid."""


@dataclass(frozen=True)
class ConsulSettings:
    """Consul address, TLS options and token; repr leaves the token out."""

    address: str
    token: str | None
    token_source: str
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return f"ConsulSettings(address={self.address!r}, token_source={self.token_source!r})"


def resolve_settings(
    addr: str | None = None,
    token_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    environ: dict[str, str] | None = None,
) -> ConsulSettings:
    """Build settings from options first, then the consul CLI's variables."""
    env = os.environ if environ is None else environ
    address = normalize_address(addr or env.get("CONSUL_HTTP_ADDR") or DEFAULT_ADDR, env)
    token, source = _resolve_token(token_file, env)
    verify = _resolve_verify(env)
    cert = _resolve_client_cert(env)
    return ConsulSettings(address, token, source, verify, cert, timeout)


def normalize_address(raw: str, env: dict[str, str]) -> str:
    """Return an http(s) base URL, keeping any path prefix."""
    address = raw.strip().rstrip("/")
    if "://" not in address:
        scheme = "https" if _env_bool(env, "CONSUL_HTTP_SSL") else "http"
        address = f"{scheme}://{address}"

    parts = urlsplit(address)
    if parts.scheme == "unix":
        raise ConsulConfigError(
            f"Consul address {raw!r} is a unix socket, which this client cannot use; "
            "give the agent's HTTP address instead, for example http://127.0.0.1:8500"
        )
    if parts.scheme not in ("http", "https"):
        raise ConsulConfigError(f"Unknown protocol scheme: {parts.scheme} (in Consul address {raw!r})")
    if not parts.hostname:
        raise ConsulConfigError(f"Consul address {raw!r} has no host; use host:port or a URL")
    return address


def _resolve_token(token_file: str | None, env: dict[str, str]) -> tuple[str | None, str]:
    ignored = []
    candidates = [
        (token_file, "--consul-token-file"),
        (env.get("CONSUL_HTTP_TOKEN_FILE"), "CONSUL_HTTP_TOKEN_FILE"),
    ]
    for path, source in candidates:
        if not path:
            continue
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConsulConfigError(f"cannot read Consul token file {path} ({source}): {exc.strerror}") from exc
        # The consul CLI ignores a token file that is empty after trimming.
        if token:
            register_secret(token, "Consul token")
            return token, f"{source} {path}"
        ignored.append(f"{source} {path} is empty and was ignored")

    token = (env.get("CONSUL_HTTP_TOKEN") or "").strip()
    if token:
        register_secret(token, "Consul token")
        return token, "CONSUL_HTTP_TOKEN"
    return None, "; ".join(["anonymous", *ignored])


def _resolve_verify(env: dict[str, str]) -> bool | str:
    if "CONSUL_HTTP_SSL_VERIFY" in env and not _env_bool(env, "CONSUL_HTTP_SSL_VERIFY"):
        return False
    cacert = env.get("CONSUL_CACERT")
    if cacert:
        if not Path(cacert).is_file():
            raise ConsulConfigError(f"CONSUL_CACERT names {cacert}, which is not a readable file")
        return cacert
    # NOTE: CONSUL_CAPATH (a directory of CA files) is not supported by
    # requests; point CONSUL_CACERT at a bundle instead.
    return True


def _resolve_client_cert(env: dict[str, str]) -> tuple[str, str] | None:
    cert, key = env.get("CONSUL_CLIENT_CERT"), env.get("CONSUL_CLIENT_KEY")
    if bool(cert) != bool(key):
        raise ConsulConfigError("both client cert and client key must be provided (CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY)")
    return (cert, key) if cert else None


def _env_bool(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "t", "true", "yes", "on")


@dataclass
class Response:
    """A decoded Consul response with the raw text kept as evidence."""

    status: int
    body: Any
    text: str
    index: int | None
    default_policy: str | None
    filtered: bool = False


class ConsulClient:
    """Thin HTTP client; one method per Consul call the suite makes."""

    def __init__(self, settings: ConsulSettings, token: str | None = None):
        self.settings = settings
        self._token = token if token is not None else settings.token
        self._session = requests.Session()
        self._session.verify = settings.verify
        if settings.cert:
            self._session.cert = settings.cert

    def with_token(self, token: str) -> "ConsulClient":
        """Return a client for the same agent that authenticates with ``token``."""
        register_secret(token, "Consul token")
        return ConsulClient(self.settings, token=token)

    # -- transport -------------------------------------------------------

    def request(self, method: str, path: str, *, params=None, json_body=None,
                data: bytes | None = None, ok=(200,)) -> Response:
        """Send one request and map transport and ACL failures to exceptions.

        Statuses in ``ok`` are returned; 404 is returned too, so callers
        decide what "not found" means. Everything else raises.
        """
        url = f"{self.settings.address}{path}"
        headers = {"X-Consul-Token": self._token} if self._token else {}
        logger.debug("consul %s %s params=%s", method, path, params)

        try:
            answer = self._session.request(
                method, url, params=params, json=json_body, data=data,
                headers=headers, timeout=self.settings.timeout,
            )
        except requests.Timeout as exc:
            raise ConsulUnreachable(f"Consul at {self.settings.address} did not respond to {method} {path} within {self.settings.timeout:g}s") from exc
        except requests.ConnectionError as exc:
            raise ConsulUnreachable(
                f"cannot connect to Consul at {self.settings.address} ({method} {path}): {_reason(exc)}; "
                "check --consul-addr or CONSUL_HTTP_ADDR"
            ) from exc

        text = redact(answer.text)
        logger.debug("consul %s %s -> %s %s", method, path, answer.status_code, text[:300])
        response = Response(answer.status_code, None, text, _index(answer),
                            answer.headers.get("X-Consul-Default-ACL-Policy"),
                            answer.headers.get("X-Consul-Results-Filtered-By-ACLs") == "true")

        if answer.status_code in ok:
            response.body = _decode(answer, method, path)
            return response
        if answer.status_code == 404:
            return response
        self._raise_for(answer.status_code, text, method, path)
        return response

    def _raise_for(self, status: int, text: str, method: str, path: str) -> None:
        where = f"{method} {path}"
        if status == 403 and "Permission denied" in text:
            raise ConsulPermissionDenied(f"the token ({self.settings.token_source}) lacks permission for {where}: {text.strip()}")
        if status == 403 and "ACL not found" in text:
            # The caller decides whether this means "object missing" (Consul
            # up to 1.14) or "token unknown"; see read_optional.
            raise _AclNotFound(text.strip())
        if status == 401 and "ACL support disabled" in text:
            raise ConsulUnexpected(f"ACLs are disabled on this Consul agent ({where} returned 401 ACL support disabled)")
        raise ConsulUnexpected(f"Consul returned {status} for {where}: {text.strip()[:500]}")

    def get(self, path: str, **params) -> Response:
        return self.request("GET", path, params=params or None)

    def read_optional(self, path: str, **params) -> Response:
        """GET an object whose absence Consul reports as 404 or 403 ACL not found.

        Consul up to 1.14 returns 403 ``ACL not found`` for a missing policy or
        token, newer versions 404. The same 403 also means "your token is
        unknown", so that case is checked separately with /v1/acl/token/self.
        """
        try:
            return self.get(path, **params)
        except _AclNotFound as exc:
            self.check_own_token()
            return Response(404, None, str(exc), None, None)

    # -- token identity --------------------------------------------------

    def token_self(self) -> Response:
        """Read the token the client authenticates with (404/403 when unknown)."""
        try:
            return self.get("/v1/acl/token/self")
        except _AclNotFound as exc:
            return Response(404, None, str(exc), None, None)

    def check_own_token(self) -> dict:
        """Return the client's own token, or raise ConsulTokenInvalid."""
        if not self._token:
            raise ConsulTokenInvalid(
                f"no Consul token configured ({self.settings.token_source}); "
                "set --consul-token-file, CONSUL_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN"
            )
        answer = self.token_self()
        if answer.status != 200:
            raise ConsulTokenInvalid(
                f"the Consul token from {self.settings.token_source} is unknown to Consul or expired "
                f"({answer.status} {answer.text.strip()})"
            )
        return answer.body

    # -- ACL -------------------------------------------------------------

    def policy_by_name(self, name: str) -> dict | None:
        answer = self.read_optional(f"/v1/acl/policy/name/{_seg(name)}")
        return answer.body if answer.status == 200 else None

    def policy_by_id(self, policy_id: str) -> dict | None:
        answer = self.read_optional(f"/v1/acl/policy/{_seg(policy_id)}")
        return answer.body if answer.status == 200 else None

    def create_policy(self, body: dict) -> dict:
        return self.request("PUT", "/v1/acl/policy", json_body=body).body

    def update_policy(self, policy_id: str, body: dict) -> dict:
        return self.request("PUT", f"/v1/acl/policy/{_seg(policy_id)}", json_body=body).body

    def tokens_for_policy(self, policy_id: str) -> list[dict]:
        return self.get("/v1/acl/tokens", policy=policy_id).body or []

    def token_by_accessor(self, accessor: str) -> dict | None:
        answer = self.read_optional(f"/v1/acl/token/{_seg(accessor)}", expanded="")
        return answer.body if answer.status == 200 else None

    def create_token(self, body: dict) -> dict:
        return self.request("PUT", "/v1/acl/token", json_body=body).body

    # -- catalog ---------------------------------------------------------

    def catalog_service(self, name: str) -> list[dict]:
        """Return the service's catalog entries; raise if ACLs hid some of them."""
        answer = self.get(f"/v1/catalog/service/{_seg(name)}")
        if answer.filtered:
            raise ConsulPermissionDenied(
                f"Consul hid entries of service {name} from the token ({self.settings.token_source}): "
                "it needs service:read and node:read"
            )
        return answer.body or []

    def catalog_node(self, node: str) -> dict | None:
        return self.get(f"/v1/catalog/node/{_seg(node)}").body

    def catalog_register(self, body: dict) -> None:
        self.request("PUT", "/v1/catalog/register", json_body=body)

    def catalog_deregister(self, body: dict) -> None:
        self.request("PUT", "/v1/catalog/deregister", json_body=body)

    # -- config entries --------------------------------------------------

    def config_entry(self, kind: str, name: str) -> dict | None:
        answer = self.get(f"/v1/config/{_seg(kind)}/{_seg(name)}")
        return answer.body if answer.status == 200 else None

    def write_config_entry(self, body: dict, cas: int | None = None) -> bool:
        params = {"cas": str(cas)} if cas is not None else None
        return bool(self.request("PUT", "/v1/config", params=params, json_body=body).body)

    def config_entries(self, kind: str) -> list[dict]:
        return self.get(f"/v1/config/{_seg(kind)}").body or []

    def gateway_services(self, gateway: str) -> list[dict]:
        # Consul may return null instead of [] when the gateway has no config entry.
        return self.get(f"/v1/catalog/gateway-services/{_seg(gateway)}").body or []

    # -- intentions and health -------------------------------------------

    def intention_check(self, source: str, destination: str) -> Response:
        """Evaluate source -> destination as the proxies do (precedence, wildcards, default policy)."""
        return self.get("/v1/connect/intentions/check", source=source, destination=destination)

    def intentions(self) -> list[dict]:
        answer = self.get("/v1/connect/intentions")
        if answer.filtered:
            raise ConsulPermissionDenied(
                f"Consul hid intentions from the token ({self.settings.token_source}): it needs intentions:read")
        return answer.body or []

    def health_service(self, name: str) -> list[dict]:
        return self.get(f"/v1/health/service/{_seg(name)}").body or []

    # -- KV --------------------------------------------------------------

    def kv_get(self, key: str) -> tuple[bool, str | None]:
        """Return (exists, value); value is None when the stored value is empty."""
        exists, value, _ = self.kv_read(key)
        return exists, value

    def kv_read(self, key: str) -> tuple[bool, str | None, int]:
        """Return (exists, value, ModifyIndex); the index is 0 for a missing key."""
        answer = self.get(f"/v1/kv/{quote(key, safe='/')}")
        if answer.status == 404:
            return False, None, 0
        item = (answer.body or [{}])[0]
        raw = item.get("Value")
        value = None if raw is None else base64.b64decode(raw).decode("utf-8", errors="replace")
        return True, value, int(item.get("ModifyIndex") or 0)

    def kv_put(self, key: str, value: str, cas: int | None = None) -> bool:
        """Write a raw value; with ``cas`` only if the key's ModifyIndex still matches (0: absent)."""
        params = {"cas": str(cas)} if cas is not None else None
        # The body is the raw value; json= would store it with its quotes.
        answer = self.request("PUT", f"/v1/kv/{quote(key, safe='/')}", params=params, data=value.encode("utf-8"))
        return bool(answer.body)

    # -- agent -----------------------------------------------------------

    def agent_self(self) -> dict:
        return self.get("/v1/agent/self").body

    def agent_services(self) -> list[dict]:
        """Return the services registered with this agent (what `consul connect envoy -register` writes)."""
        return list((self.get("/v1/agent/services").body or {}).values())

    def members(self) -> list[dict]:
        """Return the agent's LAN members; raise if ACLs hid some of them."""
        answer = self.get("/v1/agent/members")
        if answer.filtered:
            raise ConsulPermissionDenied(
                f"Consul hid agent members from the token ({self.settings.token_source}): it needs node:read")
        return answer.body or []


class _AclNotFound(ConsulUnexpected):
    """403 "ACL not found": a missing object (Consul <= 1.14) or an unknown token."""


def _seg(value: str) -> str:
    return quote(value, safe="")


def _index(answer: requests.Response) -> int | None:
    raw = answer.headers.get("X-Consul-Index")
    return int(raw) if raw and raw.isdigit() else None


def _decode(answer: requests.Response, method: str, path: str) -> Any:
    if not answer.content:
        return None
    try:
        return answer.json()
    except json.JSONDecodeError as exc:
        raise ConsulUnexpected(f"Consul returned a body that is not JSON for {method} {path}: {redact(answer.text[:200])!r}") from exc


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text[:200]
