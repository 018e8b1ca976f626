"""Checking a tool call's arguments against the tool's JSON Schema, with ``jsonschema``.

* :func:`check_schema` raises ``ValueError`` when a tool's ``parameters`` are not
  a valid JSON Schema (the registry then refuses the tool: the model would be
  offered a schema its provider may reject).
* :func:`check_args` returns ``None`` when the arguments fit, else the first
  problem in one sentence for the model, naming the argument (``a.b`` inside
  objects, ``a[0]`` inside arrays): ``missing required argument 'path'``,
  ``unknown argument 'lines' (known: path, offset, limit)``, ``argument 'path'
  must be string, got int``, ``argument 'offset' must be >= 1, got 0``,
  ``argument 'mode' must be one of ['r', 'w'], got 'x'``; any other keyword
  gives jsonschema's own message after the argument's name.

"First" is the order a reader would check in: an object's missing and
unknown arguments before its values, values in the order the model gave
them, and for one value its type before the rest.

The whole schema is enforced, with the draft it names in ``$schema``
(2020-12 when it names none), except ``format``; ``integer`` means a JSON
integer, as in Python (``1.0`` is a number, not an integer). One validator is
built per distinct schema and cached.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from jsonschema import Draft202012Validator, SchemaError, ValidationError
from jsonschema.validators import extend, validator_for

__all__ = ["check_args", "check_schema"]

#: Rank of a keyword's error among the errors of one value (lower is reported first).
_RANK: Final[Mapping[str, int]] = {"required": 0, "additionalProperties": 1, "type": 2}


def _is_integer(checker: object, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# jsonschema ships no type information: its validator classes and instances are ``Any`` here.


@functools.cache
def _strict_class(base: Any) -> Any:
    """The validator class ``base`` whose ``integer`` is a Python ``int`` (not a float with no fraction)."""
    return extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer))


def _validator_class(schema: Mapping[str, Any]) -> Any:
    """The (strict-integer) validator class of the draft ``schema`` names, 2020-12 by default."""
    return _strict_class(validator_for(schema, default=Draft202012Validator))


@functools.lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    """The validator of one schema, given as its JSON text (the cache key)."""
    schema = json.loads(schema_json)
    return _validator_class(schema)(schema)


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if ``schema`` is not a valid JSON Schema (of the draft it names)."""
    try:
        _validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None


def check_args(args: Any, schema: Mapping[str, Any]) -> str | None:
    """``None`` when ``args`` fits ``schema``, else the first problem in words (see the module doc)."""
    if not isinstance(args, dict):
        return f"arguments must be a JSON object, got {type(args).__name__}"
    validator = _validator(json.dumps(schema, default=str))  # key order kept: messages list properties as given
    errors = list(validator.iter_errors(args))
    if not errors:
        return None
    first = min(errors, key=lambda e: (_position(args, e.absolute_path), _RANK.get(str(e.validator), 3)))
    return _describe(first)


def _position(instance: Any, path: Sequence[str | int]) -> tuple[int, ...]:
    """Where ``path`` points, as indexes (an object's keys count in the order they were given)."""
    out: list[int] = []
    for step in path:
        if isinstance(instance, dict):
            out.append(list(instance).index(step) if step in instance else len(instance))
        elif isinstance(instance, list) and isinstance(step, int):
            out.append(step)
        else:
            break
        instance = instance[step]
    return tuple(out)


def _name(path: Sequence[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _describe(error: ValidationError) -> str:
    path = list(error.absolute_path)
    name, value, keyword, expected = _name(path), error.instance, str(error.validator), error.validator_value
    prefix = f"{name}." if name else ""
    if keyword == "required":
        missing = next(n for n in expected if n not in value)
        return f"missing required argument {prefix + str(missing)!r}"
    if keyword == "additionalProperties":
        known = list(error.schema.get("properties") or {})
        patterns = list(error.schema.get("patternProperties") or {})
        unknown = sorted(k for k in value if k not in known and not any(re.search(p, k) for p in patterns))
        return f"unknown argument {prefix + unknown[0]!r} (known: {', '.join(known) or 'none'})"
    if keyword == "type":
        kind = f"one of {expected}" if isinstance(expected, list) else expected
        return f"argument {name!r} must be {kind}, got {type(value).__name__}"
    if keyword == "enum":
        return f"argument {name!r} must be one of {expected}, got {value!r}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if keyword in bounds:
        return f"argument {name!r} must be {bounds[keyword]} {expected}, got {value}"
    return f"argument {name!r}: {error.message}" if name else f"arguments: {error.message}"
