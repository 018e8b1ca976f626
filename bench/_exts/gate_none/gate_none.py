"""bench-gate-none: a tool_call gate that always lets the call through (returns ``None``)."""

from __future__ import annotations

from ext_sdk import Context, EventData, Extension

ext = Extension("bench-gate-none", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call")
def allow(event: EventData, ctx: Context) -> None:
    """No opinion: the cheapest possible gate handler."""
    return None
