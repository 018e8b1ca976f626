"""``Frozen``: the value semantics of a frozen dataclass, without ``import dataclasses``.

The SDK's typed results (:mod:`ext_sdk.results`) and the sandbox boot's plan
(:mod:`ext_sdk.sandbox.plan`) are values: immutable, equal when of the same
class with equal fields, hashable, with a ``repr`` naming the fields. A
subclass lists its fields in :attr:`Frozen.FIELDS` (constructor order), keeps
them in ``__slots__`` and sets them in ``__init__`` with ``object.__setattr__``.
Written by hand because ``import dataclasses`` imports ``inspect`` (~10 ms and
~1.2 MiB of every extension process, issue 10). Stdlib only, no ``typing`` at
run time: the sandbox boot imports this before it confines the process.
"""

from __future__ import annotations

import types

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = ["Frozen", "fields_repr"]


def _plain(value: object) -> object:
    """A read-only mapping field as a hashable / printable value."""
    return tuple(value.items()) if isinstance(value, types.MappingProxyType) else value


class Frozen:
    """Immutable, compared and hashed by :attr:`FIELDS` (see the module doc)."""

    __slots__ = ()
    #: The field names, in constructor order.
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), *(_plain(v) for v in self._values())))

    def __repr__(self) -> str:
        return fields_repr(self, self.FIELDS)


def fields_repr(record: object, names: tuple[str, ...]) -> str:
    """``Name(field=value, ...)`` of ``record``'s ``names``, as a dataclass shows it (a read-only mapping as
    a ``dict``): :class:`Frozen`'s ``repr``, and that of the SDK's other plain records."""
    inner = ", ".join(f"{name}={dict(value) if isinstance(value, types.MappingProxyType) else value!r}"
                      for name, value in ((name, getattr(record, name)) for name in names))
    return f"{type(record).__name__}({inner})"
