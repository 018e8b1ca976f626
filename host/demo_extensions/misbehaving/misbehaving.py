"""A deliberately broken extension for the demo: it hangs once, then it crashes once."""

from __future__ import annotations

import os
import time

from ext_sdk import Extension

ext = Extension()  # name, version and permissions: extension.toml


@ext.on("tool_call", priority=5, deadline_ms=300, policy="open")
def hang(event, ctx):  # type: ignore[no-untyped-def]
    if not ctx.get_state("hung"):
        ctx.set_state("hung", True)  # state lives in the host: it survives the crash below
        time.sleep(0.6)  # twice its 300 ms deadline


@ext.on("tool_result", priority=5, deadline_ms=2000)
def crash(event, ctx):  # type: ignore[no-untyped-def]
    if not ctx.get_state("crashed"):
        ctx.set_state("crashed", True)
        os._exit(1)
