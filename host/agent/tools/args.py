"""Checking a tool call's arguments against the tool's JSON Schema (the subset tools use).

Supported: ``type: object`` with ``properties``, ``required`` and
``additionalProperties: false``; property types ``string``, ``integer``,
``number``, ``boolean``, ``array`` (with ``items``), ``object``; ``enum``;
``minimum``/``maximum`` for numbers. Anything else in a schema is accepted
without checking, so an extension tool with a richer schema still runs (its
own process validates what it needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_args"]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, expected: str) -> bool:
    kinds = _TYPES.get(expected)
    if kinds is None:
        return True
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    return isinstance(value, kinds)


def _check(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    expected = schema.get("type")
    if isinstance(expected, str) and not _type_ok(value, expected):
        return f"argument {path!r} must be {expected}, got {type(value).__name__}"
    if isinstance(expected, list) and not any(_type_ok(value, t) for t in expected if isinstance(t, str)):
        return f"argument {path!r} must be one of {expected}, got {type(value).__name__}"
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return f"argument {path!r} must be one of {enum}, got {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int | float) and value < low:
            return f"argument {path!r} must be >= {low}, got {value}"
        if isinstance(high, int | float) and value > high:
            return f"argument {path!r} must be <= {high}, got {value}"
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        for i, item in enumerate(value):
            problem = _check(item, items, f"{path}[{i}]")
            if problem:
                return problem
    if isinstance(value, dict) and isinstance(schema.get("properties"), Mapping):
        return _check_object(value, schema, path)
    return None


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> str | None:
    props: Mapping[str, Any] = schema.get("properties") or {}
    prefix = f"{path}." if path else ""
    for name in schema.get("required") or ():
        if name not in value:
            return f"missing required argument {prefix}{name!r}"
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(props))
        if unknown:
            return f"unknown argument {prefix}{unknown[0]!r} (known: {', '.join(props) or 'none'})"
    for name, item in value.items():
        sub = props.get(name)
        if isinstance(sub, Mapping):
            problem = _check(item, sub, f"{prefix}{name}")
            if problem:
                return problem
    return None


def check_args(args: Any, schema: Mapping[str, Any]) -> str | None:
    """``None`` when ``args`` fits ``schema``, else the first problem in words."""
    if not isinstance(args, dict):
        return f"arguments must be a JSON object, got {type(args).__name__}"
    return _check_object(args, schema, "")
