"""bench-notify-sink: a message_update observer that only counts the chunks it gets."""

from __future__ import annotations

from typing import Any

from ext_sdk import Extension

ext = Extension("bench-notify-sink", version="0.1.0", permissions=["conversation"])
_seen = [0]


@ext.on("message_update")
def count(event: Any, ctx: Any) -> None:
    """Count one streamed chunk."""
    _seen[0] += 1
