"""ConsulDouble: build the store and serve the API on a loopback address in a background thread."""

from __future__ import annotations

import ipaddress
import logging
import threading

from .agent import bootstrap_agent
from .faults import FaultInjector
from .policies import bootstrap_global_management
from .server import ConsulHTTPServer
from .state import Settings, Store
from .tokens import bootstrap_tokens
from .version import ConsulVersion

LOGGER = logging.getLogger("mesh_compliance.lab.consul_double")


def check_loopback(host: str) -> None:
    """Raise ValueError unless host is a loopback IP address (127.0.0.0/8 or ::1)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid bind address {host!r}: the Consul double binds only to a loopback IP address "
            "such as 127.0.0.1 or ::1"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"bind address {host} is not a loopback address: the Consul double serves only "
            "127.0.0.0/8 or ::1"
        )


class ConsulDouble:
    """A test double of the Consul HTTP API, served from memory on a loopback address."""

    def __init__(
        self,
        management_token: str,
        version: str = "1.21.4",
        datacenter: str = "dc1",
        node_name: str = "lab-gateway",
        default_policy: str = "deny",
        acl_enabled: bool = True,
        token_min_ttl_seconds: float = 60.0,
        token_max_ttl_seconds: float = 86400.0,
    ) -> None:
        if not management_token:
            raise ValueError("management_token must not be empty")
        if default_policy not in ("allow", "deny"):
            raise ValueError(f"default_policy must be 'allow' or 'deny', got {default_policy!r}")
        self.settings = Settings(
            management_token=management_token,
            version=ConsulVersion.parse(version),
            datacenter=datacenter,
            node_name=node_name,
            default_policy=default_policy,
            acl_enabled=acl_enabled,
            token_min_ttl_seconds=token_min_ttl_seconds,
            token_max_ttl_seconds=token_max_ttl_seconds,
        )
        self.store = Store(self.settings)
        bootstrap_global_management(self.store)
        bootstrap_tokens(self.store)
        bootstrap_agent(self.store)
        self.faults = FaultInjector()
        self._server: ConsulHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on host:port (0 picks a free port) and serve in a daemon thread; return the bound address."""
        check_loopback(host)
        if self._server is not None:
            raise RuntimeError(f"the Consul double is already serving at {self.url}")
        self._server = ConsulHTTPServer((host, port), self.store, self.faults)
        # A short poll interval keeps stop() fast; shutdown() waits for one poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="consul-double", daemon=True
        )
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        LOGGER.info(
            "Consul double %s listening on %s (ACLs %s, default policy %s)",
            self.settings.version,
            self.url,
            "enabled" if self.settings.acl_enabled else "disabled",
            self.settings.default_policy,
        )
        return str(bound_host), int(bound_port)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Consul double is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving and close the listening socket; calling it twice is harmless."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        LOGGER.info("Consul double stopped")
        self._server = None
        self._thread = None

    def __enter__(self) -> "ConsulDouble":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
