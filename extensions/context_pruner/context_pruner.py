"""context-pruner: keep the context window small, without breaking tool-call pairs.

On ``context_prepare`` (once per turn, before the model is called):

1. Tool outputs older than the last ``KEEP_RECENT`` messages and longer than
   ``MAX_OLD_TOOL_CHARS`` are cut to their head plus a marker. The message
   keeps its index, so the host keeps its tool-call id — only the text changes
   (kithost's extension of kit's ContextMessage scheme).
2. If more than ``MAX_MESSAGES`` remain, whole turns are dropped from the
   oldest, always starting a kept window at a user message, so no tool
   result is ever kept without the assistant message that called it. System
   messages are always kept.
"""

from __future__ import annotations

from ext_sdk import Extension, ReplaceMessages

ext = Extension()  # name, version and permissions: extension.toml

MAX_MESSAGES = 40
KEEP_RECENT = 6
MAX_OLD_TOOL_CHARS = 1200


def prune(messages: list[dict]) -> list[dict] | None:  # type: ignore[type-arg]
    """The pruned window, or ``None`` when nothing needs to change."""
    changed = False
    out = [dict(m) for m in messages]
    for m in out[:-KEEP_RECENT] if len(out) > KEEP_RECENT else []:
        if m["role"] == "tool" and len(m["content"]) > MAX_OLD_TOOL_CHARS:
            cut = len(m["content"]) - MAX_OLD_TOOL_CHARS
            m["content"] = m["content"][:MAX_OLD_TOOL_CHARS] + f"\n[context-pruner: {cut} characters pruned]"
            changed = True
    system = [m for m in out if m["role"] == "system"]
    rest = [m for m in out if m["role"] != "system"]
    budget = MAX_MESSAGES - len(system)
    if len(rest) > budget:
        start = len(rest) - budget
        while start < len(rest) and rest[start]["role"] != "user":
            start += 1
        if start < len(rest):
            rest = rest[start:]
            changed = True
    return system + rest if changed else None


@ext.on("context_prepare", priority=80, deadline_ms=500)
def on_context(event, ctx):  # type: ignore[no-untyped-def]
    pruned = prune(event.messages)
    if pruned is None:
        return None
    return ReplaceMessages(pruned)
