"""Control API under /_double/ for tests: state dump, members and fault injection.

Real Consul clients only call /v1/ paths, so they never reach these endpoints.
Every call needs the management token.
"""

from __future__ import annotations

from typing import Any

from . import agent, catalog
from .config_entries import render_entry
from .decoding import DecodeError, parse_json
from .errors import ApiError
from .faults import FaultInjector, parse_rule
from .policies import render_policy
from .request import Request
from .routing import Router
from .tokens import linked_policies


class ControlApi:
    """Routes and handlers of the control API."""

    def __init__(self, faults: FaultInjector) -> None:
        self.faults = faults
        self.router = Router()
        self.router.add(r"/_double/state", {"GET": self.dump_state})
        self.router.add(r"/_double/members", {"POST": self.add_member})
        self.router.add(
            r"/_double/faults", {"POST": self.add_fault, "DELETE": self.clear_faults, "GET": self.list_faults}
        )

    @staticmethod
    def require_management(request: Request) -> None:
        if request.token_secret() != request.settings.management_token:
            raise ApiError(403, "Permission denied: the control API requires the management token")

    @staticmethod
    def _json_body(request: Request) -> Any:
        try:
            return parse_json(request.body)
        except DecodeError as exc:
            raise ApiError(400, f"Request decode failed: {exc}") from None

    def dump_state(self, request: Request) -> Any:
        store = request.store
        return {
            "Index": store.index,
            "Policies": [render_policy(policy) for policy in store.policies.values()],
            # Secrets are left out so a dump can be logged or attached to a report.
            "Tokens": [
                {
                    "AccessorID": token["AccessorID"],
                    "Description": token["Description"],
                    "Policies": [
                        {"ID": policy["ID"], "Name": policy["Name"]} for policy in linked_policies(store, token)
                    ],
                }
                for token in store.tokens.values()
            ],
            "Nodes": [catalog.node_view(node) for node in store.nodes.values()],
            "Services": [
                catalog.catalog_service_entry(store.nodes[node], service)
                for (node, _), service in store.services.items()
                if node in store.nodes
            ],
            "Checks": [catalog.check_view(check) for check in store.checks.values()],
            "KV": sorted(store.kv),
            "ConfigEntries": [render_entry(entry) for entry in store.config_entries.values()],
            "Members": list(store.members),
            "AgentServices": sorted(store.agent_services),
            "Faults": self.faults.describe(),
        }

    def add_member(self, request: Request) -> Any:
        body = self._json_body(request)
        if not isinstance(body, dict) or not body.get("name") or not body.get("address"):
            raise ApiError(400, 'member needs "name" and "address", and may set "status" (default "alive")')
        try:
            member = agent.make_member(request.store, body["name"], body["address"], body.get("status", "alive"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        request.store.members = [item for item in request.store.members if item["Name"] != member["Name"]]
        request.store.members.append(member)
        return member

    def add_fault(self, request: Request) -> Any:
        try:
            rule = parse_rule(self._json_body(request))
        except ValueError as exc:
            raise ApiError(400, f"invalid fault: {exc}") from None
        self.faults.add(rule)
        return self.faults.describe()

    def clear_faults(self, request: Request) -> Any:
        self.faults.clear()
        return True

    def list_faults(self, request: Request) -> Any:
        return self.faults.describe()
