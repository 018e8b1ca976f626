"""kithost extension SDK for Python.

Write an extension as a plain file that creates one :class:`Extension` and
registers handlers on it; kithost runs it in its own process with
``python -m ext_sdk run path/to/ext.py``. See the README and
``docs/PROTOCOL.md``. This package never imports ``host``.
"""

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

__version__ = "0.1.0"

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
