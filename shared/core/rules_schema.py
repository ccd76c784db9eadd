"""The published JSON Schema of the rules document, and its findings in words that name rule and field.

`schema_problems` answers plain tuples so that `shared.core.rules` can turn them into its `RuleProblem`s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).with_name("rules.schema.json")


def rules_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of the rules document."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@cache
def _schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(rules_schema())


def _path_text(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _rule_label(document: Any, parts: Sequence[Any]) -> tuple[str | None, int | None]:
    if len(parts) < 2 or parts[0] != "rules" or not isinstance(parts[1], int):
        return None, None
    index = parts[1]
    try:
        name = document["rules"][index].get("name")
    except (AttributeError, KeyError, IndexError, TypeError):
        name = None
    return (name if isinstance(name, str) and name else None), index


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def schema_problems(document: Any) -> list[tuple[str, str, str | None, int | None]]:
    """Where `document` breaks the schema: (path, message, rule name, rule index) per finding."""
    problems: list[tuple[str, str, str | None, int | None]] = []
    errors = sorted(_schema_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        parts = list(error.absolute_path)
        for sub_parts, message in _describe_schema_error(error, parts):
            name, index = _rule_label(document, sub_parts)
            problems.append((_path_text(sub_parts), message, name, index))
    return problems


def _describe_schema_error(
    error: jsonschema.ValidationError, parts: list[Any]
) -> list[tuple[list[Any], str]]:
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        return [
            (
                [*parts, key],
                f"unknown key {key!r} (allowed: {', '.join(sorted(k for k in allowed if k != '$schema'))})",
            )
            for key in instance
            if key not in allowed
        ]
    if kind == "required" and isinstance(instance, Mapping):
        return [([*parts, key], "is required") for key in expected if key not in instance]
    if kind == "type":
        actual = _JSON_TYPES.get(type(instance), type(instance).__name__)
        return [(parts, f"must be of type {expected}, got {actual}")]
    if kind == "pattern" and parts and parts[-1] == "name":
        return [(parts, f"{instance!r} is not a valid rule name (1-64 of A-Z a-z 0-9 _ . -)")]
    if kind == "enum":
        return [(parts, f"{instance!r} is not one of {', '.join(map(repr, expected))}")]
    if kind == "const":
        return [(parts, f"must be {expected!r}, got {instance!r}")]
    if kind == "minItems":
        return [(parts, f"must have at least {expected} item(s)")]
    if kind == "uniqueItems":
        return [(parts, "has duplicate items")]
    return [(parts, error.message)]
