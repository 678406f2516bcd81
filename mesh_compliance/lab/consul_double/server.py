"""HTTP server: request parsing, routing, fault injection and response headers."""

from __future__ import annotations

import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from . import (
    endpoints_acl_policies,
    endpoints_acl_tokens,
    endpoints_agent,
    endpoints_authorize,
    endpoints_catalog,
    endpoints_config,
    endpoints_health,
    endpoints_intentions,
    endpoints_kv,
)
from .control import ControlApi
from .errors import ApiError
from .faults import INJECTED_FAULT_MESSAGE, FaultInjector
from .request import Request, Response
from .routing import MethodNotAllowed, Router
from .state import Store

LOGGER = logging.getLogger("mesh_compliance.lab.consul_double")

# NOTE: the release that started returning a message instead of an empty 404
# for unknown /v1/ paths is unconfirmed, so 1.15 is assumed.
UNKNOWN_PATH_MESSAGE_SINCE = (1, 15)
UNKNOWN_PATH_MESSAGE = "Invalid URL path: not a recognized HTTP API endpoint"
# X-Consul-Results-Filtered-By-ACLs appeared in Consul 1.11.
FILTERED_HEADER_SINCE = (1, 11)


def build_router() -> Router:
    router = Router()
    for module in (
        endpoints_acl_policies,
        endpoints_acl_tokens,
        endpoints_authorize,
        endpoints_catalog,
        endpoints_config,
        endpoints_kv,
        endpoints_intentions,
        endpoints_agent,
        endpoints_health,
    ):
        module.register_routes(router)
    return router


class ConsulHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that carries the double's store, router and fault rules."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, faults: FaultInjector) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.store = store
        self.faults = faults
        self.router = build_router()
        self.control = ControlApi(faults)
        super().__init__(address, ConsulRequestHandler)


class ConsulRequestHandler(BaseHTTPRequestHandler):
    """Handle one HTTP request against the double."""

    server: ConsulHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "consul-double"

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - name fixed by the base class
        """Silence the default access log, which would print ?token= values; _handle logs instead."""

    def _handle(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        path = unquote(url.path)
        body = self._read_body()
        request = Request(self.command, path, url.query, self.headers, body, self.server.store)
        if path.startswith("/_double/"):
            response = self._dispatch(request, self.server.control.router, control=True)
        else:
            fault = self.server.faults.take(self.command, path)
            if fault is not None:
                LOGGER.info("injecting %s fault into %s %s", fault.mode, self.command, path)
                if fault.mode == "drop":
                    self.close_connection = True
                    self._log(path, "dropped", started)
                    return
                if fault.mode == "stall":
                    time.sleep(fault.stall_seconds)
            if fault is not None and fault.mode == "status500":
                response = _text(500, INJECTED_FAULT_MESSAGE)
            else:
                response = self._dispatch(request, self.server.router, control=False)
        self._send(request, response)
        self._log(path, str(response.status), started)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, request: Request, router: Router, control: bool) -> Response:
        store = self.server.store
        try:
            with store.lock:
                if control:
                    ControlApi.require_management(request)
                resolved = router.resolve(request.method, request.path)
                if resolved is None:
                    return _unknown_path(request)
                handler, params = resolved
                if not control and _needs_token_check(request):
                    request.token()  # an unknown or expired secret is 403 "ACL not found"
                result = handler(request, **params)
        except MethodNotAllowed as exc:
            if request.method == "OPTIONS":
                return Response(raw=b"", content_type="text/plain", headers={"Allow": exc.allow_header})
            return _text(405, exc.message, {"Allow": exc.allow_header})
        except ApiError as exc:
            return _text(exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - a handler bug must answer 500, not kill the thread
            LOGGER.exception("handler for %s %s failed", request.method, request.path)
            return _text(500, f"internal error in the Consul double: {type(exc).__name__}: {exc}")
        return result if isinstance(result, Response) else Response(body=result)

    def _send(self, request: Request, response: Response) -> None:
        payload = response.raw if response.raw is not None else _encode_json(response.body, request)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in _standard_headers(request, response).items():
            self.send_header(name, value)
        self.end_headers()
        if request.method != "HEAD":
            self.wfile.write(payload)

    def _log(self, path: str, outcome: str, started: float) -> None:
        # Only the path is logged: the query string may carry ?token=.
        elapsed_ms = (time.monotonic() - started) * 1000
        LOGGER.info("%s %s -> %s (%.1f ms)", self.command, path, outcome, elapsed_ms)


def _needs_token_check(request: Request) -> bool:
    """Return whether the request token must resolve before the handler runs.

    Consul resolves the token on every endpoint that reaches a server RPC, so an
    unknown secret fails even where no item would be checked. Token self maps the
    failure to its own status, and the status endpoints do not use tokens.
    """
    if not request.settings.acl_enabled:
        return False
    return request.path != "/v1/acl/token/self" and not request.path.startswith("/v1/status/")


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, raw=message.encode(), content_type="text/plain", headers=headers or {})


def _unknown_path(request: Request) -> Response:
    if request.path.startswith("/v1/") and request.settings.version.at_least(*UNKNOWN_PATH_MESSAGE_SINCE):
        return _text(404, UNKNOWN_PATH_MESSAGE)
    return _text(404, "")


def _encode_json(body: Any, request: Request) -> bytes:
    if request.has_param("pretty"):
        return json.dumps(body, indent=4).encode()
    return json.dumps(body).encode()


def _standard_headers(request: Request, response: Response) -> dict[str, str]:
    settings = request.settings
    headers = {"X-Consul-Default-ACL-Policy": settings.advertised_default_policy}
    if request.path.startswith("/v1/") and request.method == "GET" and response.status < 500:
        # The index is never 0; Consul sends 1 in its place.
        headers["X-Consul-Index"] = str(max(request.store.index, 1))
        headers["X-Consul-KnownLeader"] = "true"
        headers["X-Consul-LastContact"] = "0"
    filtered_header_applies = (
        request.results_filtered
        and settings.acl_enabled
        and settings.version.at_least(*FILTERED_HEADER_SINCE)
        and not request.is_anonymous()
    )
    if filtered_header_applies:
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    headers.update(response.headers)
    return headers
