"""Every change a fixer makes passes through here: planned, guarded, journalled.

Fixers are written once. In a dry run the same fixer code runs, but each
write is recorded as a planned change with a before/after diff and is not
sent. In a real run each write is checked against the safety guards, sent,
and written to the journal with the state before it and how to undo it.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from mesh_compliance.consul import SERVER_FIELDS, ConsulClient, Response
from mesh_compliance.errors import FixError
from mesh_compliance.journal import Journal, scrub
from mesh_compliance.log import logger
from mesh_compliance.redact import known_secrets, redact

PLANNED_ID = "(new)"
PLANNED_SECRET = "(new token secret)"

# Units whose stop would cut the suite off from the Consul agent it talks to.
AGENT_UNITS = ("service-discover", "service-discover.service", "consul", "consul.service")


@dataclass
class PlannedChange:
    control: str
    kind: str            # consul, file, command, sql
    obj: str
    action: str
    diff: str = ""

    def describe(self) -> str:
        text = f"would {self.action} {self.obj}"
        return f"{text}\n{self.diff}" if self.diff else text


@dataclass
class ChangeLog:
    """Record of the changes one fixer made or, in a dry run, would make."""

    control: str
    dry_run: bool
    journal: Journal | None
    own_accessor: str = ""
    own_policy_ids: frozenset[str] = frozenset()
    planned: list[PlannedChange] = field(default_factory=list)

    def plan(self, kind: str, obj: str, action: str, before=None, after=None) -> None:
        change = PlannedChange(self.control, kind, obj, action, _diff(before, after))
        logger.info("plan: %s", redact(change.describe().splitlines()[0]))
        self.planned.append(change)

    def journal_entry(self, **entry) -> None:
        if self.journal is not None:
            self.journal.record(control=self.control, **entry)


class GuardedConsul(ConsulClient):
    """A ConsulClient whose writes are planned (dry run) or guarded and journalled."""

    def __init__(self, client: ConsulClient, log: ChangeLog):
        super().__init__(client.settings, token=client._token)
        self._log = log

    def request(self, method: str, path: str, *, params=None, json_body=None, data=None, ok=(200,)) -> Response:
        if method == "GET":
            return super().request(method, path, params=params, json_body=json_body, data=data, ok=ok)

        self._guard(method, path, json_body)
        target = _describe_target(method, path, json_body)
        before = self._before(method, path, json_body)
        after = json_body if json_body is not None else (data.decode("utf-8", errors="replace") if data else None)

        if self._log.dry_run:
            old_view, new_view = _views(path, before, after)
            self._log.plan("consul", target, _verb(method, path, before), old_view, new_view)
            return Response(200, _planned_body(method, path, json_body), "", None, None)

        response = super().request(method, path, params=params, json_body=json_body, data=data, ok=ok)
        if path == "/v1/acl/token" and isinstance(response.body, dict):
            target = f"ACL token {response.body.get('AccessorID')}"
        self._log.journal_entry(kind="consul", obj=target, action=f"{method} {path}", before=before,
                                after=_after(path, json_body, response), undo=_undo(method, path, json_body, before, response))
        return response

    # -- guards -------------------------------------------------------------

    def _guard(self, method: str, path: str, body) -> None:
        own = self._log.own_accessor
        if own and path.rstrip("/").endswith(f"/v1/acl/token/{own}"):
            raise FixError("refusing to change or delete the token this run authenticates with")
        match = re.fullmatch(r"/v1/acl/policy/([^/]+)", path)
        if match and method in ("PUT", "DELETE") and unquote(match.group(1)) in self._log.own_policy_ids:
            raise FixError("refusing to change a policy linked to the token this run authenticates with, "
                           "because that could take permissions away from it")

    # -- state before a write -----------------------------------------------

    def _before(self, method: str, path: str, body):
        source = _before_path(method, path, body)
        if source is None:
            return None
        answer = super().request("GET", source)
        if answer.status != 200:
            return None
        if source.startswith("/v1/acl/token/") and isinstance(answer.body, dict):
            # A token's secret never enters the journal, so a deleted token
            # cannot be restored with its old secret.
            return {key: value for key, value in answer.body.items() if key != "SecretID"}
        return answer.body


def _before_path(method: str, path: str, body) -> str | None:
    if re.fullmatch(r"/v1/acl/(policy|token)/[^/]+", path):
        return path
    if path in ("/v1/catalog/register", "/v1/catalog/deregister") and isinstance(body, dict) and body.get("Node"):
        return f"/v1/catalog/node/{body['Node']}"
    if path == "/v1/config" and isinstance(body, dict):
        kind, name = _entry_id(body)
        return f"/v1/config/{kind}/{name}" if kind and name else None
    if path.startswith("/v1/config/") or path.startswith("/v1/kv/"):
        return path
    return None


def _entry_id(body: dict) -> tuple[str | None, str | None]:
    lowered = {key.lower(): value for key, value in body.items()}
    return lowered.get("kind"), lowered.get("name")


def _describe_target(method: str, path: str, body) -> str:
    if path == "/v1/config" and isinstance(body, dict):
        kind, name = _entry_id(body)
        return f"config entry {kind}/{name}"
    if path.startswith("/v1/config/"):
        return "config entry " + path.removeprefix("/v1/config/")
    if path.startswith("/v1/kv/"):
        return "KV key " + path.removeprefix("/v1/kv/")
    if path.startswith("/v1/catalog/") and isinstance(body, dict):
        service = (body.get("Service") or {}).get("Service") or body.get("ServiceID") or "the node"
        return f"catalog {service} on node {body.get('Node')}"
    if path.startswith("/v1/acl/policy"):
        name = (body or {}).get("Name") if isinstance(body, dict) else None
        return f"ACL policy {name or path.rsplit('/', 1)[-1]}"
    if path.startswith("/v1/acl/token"):
        return "ACL token " + (path.rsplit("/", 1)[-1] if path != "/v1/acl/token" else PLANNED_ID)
    return f"{method} {path}"


def _verb(method: str, path: str, before) -> str:
    if method == "DELETE" or path == "/v1/catalog/deregister":
        return "delete"
    return "update" if before is not None else "create"


def _planned_body(method: str, path: str, body):
    if path == "/v1/acl/token" and method == "PUT":
        return {**(body or {}), "AccessorID": PLANNED_ID, "SecretID": PLANNED_SECRET}
    if path == "/v1/acl/policy" and method == "PUT":
        return {**(body or {}), "ID": PLANNED_ID}
    if path.startswith("/v1/acl/policy/"):
        return body
    return True


def _after(path: str, body, response: Response):
    if path.startswith("/v1/acl/") and isinstance(response.body, dict):
        return {key: value for key, value in response.body.items() if key != "SecretID"}
    return body


def _undo(method: str, path: str, body, before, response: Response) -> dict | None:
    """Return how rollback puts back the state before this write, or None if it cannot."""
    if scrub(before) != before:
        return None          # the previous state held a secret that the journal does not keep
    if path == "/v1/acl/policy" and method == "PUT" and isinstance(response.body, dict):
        return {"method": "DELETE", "path": f"/v1/acl/policy/{response.body.get('ID')}"}
    if path == "/v1/acl/token" and method == "PUT" and isinstance(response.body, dict):
        return {"method": "DELETE", "path": f"/v1/acl/token/{response.body.get('AccessorID')}"}
    if path.startswith("/v1/acl/policy/") and isinstance(before, dict):
        keep = ("ID", "Name", "Description", "Rules", "Datacenters")
        return {"method": "PUT", "path": path, "json": {key: before.get(key) for key in keep}}
    if path in ("/v1/catalog/register", "/v1/catalog/deregister"):
        return {"catalog_node": (body or {}).get("Node"), "before": before}
    if path == "/v1/config" or path.startswith("/v1/config/"):
        kind, name = _entry_id(body) if isinstance(body, dict) else path.removeprefix("/v1/config/").split("/", 1)
        if before is None:
            return {"method": "DELETE", "path": f"/v1/config/{kind}/{name}"}
        fields = {key: value for key, value in before.items() if key not in ("CreateIndex", "ModifyIndex", "Hash")}
        return {"method": "PUT", "path": "/v1/config", "json": fields}
    if path.startswith("/v1/kv/"):
        if before is None:
            return {"method": "DELETE", "path": path}
        value = (before[0].get("Value") if isinstance(before, list) and before else None) or ""
        return {"method": "PUT", "path": path, "base64": value}
    return None


def _views(path: str, before, after):
    """Return comparable views of the state before and the body sent, for a plan's diff.

    Only the fields the write sets are compared, server-filled fields are
    left out, and KV values are never shown.
    """
    if path.startswith("/v1/kv/"):
        new = {"value": f"<new value, {len(after or '')} characters>"}
        if before is None:
            return None, new
        has_value = bool(before and before[0].get("Value"))
        return {"value": "<existing value>" if has_value else "<empty>"}, new
    if path in ("/v1/catalog/register", "/v1/catalog/deregister") and isinstance(after, dict):
        return _catalog_view(before, after), after
    if isinstance(before, dict) and isinstance(after, dict):
        wanted = {key.lower() for key in after}
        old = {key: value for key, value in before.items() if key.lower() in wanted and key not in SERVER_FIELDS}
        return old, after
    return before, after


def _catalog_view(before, body: dict):
    if not isinstance(before, dict):
        return None
    node = before.get("Node") or {}
    view = {"Node": node.get("Node"), "Address": node.get("Address"), "NodeMeta": node.get("Meta") or {}}
    wanted = (body.get("Service") or {}).get("ID") or body.get("ServiceID")
    for service in (before.get("Services") or {}).values():
        if service.get("ID") == wanted:
            view["Service"] = {"ID": service.get("ID"), "Service": service.get("Service"), "Port": service.get("Port")}
    return view


def _diff(before, after) -> str:
    """Return a unified diff of two states, with every known secret masked."""
    old = _lines(before)
    new = _lines(after)
    if old == new:
        return ""
    return "".join(difflib.unified_diff(old, new, "before", "after"))


def _lines(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and isinstance(value.get("Rules"), str):
        # Rules are text inside the object; show them as lines, so a diff
        # shows the rule that changed.
        rest = {key: item for key, item in value.items() if key != "Rules"}
        text = json.dumps(rest, indent=2, sort_keys=True, default=str) + "\nRules:\n" + value["Rules"]
    else:
        text = json.dumps(value, indent=2, sort_keys=True, default=str)
    for secret in known_secrets():
        text = text.replace(secret, "<secret>")
    text = text.replace(PLANNED_SECRET, "<secret>")
    return [line + "\n" for line in text.splitlines()]
