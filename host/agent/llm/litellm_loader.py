"""The one place litellm is imported: lazily (it takes ~3 s), once, with offline-safe defaults.

:func:`litellm_module` applies :data:`OFFLINE_ENV` to the environment (never
overriding what the user set), imports litellm on first use and sets
``litellm.suppress_debug_info`` (otherwise provider-resolution errors print a
banner to stdout). Nothing in kithost imports litellm at module level: the
extension SDK never, the host only through this function, so ``kithost
--help`` and the extension views never pay for it.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["OFFLINE_ENV", "litellm_module"]

#: Environment defaults applied before litellm is imported (never overriding the user's).
OFFLINE_ENV: Final[Mapping[str, str]] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "HF_HUB_OFFLINE": "1",
}

_import_lock = threading.Lock()
_litellm: Any = None


def litellm_module() -> Any:
    """The litellm module, imported on first use with :data:`OFFLINE_ENV` defaults (thread-safe)."""
    global _litellm
    if _litellm is None:
        with _import_lock:
            if _litellm is None:
                for key, value in OFFLINE_ENV.items():
                    os.environ.setdefault(key, value)
                module: Any = importlib.import_module("litellm")
                module.suppress_debug_info = True
                _litellm = module
    return _litellm
