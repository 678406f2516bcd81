"""Validate results documents against docs/results-schema.json."""

from __future__ import annotations

import json

import jsonschema

from tests.suite import CHECKOUT

SCHEMA_PATH = CHECKOUT / "docs" / "results-schema.json"


def validate_results(document: dict) -> None:
    """Raise jsonschema.ValidationError when the document breaks the published schema."""
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    validator.validate(document)
