"""bench-gate-block: a tool_call gate that always blocks (the result is schema-checked on both sides)."""

from __future__ import annotations

from typing import Any

from ext_sdk import Block, Extension

ext = Extension("bench-gate-block", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call")
def deny(event: Any, ctx: Any) -> Block:
    """Always block, with a short reason."""
    return Block("bench: blocked")
