"""Strict JSON body decoding that follows Go's encoding/json with DisallowUnknownFields.

Field names match case-insensitively, an exact match is preferred, and an unknown
field is an error. A JSON null leaves the field unset, as Go leaves the zero value.
Nested structs are checked too. Fields declared as ANY or as maps are not checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ENTERPRISE_FIELD_HINTS = {
    "namespace": " - Namespaces are a Consul Enterprise feature",
}


class DecodeError(ValueError):
    """A body that is not valid JSON or does not fit the expected struct."""


@dataclass(frozen=True)
class Scalar:
    """A JSON scalar field with its Go type name, used in type errors."""

    go_type: str
    python_types: tuple[type, ...]


STRING = Scalar("string", (str,))
BOOL = Scalar("bool", (bool,))
INT = Scalar("int", (int,))
FLOAT = Scalar("float64", (int, float))
ANY = Scalar("interface {}", (object,))
STRING_MAP = Scalar("map[string]string", (dict,))
OBJECT = Scalar("map[string]interface {}", (dict,))


@dataclass(frozen=True)
class ListOf:
    """A JSON array whose items all have the same type."""

    item: Any


@dataclass(frozen=True)
class Struct:
    """A Go struct: its type name and its fields by canonical name."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_json(body: bytes) -> Any:
    """Parse a request body as JSON, raising DecodeError with a Go-like message."""
    if not body.strip():
        raise DecodeError("EOF")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # NOTE: Go's encoding/json words syntax errors differently
        # ("invalid character 'x' looking for beginning of value").
        raise DecodeError(f"invalid JSON: {exc}") from None


def decode(body: bytes, spec: Any) -> Any:
    """Parse body and check it against spec, returning values under canonical names."""
    return convert(parse_json(body), spec, spec.name if isinstance(spec, Struct) else "")


def convert(value: Any, spec: Any, where: str) -> Any:
    """Check value against spec and return it with struct fields renamed to canonical names."""
    if isinstance(spec, Struct):
        return _convert_struct(value, spec)
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            raise _type_error(value, f"[]{_go_name(spec.item)}", where)
        return [convert(item, spec.item, where) for item in value]
    if spec is ANY:
        return value
    if spec is INT and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) and spec is not BOOL and spec is not ANY:
        raise _type_error(value, spec.go_type, where)
    if not isinstance(value, spec.python_types):
        raise _type_error(value, spec.go_type, where)
    return value


def _convert_struct(value: Any, spec: Struct) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _type_error(value, f"structs.{spec.name}", "")
    lowered = {name.lower(): name for name in spec.fields}
    result: dict[str, Any] = {}
    for key, item in value.items():
        canonical = key if key in spec.fields else lowered.get(key.lower())
        if canonical is None:
            hint = ENTERPRISE_FIELD_HINTS.get(key.lower(), "")
            raise DecodeError(f'json: unknown field "{key}"{hint}')
        if item is None:
            result.pop(canonical, None)
            continue
        result[canonical] = convert(item, spec.fields[canonical], f"{spec.name}.{canonical}")
    return result


def _go_name(spec: Any) -> str:
    if isinstance(spec, Struct):
        return f"structs.{spec.name}"
    if isinstance(spec, ListOf):
        return f"[]{_go_name(spec.item)}"
    return spec.go_type


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value: Any, go_type: str, where: str) -> DecodeError:
    if where:
        return DecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field {where} of type {go_type}"
        )
    return DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type {go_type}")
