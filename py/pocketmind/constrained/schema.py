"""The JSON-schema subset that constrained generation enforces, compiled into plain nodes.

Supported: type object (properties, required, additionalProperties false, which is also the default: only the
listed properties are ever written), string (enum, maxLength), number, integer, boolean, null, array (items,
maxItems), and enum (any JSON values, or values of the given type). Strings without maxLength are capped at
STRING_CAP characters and numbers at NUMBER_CAP, so that generation always ends; arrays without maxItems end by
the token budget (generate_json closes every value in time). Anything else (pattern, oneOf, $ref, format,
minimum, a list of types, additionalProperties true, ...) is refused up front: a generation that silently ignored
a keyword could produce output that does not validate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

STRING_CAP = 256  # characters of a string without maxLength: generation must always end
NUMBER_CAP = 24  # characters of any number (sign, digits, point, exponent)
EXPONENT_DIGITS = 2  # at most e±99, so no number overflows to inf

# the keywords each type understands; "title", "description" and "$schema" are notes and accepted anywhere
NOTES = {"title", "description", "$schema", "$comment", "examples", "default"}
KEYWORDS = {
    "object": {"type", "properties", "required", "additionalProperties"},
    "array": {"type", "items", "maxItems"},
    "string": {"type", "enum", "maxLength"},
    "number": {"type", "enum"},
    "integer": {"type", "enum"},
    "boolean": {"type", "enum"},
    "null": {"type", "enum"},
    None: {"enum"},
}


class SchemaError(ValueError):
    """A schema outside the supported subset; the message names the keyword and where it is."""


@dataclass(eq=False)
class Node:
    kind: str  # object, array, string, number, integer, literal
    min_bytes: int = 0  # the shortest value's length in bytes
    # object
    names: tuple[bytes, ...] = ()  # each property's key as JSON text, quotes included
    values: tuple[Node, ...] = ()
    required: int = 0  # bitmask over names
    # array
    items: Node | None = None
    max_items: int = 0
    # string
    max_length: int = 0
    # literal: the allowed values as compact JSON text (boolean, null, enum)
    options: tuple[bytes, ...] = ()
    entry: tuple[int, ...] = field(default=())  # object: bytes of '"key":' plus its shortest value


def dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def compile_schema(schema, path: str = "$") -> Node:
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: a schema must be a JSON object, got {type(schema).__name__}")
    kind = schema.get("type")
    if isinstance(kind, list):
        raise SchemaError(f"{path}: keyword 'type' with a list of types is not supported")
    if kind not in KEYWORDS:
        raise SchemaError(f"{path}: unknown type {kind!r}")
    known = KEYWORDS[kind] if kind is not None or "enum" in schema else set().union(*KEYWORDS.values())
    for key in schema:  # unsupported keywords first: they say most about what the schema wanted
        if key not in known and key not in NOTES:
            raise SchemaError(f"{path}: keyword {key!r} is not supported" + (f" for type {kind!r}" if kind else ""))
    if kind is None and "enum" not in schema:
        raise SchemaError(f"{path}: needs a 'type' (or an 'enum')")
    if "enum" in schema:
        return _enum(schema, kind, path)
    if kind == "object":
        return _object(schema, path)
    if kind == "array":
        return _array(schema, path)
    if kind == "string":
        limit = _count(schema, "maxLength", path, STRING_CAP)
        return Node("string", min_bytes=2, max_length=limit)
    if kind in ("number", "integer"):
        return Node(kind, min_bytes=1)
    return _literal([True, False] if kind == "boolean" else [None])


def _count(schema, key: str, path: str, default: int) -> int:
    value = schema.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"{path}.{key}: must be a non-negative integer, got {value!r}")
    return value


def _literal(values) -> Node:
    options = tuple(dict.fromkeys(dumps(v) for v in values))
    return Node("literal", min_bytes=min(len(o) for o in options), options=options)


def _enum(schema, kind, path: str) -> Node:
    values = schema["enum"]
    if not isinstance(values, list) or not values:
        raise SchemaError(f"{path}.enum: must be a non-empty list")
    limit = _count(schema, "maxLength", path, STRING_CAP)
    for v in values:
        if kind is not None and not _is_type(v, kind) or kind == "string" and len(v) > limit:
            raise SchemaError(f"{path}.enum: {v!r} is not a {kind}" + (f" of at most {limit} characters"
                                                                       if kind == "string" else ""))
        try:
            dumps(v)
        except (TypeError, ValueError):
            raise SchemaError(f"{path}.enum: {v!r} is not a JSON value") from None
    return _literal(values)


def _is_type(value, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _object(schema, path: str) -> Node:
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError(f"{path}.properties: must be an object")
    if schema.get("additionalProperties", False) is not False:
        raise SchemaError(f"{path}: keyword 'additionalProperties' is only supported as false")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{path}.required: must be a list of property names")
    names = list(props)
    for r in required:
        if r not in props:
            raise SchemaError(f"{path}.required: {r!r} is not among the properties")
    values = tuple(compile_schema(props[n], f"{path}.properties.{n}") for n in names)
    keys = tuple(dumps(n) for n in names)
    entry = tuple(len(k) + 1 + v.min_bytes for k, v in zip(keys, values))
    mask = sum(1 << names.index(r) for r in set(required))
    need = [entry[i] for i in range(len(names)) if mask >> i & 1]
    return Node("object", min_bytes=2 + sum(need) + max(len(need) - 1, 0), names=keys, values=values,
                required=mask, entry=entry)


def _array(schema, path: str) -> Node:
    if "items" not in schema:
        raise SchemaError(f"{path}: an array needs 'items'")
    items = compile_schema(schema["items"], f"{path}.items")
    limit = _count(schema, "maxItems", path, 1 << 30)
    return Node("array", min_bytes=2, items=items, max_items=limit)
