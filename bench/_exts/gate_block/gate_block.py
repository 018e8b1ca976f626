"""bench-gate-block: a tool_call gate that always blocks (the result is schema-checked on both sides)."""

from __future__ import annotations

from ext_sdk import Block, Context, EventData, Extension

ext = Extension("bench-gate-block", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call")
def deny(event: EventData, ctx: Context) -> Block:
    """Always block, with a short reason."""
    return Block("bench: blocked")
