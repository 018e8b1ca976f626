"""bench-gate-none: a tool_call gate that always lets the call through (returns ``None``)."""

from __future__ import annotations

from typing import Any

from ext_sdk import Extension

ext = Extension("bench-gate-none", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call")
def allow(event: Any, ctx: Any) -> None:
    """No opinion: the cheapest possible gate handler."""
    return None
