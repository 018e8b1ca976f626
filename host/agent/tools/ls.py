"""``ls``: the entries of a directory, sorted, directories marked with a trailing ``/``."""

from __future__ import annotations

import os
from typing import Any, Final

from .base import ToolContext, ToolKind, ToolResult

__all__ = ["MAX_ENTRIES", "TOOL", "LsTool"]

#: Entries listed at most.
MAX_ENTRIES: Final = 1000


class LsTool:
    """List a directory."""

    name: Final = "ls"
    kind: Final[ToolKind] = "read"
    description: Final = (
        "List the entries of a directory (default: the working directory), sorted by name; directories end "
        f"with '/'. At most {MAX_ENTRIES} entries."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "Directory (default '.')."}},
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """List ``path`` (one entry per line)."""
        path = ctx.resolve(args.get("path", "."))
        try:
            with os.scandir(path) as it:
                entries = sorted((e.name + ("/" if e.is_dir() else "")) for e in it)
        except FileNotFoundError:
            return ToolResult(f"directory not found: {path}", True, {"path": str(path)})
        except NotADirectoryError:
            return ToolResult(f"{path} is a file, not a directory; use read", True, {"path": str(path)})
        except OSError as exc:
            return ToolResult(f"cannot list {path}: {exc.strerror or exc}", True, {"path": str(path)})
        shown = entries[:MAX_ENTRIES]
        truncated = len(entries) > len(shown)
        content = "\n".join(shown) if shown else "(empty directory)"
        if truncated:
            content += f"\n[... {len(entries) - len(shown)} more entries not shown]"
        return ToolResult(content, False, {"path": str(path), "count": len(entries), "truncated": truncated})


#: The tool instance the registry discovers.
TOOL: Final = LsTool()
