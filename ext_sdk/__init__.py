"""kithost extension SDK for Python.

Write an extension as a plain file that creates one :class:`Extension` and
registers handlers on it; kithost runs it in its own process with
``python -m ext_sdk run path/to/ext.py``. See the README and
``docs/PROTOCOL.md``. This package never imports ``host``.

The names below are imported on first use (PEP 562 ``__getattr__``): an
extension process pays only for what its file imports (``from ext_sdk import
Extension`` does not load the typed results), and the host can import
``ext_sdk.wire`` without the handler-side modules.
"""

from __future__ import annotations

import importlib as _importlib

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Any as _Any

    from .context import Context, EventData, HostCallError
    from .extension import Extension
    from .results import (
        Block,
        Cancel,
        Continue,
        Handled,
        Inject,
        PatchResult,
        ReplaceMessages,
        Summary,
        Transform,
    )
del TYPE_CHECKING  # not a public name

__version__ = "0.1.0"

#: Public name → the submodule that defines it (the one place the lazy imports are listed).
_LAZY: dict[str, str] = {
    "Context": "context",
    "EventData": "context",
    "HostCallError": "context",
    "Extension": "extension",
    **dict.fromkeys(("Block", "Cancel", "Continue", "Handled", "Inject", "PatchResult", "ReplaceMessages",
                     "Summary", "Transform"), "results"),
}

__all__ = [
    "Block",
    "Cancel",
    "Context",
    "Continue",
    "EventData",
    "Extension",
    "Handled",
    "HostCallError",
    "Inject",
    "PatchResult",
    "ReplaceMessages",
    "Summary",
    "Transform",
    "__version__",
]


def __getattr__(name: str) -> _Any:
    """Import a public name's module on first use (PEP 562) and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ext_sdk' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
