"""bench-gate-hang: a tool_call gate with a 50 ms deadline that sleeps 2 s when ``tool_name == "hang"``.

Any other tool call returns ``None`` at once, so the same extension also
measures how quickly events flow again after a hang.
"""

from __future__ import annotations

import time

from ext_sdk import Context, EventData, Extension

HANG_S = 2.0

ext = Extension("bench-gate-hang", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call", deadline_ms=50)
def maybe_hang(event: EventData, ctx: Context) -> None:
    """Sleep ``HANG_S`` for the 'hang' tool (far past the deadline), else no opinion."""
    if event.tool_name == "hang":
        time.sleep(HANG_S)
    return None
