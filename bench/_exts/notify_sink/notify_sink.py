"""bench-notify-sink: a message_update observer that only counts the chunks it gets."""

from __future__ import annotations

from ext_sdk import Context, EventData, Extension

ext = Extension("bench-notify-sink", version="0.1.0", permissions=["conversation"])
_seen = [0]


@ext.on("message_update")
def count(event: EventData, ctx: Context) -> None:
    """Count one streamed chunk."""
    _seen[0] += 1
