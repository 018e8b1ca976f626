"""A deliberately broken extension for the demo: it hangs, then it crashes."""

from __future__ import annotations

import os
import time

from ext_sdk import Extension

ext = Extension("misbehaving", permissions=["conversation"])


@ext.on("tool_call", priority=5, deadline_ms=300, policy="open")
def hang(event, ctx):  # type: ignore[no-untyped-def]
    time.sleep(0.6)  # twice its 300 ms deadline


@ext.on("tool_result", priority=5, deadline_ms=2000)
def crash(event, ctx):  # type: ignore[no-untyped-def]
    os._exit(1)
