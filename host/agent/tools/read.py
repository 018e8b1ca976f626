"""``read``: a text file's lines, optionally a range, within a size cap.

Output is the file's text as is (no line numbers), so it can be quoted back
to ``edit``. At most ``limit`` lines (default 2000) and
:data:`MAX_OUTPUT_CHARS` characters are returned; a note at the end says
which lines were shown and the ``offset`` to continue from. Lines longer than
:data:`MAX_LINE_CHARS` are cut. Binary files (a NUL byte in the first 8 KiB)
and directories are refused with an error that says what to use instead.
"""

from __future__ import annotations

from typing import Any, Final

from .base import ToolContext, ToolKind, ToolResult

__all__ = ["MAX_LINE_CHARS", "MAX_OUTPUT_CHARS", "TOOL", "ReadTool"]

#: Default and maximum number of lines returned.
DEFAULT_LIMIT: Final = 2000
#: Characters of one line kept.
MAX_LINE_CHARS: Final = 2000
#: Characters returned in total.
MAX_OUTPUT_CHARS: Final = 50_000


class ReadTool:
    """Read a text file."""

    name: Final = "read"
    kind: Final[ToolKind] = "read"
    description: Final = (
        "Read a text file and return its content. For long files, pass offset (1-based first line) and "
        f"limit (number of lines, default {DEFAULT_LIMIT}); the output ends with a note when there is more."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path, absolute or relative to the working directory."},
            "offset": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)."},
            "limit": {"type": "integer", "minimum": 1, "maximum": DEFAULT_LIMIT,
                      "description": "Maximum number of lines to return."},
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Return lines ``offset .. offset+limit-1`` of the file (rules in the module doc)."""
        path = ctx.resolve(args["path"])
        start = int(args.get("offset", 1))
        limit = int(args.get("limit", DEFAULT_LIMIT))
        if path.is_dir():
            return ToolResult(f"{path} is a directory; use ls to list it", True, {"path": str(path)})
        try:
            with path.open("rb") as raw:
                if b"\0" in raw.read(8192):
                    return ToolResult(f"{path} looks like a binary file; read only reads text", True,
                                      {"path": str(path)})
            lines: list[str] = []
            chars = 0
            total = 0
            capped = False
            with path.open(encoding="utf-8", errors="replace", newline="") as text:
                for total, line in enumerate(text, 1):
                    if total < start or len(lines) >= limit or capped:
                        continue
                    line = line.rstrip("\r\n")
                    if len(line) > MAX_LINE_CHARS:
                        line = line[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} characters]"
                    if chars + len(line) + 1 > MAX_OUTPUT_CHARS and lines:
                        capped = True
                        continue
                    lines.append(line)
                    chars += len(line) + 1
        except FileNotFoundError:
            return ToolResult(f"file not found: {path}", True, {"path": str(path)})
        except OSError as exc:
            return ToolResult(f"cannot read {path}: {exc.strerror or exc}", True, {"path": str(path)})
        meta: dict[str, Any] = {"path": str(path), "total_lines": total}
        if total == 0:
            return ToolResult("(empty file)", False, {**meta, "start_line": 0, "end_line": 0, "truncated": False})
        if start > total:
            return ToolResult(f"offset {start} is past the end of {path} ({total} lines)", True, meta)
        end = start + len(lines) - 1
        content = "\n".join(lines)
        truncated = end < total
        if truncated:
            why = f" (output limit of {MAX_OUTPUT_CHARS} characters)" if capped else ""
            content += f"\n\n[Showing lines {start}-{end} of {total}{why}. Use offset={end + 1} to read more.]"
        return ToolResult(content, False, {**meta, "start_line": start, "end_line": end, "truncated": truncated})


#: The tool instance the registry discovers.
TOOL: Final = ReadTool()
