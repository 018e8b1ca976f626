"""permission-gate: block dangerous shell commands before they run.

Gate on ``tool_call`` for the ``bash`` tool. Fail-closed: if this extension
crashes or misses its deadline, the host blocks the call rather than let an
unchecked command through. Each block is recorded in state (``blocked``
counter) and shown to the user.
"""

from __future__ import annotations

import re

from ext_sdk import Block, Extension

ext = Extension()  # name, version and permissions: extension.toml

#: (pattern, why) — matched against the whole command line.
DANGEROUS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\brm\s+(-[a-zA-Z]*[rf][a-zA-Z]*\s+)+(/|~|\$HOME|\*)(\s|$)"), "recursive delete of / , ~ or *"),
    (re.compile(r"\bmkfs(\.\w+)?\b"), "formats a filesystem"),
    (re.compile(r"\bdd\b.*\bof=/dev/"), "writes raw to a device"),
    (re.compile(r">\s*/dev/(sd|nvme|hd|vd)\w*"), "overwrites a disk device"),
    (re.compile(r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:"), "fork bomb"),
    (re.compile(r"\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b"), "pipes a download into a shell"),
    (re.compile(r"\bchmod\s+(-R\s+)?[0-7]*777\s+/(\s|$)"), "makes / world-writable"),
    (re.compile(r"\b(shutdown|reboot|halt|poweroff)\b"), "stops the machine"),
    (re.compile(r"\bgit\s+push\b.*--force\b.*\b(main|master)\b"), "force-pushes the main branch"),
]


def why_dangerous(command: str) -> str | None:
    """The reason ``command`` is dangerous, or ``None``."""
    for pattern, why in DANGEROUS:
        if pattern.search(command):
            return why
    return None


@ext.on("tool_call", priority=10, deadline_ms=500, policy="closed")
def gate(event, ctx):  # type: ignore[no-untyped-def]
    if event.tool_name != "bash":
        return None
    args = event.parsed_args or {}
    command = str(args.get("command", "")) if isinstance(args, dict) else ""
    why = why_dangerous(command)
    if why is None:
        return None
    ctx.set_state("blocked", int(ctx.get_state("blocked", 0)) + 1)
    ctx.error(f"blocked: {command!r} ({why})")
    return Block(f"permission-gate blocked this command: {why}")
