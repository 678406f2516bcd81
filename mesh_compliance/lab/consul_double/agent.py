"""The one agent the double models: its node, its members and its local services."""

from __future__ import annotations

from typing import Any

from . import catalog
from .state import Store

MEMBER_STATUS = {"none": 0, "alive": 1, "leaving": 2, "left": 3, "failed": 4}
SERF_LAN_PORT = 8301
SERVER_RPC_ADDRESS = "127.0.0.1:8300"


def bootstrap_agent(store: Store) -> None:
    """Register the agent's own node, its serfHealth check and its member entry."""
    settings = store.settings
    catalog.put_node(
        store,
        {
            "ID": "",
            "Node": settings.node_name,
            "Address": settings.node_address,
            "Datacenter": settings.datacenter,
            "TaggedAddresses": {"lan": settings.node_address, "wan": settings.node_address},
            "Meta": {"consul-network-segment": ""},
        },
    )
    catalog.put_check(
        store,
        {
            "Node": settings.node_name,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "Output": "Agent alive and reachable",
        },
    )
    store.members.append(make_member(store, settings.node_name, settings.node_address, "alive"))


def make_member(store: Store, name: str, address: str, status: str | int) -> dict[str, Any]:
    """Build a serf LAN member as /v1/agent/members returns it; raise ValueError on a bad status."""
    if isinstance(status, str):
        if status not in MEMBER_STATUS:
            raise ValueError(f"invalid member status {status!r}: expected one of {', '.join(MEMBER_STATUS)}")
        status = MEMBER_STATUS[status]
    settings = store.settings
    return {
        "Name": name,
        "Addr": address,
        "Port": SERF_LAN_PORT,
        "Tags": {"dc": settings.datacenter, "role": "consul", "build": f"{settings.version}:lab", "port": "8300"},
        "Status": status,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


def agent_service_view(store: Store, service: dict[str, Any]) -> dict[str, Any]:
    """Return a service as /v1/agent/services lists it."""
    view = {
        "ID": service["ID"],
        "Service": service["Service"],
        "Tags": service.get("Tags") or [],
        "Meta": service.get("Meta") or {},
        "Port": service.get("Port", 0),
        "Address": service.get("Address", ""),
        "TaggedAddresses": service.get("TaggedAddresses") or None,
        "Weights": service.get("Weights") or catalog.DEFAULT_WEIGHTS,
        "EnableTagOverride": service.get("EnableTagOverride", False),
        "Datacenter": store.settings.datacenter,
    }
    if service.get("Kind"):
        view["Kind"] = service["Kind"]
    if service.get("Proxy"):
        view["Proxy"] = service["Proxy"]
    if service.get("Connect"):
        view["Connect"] = service["Connect"]
    return view
