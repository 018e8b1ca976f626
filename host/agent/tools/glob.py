"""``glob``: files whose path (relative to the search directory) matches a glob pattern.

Standard glob semantics (:mod:`.globmatch`): ``*.py`` matches only the top
level, ``**/*.py`` every depth. Ignored directories (``.git``,
``node_modules``, caches) are not searched. Results are sorted, at most
:data:`MAX_RESULTS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from .base import ToolContext, ToolKind, ToolResult
from .globmatch import compile_glob, walk

__all__ = ["MAX_RESULTS", "TOOL", "GlobTool"]

#: Paths returned at most.
MAX_RESULTS: Final = 1000


class GlobTool:
    """Find files by name pattern."""

    name: Final = "glob"
    kind: Final[ToolKind] = "search"
    description: Final = (
        "Find files whose path relative to `path` (default: the working directory) matches a glob pattern: "
        "'*' and '?' stay within one directory, '**' crosses directories ('**/*.py' = every .py file), "
        "'{a,b}' gives alternatives. Returns sorted relative paths."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Glob pattern, e.g. 'src/**/*.ts'."},
            "path": {"type": "string", "description": "Directory to search (default '.')."},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Return the matching files, one relative path per line.

        An absolute pattern (``/src/**/*.py``) searches from its longest directory prefix without wildcards.
        """
        pattern: str = args["pattern"]
        root = ctx.resolve(args.get("path", "."))
        if Path(pattern).expanduser().is_absolute():
            parts = Path(pattern).expanduser().parts
            fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[{")), len(parts) - 1)
            root, pattern = Path(*parts[:fixed]), "/".join(parts[fixed:])
        if not root.is_dir():
            return ToolResult(f"directory not found: {root}", True, {"path": str(root)})
        regex = compile_glob(pattern)
        found: list[str] = []
        more = False
        for _, rel in walk(root):
            if regex.match(rel):
                if len(found) >= MAX_RESULTS:
                    more = True
                    break
                found.append(rel)
        meta = {"path": str(root), "count": len(found), "truncated": more}
        if not found:
            return ToolResult(f"no files match {pattern!r} under {root}", False, meta)
        content = "\n".join(found)
        if more:
            content += f"\n[... stopped at {MAX_RESULTS} results; narrow the pattern]"
        return ToolResult(content, False, meta)


#: The tool instance the registry discovers.
TOOL: Final = GlobTool()
