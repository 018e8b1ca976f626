"""A tiny schema language for the wire: safe types, fast checks, JSON Schema.

Everything that crosses the process boundary is *safe data* (kit's
"safe-type bridge"): ``str``, ``int``, ``float``, ``bool``, ``None``, lists
and string-keyed maps of those. This module describes shapes of such data
once, and derives from that one description:

* a checker (``Type.check(value)``) used by the host on every inbound message
  and by the SDK on every result before it is sent; it raises
  :class:`SchemaError` naming the path of the first bad value;
* a JSON Schema (``Type.json_schema()``) for authors in other languages
  (``docs/protocol.schema.json`` is generated from it and kept in sync by a
  test).

It is stdlib-only on purpose: the extension process imports it, and importing
pydantic there would cost ~90 ms of the 150 ms spawn-to-ready budget. For the
same reason :class:`Field` is a plain class with ``__slots__``, not a
dataclass: ``import dataclasses`` imports ``inspect`` (with ``dis``, ``ast``,
``tokenize``), ~12 ms (``-X importtime``) and 1.2 MiB of memory in every
extension process (issue 10), and no SDK module on the runtime's import path
uses it.

Rules every checker follows:

* ``Float`` accepts ints (a JavaScript ``2.0`` arrives as msgpack int ``2``);
  ``Int`` rejects bools and floats.
* ``Struct`` rejects unknown keys (a typo such as ``{"blok": true}`` is an
  error, not a silent no-op) and missing required keys; an optional field may
  be absent or ``None``.
* ``Any`` accepts any safe value up to :data:`MAX_DEPTH` levels of nesting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Any as _Any
    from typing import Final

__all__ = [
    "MAX_DEPTH",
    "Any",
    "Bool",
    "Enum",
    "Field",
    "Float",
    "Int",
    "List",
    "Map",
    "Nil",
    "Nullable",
    "Schema",
    "SchemaError",
    "Str",
    "Struct",
    "Type",
    "check_safe",
]

#: Deepest nesting of lists/maps accepted in any free-form (``Any``) value.
MAX_DEPTH: Final = 32


class SchemaError(ValueError):
    """A value does not match its schema. ``path`` names the offending value."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or '<root>'}: {problem}")
        #: Dotted path of the offending value, e.g. ``result.messages[2].role``.
        self.path = path
        #: What is wrong with it, in words.
        self.problem = problem


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "map"}.get(
        type(value), type(value).__name__
    )


def check_safe(value: object, path: str = "", depth: int = 0) -> None:
    """Raise :class:`SchemaError` unless ``value`` is safe data within :data:`MAX_DEPTH`."""
    if value is None or type(value) in (str, int, float, bool):
        return
    if depth >= MAX_DEPTH:
        raise SchemaError(path, f"nested deeper than {MAX_DEPTH} levels")
    if type(value) is list:
        for i, item in enumerate(value):  # type: ignore[var-annotated]
            check_safe(item, f"{path}[{i}]", depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():  # type: ignore[var-annotated]
            if type(key) is not str:
                raise SchemaError(path, f"map key {key!r} is not a string")
            check_safe(item, f"{path}.{key}" if path else key, depth + 1)
        return
    raise SchemaError(path, f"{_type_name(value)} is not a safe type")


class Type:
    """Base of every schema type."""

    #: One-line description used in generated docs and JSON Schema.
    doc: str = ""

    def check(self, value: object, path: str = "") -> None:
        """Raise :class:`SchemaError` if ``value`` does not match."""
        raise NotImplementedError

    def json_schema(self) -> dict[str, _Any]:
        """This type as a JSON Schema (draft 2020-12) fragment."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human name, e.g. ``list[string]``."""
        raise NotImplementedError


class _Scalar(Type):
    _py: tuple[type, ...] = ()
    _json: str = ""
    _name: str = ""

    def check(self, value: object, path: str = "") -> None:
        if type(value) not in self._py:
            raise SchemaError(path, f"expected {self._name}, got {_type_name(value)}")

    def json_schema(self) -> dict[str, _Any]:
        return {"type": self._json}

    def describe(self) -> str:
        return self._name


class _Str(_Scalar):
    _py, _json, _name = (str,), "string", "string"


class _Int(_Scalar):
    _py, _json, _name = (int,), "integer", "int"


class _Float(_Scalar):
    _py, _json, _name = (int, float), "number", "float"


class _Bool(_Scalar):
    _py, _json, _name = (bool,), "boolean", "bool"


class _AnySafe(Type):
    def check(self, value: object, path: str = "") -> None:
        check_safe(value, path)

    def json_schema(self) -> dict[str, _Any]:
        return {}

    def describe(self) -> str:
        return "any"


#: A string.
Str: Final[Type] = _Str()
#: An integer (not a bool, not a float).
Int: Final[Type] = _Int()
#: A number; ints are accepted.
Float: Final[Type] = _Float()
#: A boolean.
Bool: Final[Type] = _Bool()
#: Any safe value (see :func:`check_safe`).
Any: Final[Type] = _AnySafe()


class Enum(Type):
    """One of a fixed set of strings."""

    def __init__(self, *values: str) -> None:
        plain = tuple(str(v) for v in values)  # a StrEnum's members become the plain strings on the wire
        self.values: Final = frozenset(plain)
        self._ordered: Final = plain

    def check(self, value: object, path: str = "") -> None:
        if type(value) is not str or value not in self.values:
            raise SchemaError(path, f"expected one of {', '.join(self._ordered)}; got {value!r}")

    def json_schema(self) -> dict[str, _Any]:
        return {"type": "string", "enum": list(self._ordered)}

    def describe(self) -> str:
        return "|".join(repr(v) for v in self._ordered)


class List(Type):
    """A list whose items all match ``item``."""

    def __init__(self, item: Type, max_items: int | None = None) -> None:
        self.item: Final = item
        self.max_items: Final = max_items

    def check(self, value: object, path: str = "") -> None:
        if type(value) is not list:
            raise SchemaError(path, f"expected list, got {_type_name(value)}")
        if self.max_items is not None and len(value) > self.max_items:
            raise SchemaError(path, f"more than {self.max_items} items")
        check = self.item.check
        for i, item in enumerate(value):  # type: ignore[var-annotated]
            check(item, f"{path}[{i}]")

    def json_schema(self) -> dict[str, _Any]:
        out: dict[str, _Any] = {"type": "array", "items": self.item.json_schema()}
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        return out

    def describe(self) -> str:
        return f"list[{self.item.describe()}]"


class Nil(Type):
    """No value: ``null`` (a host call that returns nothing)."""

    def check(self, value: object, path: str = "") -> None:
        if value is not None:
            raise SchemaError(path, f"expected null, got {_type_name(value)}")

    def json_schema(self) -> dict[str, _Any]:
        return {"type": "null"}

    def describe(self) -> str:
        return "nil"


class Nullable(Type):
    """``inner`` or ``null`` (a host call's result that may be absent)."""

    def __init__(self, inner: Type) -> None:
        self.inner: Final = inner
        self.doc = inner.doc

    def check(self, value: object, path: str = "") -> None:
        if value is not None:
            self.inner.check(value, path)

    def json_schema(self) -> dict[str, _Any]:
        return {"anyOf": [self.inner.json_schema(), {"type": "null"}]}

    def describe(self) -> str:
        return f"{self.inner.describe()} | null"


class Map(Type):
    """A map with string keys and values matching ``value``."""

    def __init__(self, value: Type) -> None:
        self.value: Final = value

    def check(self, value: object, path: str = "") -> None:
        if type(value) is not dict:
            raise SchemaError(path, f"expected map, got {_type_name(value)}")
        check = self.value.check
        for key, item in value.items():  # type: ignore[var-annotated]
            if type(key) is not str:
                raise SchemaError(path, f"map key {key!r} is not a string")
            check(item, f"{path}.{key}" if path else key)

    def json_schema(self) -> dict[str, _Any]:
        return {"type": "object", "additionalProperties": self.value.json_schema()}

    def describe(self) -> str:
        return f"map[string, {self.value.describe()}]"


class Field:
    """One field of a :class:`Struct`. Read-only (``Final``: mypy refuses an assignment)."""

    __slots__ = ("doc", "required", "type")

    #: The field's type.
    type: Final[Type]
    #: What the field means, in one sentence.
    doc: Final[str]
    #: Whether the key must be present (an optional field may also be ``None``).
    required: Final[bool]

    def __init__(self, type: Type, doc: str = "", required: bool = True) -> None:  # noqa: A002 - the field's name
        self.type = type
        self.doc = doc
        self.required = required


class Struct(Type):
    """A map with a fixed set of named fields; unknown keys are rejected."""

    def __init__(self, doc: str = "", /, **fields: Field | Type) -> None:
        self.doc = doc
        # one pass: ~130 structs are built when the SDK is imported, in every extension process
        named: dict[str, Field] = {}
        checks: dict[str, Callable[[object, str], None]] = {}
        optional: list[str] = []
        for name, f in fields.items():
            field = f if isinstance(f, Field) else Field(f)
            named[name] = field
            checks[name] = field.type.check
            if not field.required:
                optional.append(name)
        self.fields: Final = named
        self._checks: Final = checks
        self._optional: Final = frozenset(optional)
        self._required: Final = frozenset(named).difference(optional)

    def check(self, value: object, path: str = "") -> None:
        if type(value) is not dict:
            raise SchemaError(path, f"expected map, got {_type_name(value)}")
        checks = self._checks
        optional = self._optional
        for key, item in value.items():  # type: ignore[var-annotated]
            check = checks.get(key)
            if check is None:
                known = ", ".join(sorted(self.fields)) or "none"
                raise SchemaError(path, f"unknown field {key!r} (known: {known})")
            if item is None and key in optional:
                continue
            check(item, f"{path}.{key}" if path else key)
        if not self._required.issubset(value.keys()):  # type: ignore[union-attr]
            missing = sorted(self._required.difference(value.keys()))  # type: ignore[union-attr]
            raise SchemaError(path, f"missing field {missing[0]!r}")

    def json_schema(self) -> dict[str, _Any]:
        props: dict[str, _Any] = {}
        for name, f in self.fields.items():
            sub = f.type.json_schema()
            if not f.required:
                sub = {"anyOf": [sub, {"type": "null"}]} if sub else {}
            if f.doc:
                sub = {**sub, "description": f.doc}
            props[name] = sub
        out: dict[str, _Any] = {
            "type": "object",
            "properties": props,
            "required": [n for n, f in self.fields.items() if f.required],
            "additionalProperties": False,
        }
        if self.doc:
            out["description"] = self.doc
        return out

    def describe(self) -> str:
        return "{" + ", ".join(self.fields) + "}"

    def with_fields(self, doc: str | None = None, **fields: Field | Type) -> Struct:
        """A copy of this struct with ``fields`` added (or replaced)."""
        merged: dict[str, Field | Type] = dict(self.fields)
        merged.update(fields)
        return Struct(self.doc if doc is None else doc, **merged)


#: A named, documented top-level shape (a message kind or event payload).
Schema = Mapping[str, Type]
