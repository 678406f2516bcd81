"""In-memory state of the double: settings, tables and a raft-like index counter."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .version import ConsulVersion

GLOBAL_MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET_ID = "anonymous"

# Rules text of the builtin global-management policy, after Consul's
# structs.ACLPolicyGlobalManagement. Tokens linked to it are treated as management tokens.
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}
"""


@dataclass(frozen=True)
class Settings:
    """Agent configuration the double imitates."""

    management_token: str
    version: ConsulVersion
    datacenter: str = "dc1"
    node_name: str = "lab-gateway"
    default_policy: str = "deny"
    acl_enabled: bool = True
    # acl.token_min_expired_ttl and acl.token_max_expired_ttl, in seconds (Consul defaults 1m and 24h).
    token_min_ttl_seconds: float = 60.0
    token_max_ttl_seconds: float = 86400.0
    node_address: str = "127.0.0.1"

    @property
    def default_allow(self) -> bool:
        return not self.acl_enabled or self.default_policy == "allow"

    @property
    def advertised_default_policy(self) -> str:
        """Value of X-Consul-Default-ACL-Policy."""
        return self.default_policy if self.acl_enabled else "allow"


@dataclass
class Store:
    """All tables of the double. Handlers run one at a time under `lock`."""

    settings: Settings
    lock: threading.RLock = field(default_factory=threading.RLock)
    index: int = 1
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    checks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    kv: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)
    agent_services: dict[str, dict[str, Any]] = field(default_factory=dict)

    def next_index(self) -> int:
        """Advance and return the raft index, as every committed write does."""
        self.index += 1
        return self.index

    def find_token_by_secret(self, secret: str) -> dict[str, Any] | None:
        for token in self.tokens.values():
            if token["SecretID"] == secret:
                return token
        return None

    def find_policy_by_name(self, name: str) -> dict[str, Any] | None:
        for policy in self.policies.values():
            if policy["Name"] == name:
                return policy
        return None


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def new_uuid() -> str:
    return str(uuid.uuid4())
