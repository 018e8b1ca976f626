"""bench-ctx-chain: a context_prepare chain link that returns the whole window plus one note (about 50 KB back)."""

from __future__ import annotations

from ext_sdk import Context, EventData, Extension, ReplaceMessages

ext = Extension("bench-ctx-chain", version="0.1.0", permissions=["conversation"])


@ext.on("context_prepare")
def annotate(event: EventData, ctx: Context) -> ReplaceMessages:
    """Chain: the window as received, with a short system note appended (the next link sees it)."""
    return ReplaceMessages([*event["messages"], {"index": -1, "role": "system", "content": "bench note"}])
