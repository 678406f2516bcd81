"""Endpoints under /v1/connect/intentions, backed by service-intentions config entries."""

from __future__ import annotations

from typing import Any

from . import config_entries as entries
from .decoding import ANY, INT, OBJECT, STRING, STRING_MAP, Struct
from .errors import ApiError, rpc_error
from .filters import apply_filter
from .request import Request
from .routing import Router

INTENTION_SPEC = Struct(
    "Intention",
    {
        "ID": STRING,
        "Description": STRING,
        "SourceNS": STRING,
        "SourceName": STRING,
        "DestinationNS": STRING,
        "DestinationName": STRING,
        "SourcePartition": STRING,
        "DestinationPartition": STRING,
        "SourcePeer": STRING,
        "SourceSamenessGroup": STRING,
        "SourceType": STRING,
        "Action": STRING,
        "Permissions": ANY,
        "Precedence": INT,
        "Meta": STRING_MAP,
        "LegacyID": STRING,
        "CreatedAt": STRING,
        "UpdatedAt": STRING,
        "Hash": ANY,
        "CreateIndex": INT,
        "ModifyIndex": INT,
        "JWT": OBJECT,
    },
)


def _required(request: Request, name: str) -> str:
    value = request.param(name)
    if not value:
        raise rpc_error(f"required query parameter '{name}' not set")
    return value


def _intention_view(entry: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "Description": source.get("Description", ""),
        "SourceNS": "default",
        "SourceName": source["Name"],
        "DestinationNS": "default",
        "DestinationName": entry["Name"],
        "SourceType": source.get("Type", "consul"),
        "Action": source.get("Action", ""),
    }
    if source.get("Permissions"):
        view["Permissions"] = source["Permissions"]
    view["Precedence"] = source["Precedence"]
    if source.get("LegacyMeta"):
        view["Meta"] = source["LegacyMeta"]
    view["CreateIndex"] = entry["CreateIndex"]
    view["ModifyIndex"] = entry["ModifyIndex"]
    return view


def _all_intentions(request: Request) -> list[dict[str, Any]]:
    views = []
    for (kind, _), entry in sorted(request.store.config_entries.items()):
        if kind == entries.SERVICE_INTENTIONS:
            views.extend(_intention_view(entry, source) for source in entry.get("Sources", []))
    views.sort(key=lambda view: (-view["Precedence"], view["DestinationName"], view["SourceName"]))
    return views


def check(request: Request) -> Any:
    source = _required(request, "source")
    destination = _required(request, "destination")
    # Consul requires only service:read here because the result reveals nothing but allow or deny.
    request.require("service", destination, "read")
    matches = [
        view
        for view in _all_intentions(request)
        if view["SourceName"] in (source, "*") and view["DestinationName"] in (destination, "*")
    ]
    if not matches:
        return {"Allowed": request.settings.default_allow}
    best = max(matches, key=lambda view: view["Precedence"])
    # Intentions with L7 permissions always evaluate as deny on this endpoint.
    return {"Allowed": best["Action"] == "allow" and not best.get("Permissions")}


def read_exact(request: Request) -> Any:
    source = _required(request, "source")
    destination = _required(request, "destination")
    request.require("intention", destination, "read")
    entry = request.store.config_entries.get((entries.SERVICE_INTENTIONS, destination))
    for item in (entry or {}).get("Sources", []):
        if item["Name"] == source:
            return _intention_view(entry, item)
    raise ApiError(404, "Intention not found")


def upsert_exact(request: Request) -> Any:
    source = _required(request, "source")
    destination = _required(request, "destination")
    fields = request.decode_body(INTENTION_SPEC, "Request decode failed")
    request.require("intention", destination, "write")
    if fields.get("Meta"):
        # NOTE: the wording of this rejection is not taken from Consul's source.
        raise rpc_error("Meta must not be specified")
    new_source = {"Name": source, "Action": fields.get("Action", ""), "Description": fields.get("Description", "")}
    if fields.get("Permissions"):
        new_source["Permissions"] = fields["Permissions"]
    store = request.store
    key = (entries.SERVICE_INTENTIONS, destination)
    existing = store.config_entries.get(key)
    sources = [item for item in (existing or {}).get("Sources", []) if item["Name"] != source]
    entry = {"Kind": entries.SERVICE_INTENTIONS, "Name": destination, "Sources": [*sources, new_source]}
    entries.validate_entry(entry)
    index = store.next_index()
    entry["CreateIndex"] = existing["CreateIndex"] if existing else index
    entry["ModifyIndex"] = index
    store.config_entries[key] = entry
    return True


def delete_exact(request: Request) -> Any:
    source = _required(request, "source")
    destination = _required(request, "destination")
    request.require("intention", destination, "write")
    store = request.store
    key = (entries.SERVICE_INTENTIONS, destination)
    entry = store.config_entries.get(key)
    if entry is None:
        # NOTE: deleting an intention that does not exist is assumed to succeed.
        return True
    remaining = [item for item in entry.get("Sources", []) if item["Name"] != source]
    if remaining:
        entry["Sources"] = remaining
        entry["ModifyIndex"] = store.next_index()
    else:
        del store.config_entries[key]
        store.next_index()
    return True


def list_intentions(request: Request) -> Any:
    views = request.readable(_all_intentions(request), "intention", lambda view: view["DestinationName"])
    return apply_filter(views, request.param("filter"))


def register_routes(router: Router) -> None:
    router.add(r"/v1/connect/intentions/check", {"GET": check})
    router.add(r"/v1/connect/intentions/exact", {"GET": read_exact, "PUT": upsert_exact, "DELETE": delete_exact})
    router.add(r"/v1/connect/intentions", {"GET": list_intentions})
