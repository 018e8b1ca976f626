"""``edit``: replace an exact string in a file; it must occur exactly once (or set ``replace_all``).

Errors say what to do: ``old_string`` not found (with a hint when only
whitespace differs), found N times (with the line numbers), identical
strings, a missing or non-UTF-8 file. A file with CRLF line endings is
matched with the model's ``\\n`` turned into ``\\r\\n`` when the plain text does
not match. Metadata carries the number of replacements and a unified diff.
"""

from __future__ import annotations

import difflib
from typing import Any, Final

from .base import ToolContext, ToolKind, ToolResult
from .output import truncate

__all__ = ["TOOL", "EditTool"]

#: Characters of the diff kept in metadata.
MAX_DIFF_CHARS: Final = 20_000


def _lines_of(text: str, needle: str) -> list[int]:
    lines, pos = [], text.find(needle)
    while pos >= 0:
        lines.append(text.count("\n", 0, pos) + 1)
        pos = text.find(needle, pos + len(needle))
    return lines


class EditTool:
    """Exact string replacement."""

    name: Final = "edit"
    kind: Final[ToolKind] = "edit"
    description: Final = (
        "Replace old_string with new_string in a file. old_string must match the file exactly (whitespace "
        "included) and occur exactly once; add surrounding lines to make it unique, or set replace_all to "
        "replace every occurrence."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path, absolute or relative to the working directory."},
            "old_string": {"type": "string", "description": "Exact text to replace."},
            "new_string": {"type": "string", "description": "Replacement text."},
            "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."},
        },
        "required": ["path", "old_string", "new_string"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Apply the replacement or explain why not (rules in the module doc)."""
        path = ctx.resolve(args["path"])
        old: str = args["old_string"]
        new: str = args["new_string"]
        replace_all = bool(args.get("replace_all", False))
        meta: dict[str, Any] = {"path": str(path)}
        if not old:
            return ToolResult("old_string is empty; use write to create a file", True, meta)
        if old == new:
            return ToolResult("old_string and new_string are identical; nothing to do", True, meta)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return ToolResult(f"file not found: {path}", True, meta)
        except IsADirectoryError:
            return ToolResult(f"{path} is a directory", True, meta)
        except OSError as exc:
            return ToolResult(f"cannot read {path}: {exc.strerror or exc}", True, meta)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return ToolResult(f"{path} is not UTF-8 text; edit cannot change it", True, meta)
        count = text.count(old)
        if count == 0 and "\r\n" in text and "\n" in old and "\r\n" not in old:
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
            count = text.count(old)
        if count == 0:
            hint = ""
            if " ".join(old.split()) and " ".join(old.split()) in " ".join(text.split()):
                hint = " (a match exists if whitespace is ignored: copy the exact indentation and line breaks)"
            return ToolResult(f"old_string not found in {path}{hint}", True, {**meta, "replacements": 0})
        if count > 1 and not replace_all:
            where = ", ".join(str(n) for n in _lines_of(text, old)[:20])
            return ToolResult(f"old_string occurs {count} times in {path} (lines {where}); include more "
                              "surrounding text to make it unique, or set replace_all", True,
                              {**meta, "replacements": 0, "occurrences": count})
        updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
        try:
            path.write_bytes(updated.encode("utf-8"))
        except OSError as exc:
            return ToolResult(f"cannot write {path}: {exc.strerror or exc}", True, meta)
        diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), updated.splitlines(keepends=True),
                                            fromfile=str(path), tofile=str(path)))
        diff, _ = truncate(diff, MAX_DIFF_CHARS)
        replaced = count if replace_all else 1
        first_line = _lines_of(text, old)[0]
        noun = "occurrence" if replaced == 1 else "occurrences"
        return ToolResult(f"Edited {path}: replaced {replaced} {noun} (first at line {first_line})", False,
                          {**meta, "replacements": replaced, "first_line": first_line, "diff": diff})


#: The tool instance the registry discovers.
TOOL: Final = EditTool()
