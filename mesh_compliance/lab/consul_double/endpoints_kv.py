"""Endpoints under /v1/kv."""

from __future__ import annotations

import base64
from typing import Any

from .errors import ApiError, rpc_error
from .request import Request, Response
from .routing import Router

# kv_max_value_size default: 512 KiB.
MAX_VALUE_SIZE = 512 * 1024
_SIZE_DOC_URL = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"


def _not_found() -> Response:
    return Response(status=404, raw=b"", content_type="text/plain")


def _render(entry: dict[str, Any]) -> dict[str, Any]:
    body = {
        "LockIndex": entry["LockIndex"],
        "Key": entry["Key"],
        "Flags": entry["Flags"],
        # An empty value is sent as null, as Consul sends a nil []byte.
        "Value": base64.b64encode(entry["Value"]).decode() if entry["Value"] else None,
        "CreateIndex": entry["CreateIndex"],
        "ModifyIndex": entry["ModifyIndex"],
    }
    if entry.get("Session"):
        body["Session"] = entry["Session"]
    return body


def get(request: Request, key: str) -> Any:
    if request.has_param("keys"):
        return _list_keys(request, key)
    if request.has_param("recurse"):
        return _get_tree(request, key)
    if not key:
        raise ApiError(400, "Missing key name")
    request.require("key", key, "read")
    entry = request.store.kv.get(key)
    if entry is None:
        return _not_found()
    if request.has_param("raw"):
        return Response(raw=entry["Value"], content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})
    return [_render(entry)]


def _get_tree(request: Request, prefix: str) -> Any:
    found = [entry for name, entry in sorted(request.store.kv.items()) if name.startswith(prefix)]
    readable = request.readable(found, "key", lambda entry: entry["Key"])
    if not readable:
        return _not_found()
    return [_render(entry) for entry in readable]


def _list_keys(request: Request, prefix: str) -> Any:
    names = [name for name in sorted(request.store.kv) if name.startswith(prefix)]
    names = request.readable(names, "key", lambda name: name)
    separator = request.param("separator") or ""
    keys: list[str] = []
    for name in names:
        if separator:
            position = name.find(separator, len(prefix))
            if position >= 0:
                name = name[: position + len(separator)]
        if name not in keys:
            keys.append(name)
    if not keys:
        return _not_found()
    return keys


def _conflicting_flags(request: Request, names: tuple[str, ...]) -> None:
    if sum(1 for name in names if request.has_param(name)) > 1:
        raise ApiError(400, f"Conflicting flags: {request.raw_query}")


def _unsigned_param(request: Request, name: str) -> int | None:
    raw = request.param(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(400, f"Invalid {name} value {raw!r}: expected an unsigned integer")
    return value


def put(request: Request, key: str) -> Any:
    if not key:
        raise ApiError(400, "Missing key name")
    _conflicting_flags(request, ("cas", "acquire", "release"))
    flags = _unsigned_param(request, "flags") or 0
    cas = _unsigned_param(request, "cas")
    if len(request.body) > MAX_VALUE_SIZE:
        raise ApiError(
            413,
            f"Request body({len(request.body)} bytes) too large, max size: {MAX_VALUE_SIZE} bytes. See {_SIZE_DOC_URL}.",
        )
    request.require("key", key, "write")
    session = request.param("acquire") or request.param("release")
    if session is not None:
        # NOTE: the double has no sessions, so every acquire or release names an invalid session.
        raise rpc_error(f'Invalid session "{session}"')
    store = request.store
    existing = store.kv.get(key)
    if cas is not None and not _cas_matches(existing, cas):
        return False
    index = store.next_index()
    store.kv[key] = {
        "Key": key,
        "Value": request.body,
        "Flags": flags,
        "LockIndex": 0,
        "CreateIndex": existing["CreateIndex"] if existing else index,
        "ModifyIndex": index,
    }
    return True


def _cas_matches(existing: dict[str, Any] | None, cas: int) -> bool:
    if cas == 0:
        return existing is None
    return existing is not None and existing["ModifyIndex"] == cas


def delete(request: Request, key: str) -> Any:
    _conflicting_flags(request, ("recurse", "cas"))
    store = request.store
    if request.has_param("recurse"):
        if not request.is_allowed("key", key, "write-prefix"):
            raise request.permission_denied("key", key, "write")
        for name in [name for name in store.kv if name.startswith(key)]:
            del store.kv[name]
        store.next_index()
        return True
    if not key:
        raise ApiError(400, "Missing key name")
    request.require("key", key, "write")
    cas = _unsigned_param(request, "cas")
    if cas:
        existing = store.kv.get(key)
        if existing is None or existing["ModifyIndex"] != cas:
            return False
    if store.kv.pop(key, None) is not None:
        store.next_index()
    return True


def register_routes(router: Router) -> None:
    router.add(r"/v1/kv/(?P<key>.*)", {"GET": get, "PUT": put, "DELETE": delete})
