"""A validator for the subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that `openapi.yaml` uses.

Why not the `jsonschema` package: the protocol document uses a dozen keywords, and checking them takes less code
than a dependency does to install. Supported: `$ref` (local, `#/...`), `type` (one or a list), `enum`, `const`,
`properties`, `required`, `additionalProperties` (boolean or schema), `items`, `minimum`, `maximum`,
`minLength`, `maxLength`, `pattern`, `format: date-time`. Any other keyword (except annotations such as
`description` and `default`) raises `UnsupportedKeyword`, so the document cannot silently outgrow the validator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

ANNOTATIONS = frozenset({"description", "default", "title", "examples", "deprecated"})
CHECKED = frozenset({"$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
                     "minimum", "maximum", "minLength", "maxLength", "pattern", "format"})


class UnsupportedKeyword(ValueError):
    pass


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    kinds: dict[str, type | tuple[type, ...]] = {"string": str, "boolean": bool, "object": dict, "array": list,
                                                 "null": type(None)}
    if name not in kinds:
        raise UnsupportedKeyword(f"type {name!r}")
    return isinstance(value, kinds[name])


def _resolve(ref: str, document: Mapping[str, Any]) -> Any:
    if not ref.startswith("#/"):
        raise UnsupportedKeyword(f"non-local $ref {ref!r}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validate(value: Any, schema: Mapping[str, Any], document: Mapping[str, Any], where: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (resolving `$ref` in `document`), as `path: problem` lines."""
    unknown = set(schema) - CHECKED - ANNOTATIONS
    if unknown:
        raise UnsupportedKeyword(f"{sorted(unknown)} at {where}")
    if "$ref" in schema:
        found = validate(value, _resolve(schema["$ref"], document), document, where)
        rest = {key: val for key, val in schema.items() if key != "$ref"}
        return found + validate(value, rest, document, where) if set(rest) - ANNOTATIONS else found
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_type_ok(value, name) for name in names):
            return [f"{where}: {value!r} is not of type {'/'.join(names)}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if isinstance(value, str):
        errors += _string(value, schema, where)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above {schema['maximum']}")
    if isinstance(value, dict):
        errors += _object(value, schema, document, where)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += validate(item, schema["items"], document, f"{where}[{index}]")
    return errors


def _string(value: str, schema: Mapping[str, Any], where: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{where}: {value!r} is shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{where}: {value!r} is longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if schema.get("format") == "date-time":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None or "T" not in value:
            errors.append(f"{where}: {value!r} is not an RFC 3339 date-time")
    return errors


def _object(value: dict[str, Any], schema: Mapping[str, Any], document: Mapping[str, Any], where: str) \
        -> list[str]:
    errors = [f"{where}: missing {name!r}" for name in schema.get("required", ()) if name not in value]
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra: bool | Mapping[str, Any] = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            errors += validate(item, properties[name], document, f"{where}.{name}")
        elif extra is False:
            errors.append(f"{where}: unexpected property {name!r}")
        elif isinstance(extra, Mapping):
            errors += validate(item, extra, document, f"{where}.{name}")
    return errors
