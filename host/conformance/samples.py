"""Sample payloads and arguments, derived from the schemas — never hand-listed per event.

Contract:

* :func:`sample_payload` returns, for any event :func:`ext_sdk.events.spec_for`
  knows (agent events and ``custom:<name>``), a payload that matches the
  event's payload schema. Required fields are always there; optional ones
  carry a sample value (``optional="value"``), are null (``"null"``: every
  key present, as the host sends payloads) or are left out (``"absent"``,
  which the protocol says means the same as null).
* Values follow the field's type: strings name their field (a string whose
  field is documented as a "JSON string" is ``"{}"``), ints are 1, floats
  0.5, bools false, enums their first value, lists one item, maps and free
  values a small map. A ``custom:<name>`` payload names its event and comes
  from ``"host"``.
* :func:`sample_arguments` returns arguments for a tool from its JSON Schema
  ``parameters`` (required properties only; ``const``, ``default``, ``enum``
  and the first ``anyOf``/``oneOf`` branch are honoured).
"""

from __future__ import annotations

from typing import Any, Literal

from ext_sdk.events import CUSTOM_PREFIX, is_custom, spec_for
from ext_sdk.schema import Any as AnyValue
from ext_sdk.schema import Bool, Enum, Field, Float, Int, List, Map, Str, Struct, Type

__all__ = ["Optional", "has_optional_fields", "sample_arguments", "sample_payload"]

#: What optional fields carry in a sample (``absent``: the key is left out).
Optional = Literal["value", "null", "absent"]

_MAX_DEPTH = 8


def _value(t: Type, name: str, doc: str, optional: Optional, depth: int) -> object:
    if isinstance(t, Struct):
        return _struct(t, optional, depth + 1)
    if isinstance(t, Enum):
        return t.json_schema()["enum"][0]
    if isinstance(t, List):
        return [] if depth >= _MAX_DEPTH else [_value(t.item, name, doc, optional, depth + 1)]
    if isinstance(t, Map):
        return {"sample": _value(t.value, "sample", "", optional, depth + 1)} if depth < _MAX_DEPTH else {}
    if t is Str:
        return "{}" if "JSON string" in doc else f"sample {name}"
    if t is Int:
        return 1
    if t is Float:
        return 0.5
    if t is Bool:
        return False
    if t is AnyValue:
        return {"sample": "value"}
    raise TypeError(f"no sample for schema type {t.describe()} (field {name!r})")


def _struct(struct: Struct, optional: Optional, depth: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, field in struct.fields.items():
        if not field.required and optional == "absent":
            continue
        out[name] = _field(field, name, optional, depth)
    return out


def _field(field: Field, name: str, optional: Optional, depth: int) -> object:
    if not field.required and optional == "null":
        return None
    return _value(field.type, name, field.doc, optional, depth)


def has_optional_fields(event: str) -> bool:
    """Whether ``event``'s payload has an optional field at any level."""
    spec = spec_for(event)
    return spec is not None and sample_payload(event, "absent") != sample_payload(event, "null")


def sample_payload(event: str, optional: Optional = "value") -> dict[str, Any]:
    """A payload of ``event`` that matches its schema (see the module doc); ``KeyError`` if unknown."""
    spec = spec_for(event)
    if spec is None:
        raise KeyError(f"unknown event {event!r}")
    payload = _struct(spec.payload, optional, 0)
    if is_custom(event):
        payload["name"] = event.removeprefix(CUSTOM_PREFIX)
        payload["source"] = "host"
    spec.payload.check(payload, "payload")  # a sample that does not match is a bug of this module
    return payload


def sample_arguments(schema: object, depth: int = 0) -> Any:
    """A value matching the JSON Schema ``schema`` (best effort; see the module doc)."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return sample_arguments((non_null or branches)[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        props: dict[str, Any] = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
        return {n: sample_arguments(props.get(n, {}), depth + 1) for n in names}
    if kind == "array":
        low = schema.get("minItems")
        count = low if isinstance(low, int) and 0 < low <= 3 else 0
        return [sample_arguments(schema.get("items", {}), depth + 1) for _ in range(count)]
    if kind == "string":
        low = schema.get("minLength")
        text = "sample"
        return text * (1 + int(low) // len(text)) if isinstance(low, int) and low > len(text) else text
    if kind in ("integer", "number"):
        low = schema.get("minimum")
        value = low if isinstance(low, int | float) and not isinstance(low, bool) else 1
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}
