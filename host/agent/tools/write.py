"""``write``: create or overwrite a file with the given content (parent directories created)."""

from __future__ import annotations

from typing import Any, Final

from .base import ToolContext, ToolKind, ToolResult

__all__ = ["TOOL", "WriteTool"]


class WriteTool:
    """Write a whole file."""

    name: Final = "write"
    kind: Final[ToolKind] = "edit"
    description: Final = (
        "Write content to a file, replacing it if it exists and creating missing parent directories. "
        "Prefer edit for changing part of an existing file."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path, absolute or relative to the working directory."},
            "content": {"type": "string", "description": "The complete new content."},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Write ``content`` (UTF-8) to ``path``; metadata says whether it was created."""
        path = ctx.resolve(args["path"])
        content: str = args["content"]
        if path.is_dir():
            return ToolResult(f"{path} is a directory", True, {"path": str(path)})
        created = not path.exists()
        data = content.encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            return ToolResult(f"cannot write {path}: {exc.strerror or exc}", True, {"path": str(path)})
        verb = "Created" if created else "Wrote"
        return ToolResult(f"{verb} {path} ({len(data)} bytes)", False,
                          {"path": str(path), "bytes": len(data), "created": created})


#: The tool instance the registry discovers.
TOOL: Final = WriteTool()
