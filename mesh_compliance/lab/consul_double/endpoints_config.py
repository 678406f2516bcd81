"""Endpoints under /v1/config."""

from __future__ import annotations

from typing import Any

from . import config_entries as entries
from .decoding import DecodeError, parse_json
from .errors import ApiError
from .request import Request
from .routing import Router


def _cas_index(request: Request) -> int | None:
    raw = request.param("cas")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(400, f"Failed to parse cas value {raw!r}: expected an unsigned integer")
    return value


def apply(request: Request) -> Any:
    try:
        body = parse_json(request.body)
    except DecodeError as exc:
        raise ApiError(400, f"Request decoding failed: {exc}") from None
    entry = entries.decode_entry(body)
    cas = _cas_index(request)
    if request.settings.acl_enabled:
        request.token()  # an unknown secret is 403 "ACL not found" before validation
    entries.validate_entry(entry)
    entries.require_write(request, entry["Kind"], entry["Name"])
    store = request.store
    key = (entry["Kind"], entry["Name"])
    existing = store.config_entries.get(key)
    if cas is not None and not _cas_matches(existing, cas):
        return False
    index = store.next_index()
    entry["CreateIndex"] = existing["CreateIndex"] if existing else index
    entry["ModifyIndex"] = index
    store.config_entries[key] = entry
    return True


def _cas_matches(existing: dict[str, Any] | None, cas: int) -> bool:
    if cas == 0:
        return existing is None
    return existing is not None and existing["ModifyIndex"] == cas


def read(request: Request, kind: str, name: str) -> Any:
    entries.check_kind(kind)
    if not entries.can_read(request, kind, name):
        resource = "intention" if kind == entries.SERVICE_INTENTIONS else "service"
        raise request.permission_denied(resource, name, "read")
    entry = request.store.config_entries.get((kind, name))
    if entry is None:
        raise ApiError(404, f'Config entry not found for "{kind}" / "{name}"')
    return entries.render_entry(entry)


def list_kind(request: Request, kind: str) -> Any:
    entries.check_kind(kind)
    found = [entry for (entry_kind, _), entry in sorted(request.store.config_entries.items()) if entry_kind == kind]
    readable = request.filter_allowed(found, lambda entry: entries.can_read(request, kind, entry["Name"]))
    return [entries.render_entry(entry) for entry in readable]


def delete(request: Request, kind: str, name: str) -> Any:
    entries.check_kind(kind)
    cas = _cas_index(request)
    entries.require_write(request, kind, name)
    store = request.store
    existing = store.config_entries.get((kind, name))
    if cas is not None:
        if existing is None or existing["ModifyIndex"] != cas:
            return False
    if existing is not None:
        del store.config_entries[(kind, name)]
        store.next_index()
    # NOTE: deleting an entry that does not exist is assumed to succeed, as the reference suggests.
    return True if cas is not None else {}


def register_routes(router: Router) -> None:
    router.add(r"/v1/config", {"PUT": apply})
    router.add(r"/v1/config/(?P<kind>[^/]+)/(?P<name>[^/]+)", {"GET": read, "DELETE": delete})
    router.add(r"/v1/config/(?P<kind>[^/]+)", {"GET": list_kind})
