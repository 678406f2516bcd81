"""Seed what the running gateway leaves in Consul: its own agent registration.

On a real gateway node, ``consul connect envoy -register`` registers the
gateway service with the local agent when the unit starts. The lab has no
Envoy, so it registers the same service definition once, as a started
gateway would have done.
"""

from __future__ import annotations

import logging

from mesh_compliance.lab import sitefile as s
from mesh_compliance.lab.consul import ConsulAdmin

logger = logging.getLogger("mesh_compliance.lab")

# The -address port that `consul connect envoy` uses when none is given.
GATEWAY_PORT = 8443


def gateway_registration(name: str = s.GATEWAY_SERVICE, status: str = "passing") -> dict:
    """Return the agent service definition that ``consul connect envoy -register`` sends."""
    return {
        "Kind": "terminating-gateway",
        "ID": name,
        "Name": name,
        "Port": GATEWAY_PORT,
        "Check": {
            "Name": "terminating-gateway listening",
            "TCP": f"127.0.0.1:{GATEWAY_PORT}",
            "Interval": "10s",
            "DeregisterCriticalServiceAfter": "6h",
            # The double never runs checks, so the status a running Envoy would reach is set here.
            "Status": status,
        },
    }


def register_gateway(admin: ConsulAdmin) -> None:
    """Register the gateway service through the agent endpoint, as a started unit does."""
    admin.put("/agent/service/register", json=gateway_registration())
    logger.info("seeded Consul: gateway service %s registered with the agent", s.GATEWAY_SERVICE)
