"""``grep``: lines matching a regular expression, in one file or every file under a directory.

Pure Python (``re``): each hit is ``path:line: text`` (path relative to the
search directory). Binary files (a NUL byte in the first 8 KiB), files over
:data:`MAX_FILE_BYTES` and ignored directories are skipped. ``include``
filters file names with a glob (without ``/`` it matches at any depth:
``*.py``). At most ``max_results`` hits (default 100, at most
:data:`MAX_RESULTS`); each line is cut at :data:`MAX_LINE_CHARS`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from .base import ToolContext, ToolKind, ToolResult
from .globmatch import compile_glob, walk

__all__ = ["MAX_FILE_BYTES", "MAX_LINE_CHARS", "MAX_RESULTS", "TOOL", "GrepTool"]

#: Largest number of hits returned.
MAX_RESULTS: Final = 1000
#: Files larger than this are skipped.
MAX_FILE_BYTES: Final = 5_000_000
#: Characters of a matching line kept.
MAX_LINE_CHARS: Final = 500


def _is_text(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return b"\0" not in f.read(8192)
    except OSError:
        return False


class GrepTool:
    """Search file contents with a regex."""

    name: Final = "grep"
    kind: Final[ToolKind] = "search"
    description: Final = (
        "Search for a regular expression (Python syntax) in a file or in every text file under a directory "
        "(default: the working directory). Returns 'path:line: text' per matching line. Use include to filter "
        "file names with a glob (e.g. '*.py')."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Regular expression."},
            "path": {"type": "string", "description": "File or directory to search (default '.')."},
            "include": {"type": "string", "description": "Glob on file paths, e.g. '*.py' or 'src/**/*.ts'."},
            "ignore_case": {"type": "boolean", "description": "Case-insensitive match (default false)."},
            "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS,
                            "description": "Maximum number of matching lines (default 100)."},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Return matching lines (rules in the module doc)."""
        root = ctx.resolve(args.get("path", "."))
        try:
            regex = re.compile(args["pattern"], re.IGNORECASE if args.get("ignore_case") else 0)
        except re.error as exc:
            return ToolResult(f"invalid regular expression {args['pattern']!r}: {exc}", True, {})
        include = compile_glob(args["include"], basename_if_no_slash=True) if args.get("include") else None
        limit = int(args.get("max_results", 100))
        if root.is_file():
            files: list[tuple[Path, str]] = [(root, root.name)]
        elif root.is_dir():
            files = list(walk(root))
        else:
            return ToolResult(f"path not found: {root}", True, {"path": str(root)})
        hits: list[str] = []
        searched = matched_files = 0
        more = False
        for path, rel in files:
            if more:
                break
            if include is not None and not include.match(rel):
                continue
            try:
                if path.stat().st_size > MAX_FILE_BYTES or not _is_text(path):
                    continue
                searched += 1
                found_here = False
                with path.open(encoding="utf-8", errors="replace") as text:
                    for number, line in enumerate(text, 1):
                        if regex.search(line):
                            if len(hits) >= limit:
                                more = True
                                break
                            found_here = True
                            line = line.rstrip("\r\n")
                            if len(line) > MAX_LINE_CHARS:
                                line = line[:MAX_LINE_CHARS] + " [...]"
                            hits.append(f"{rel}:{number}: {line}")
                matched_files += found_here
            except OSError:
                continue
        meta = {"path": str(root), "matches": len(hits), "files_searched": searched,
                "files_matched": matched_files, "truncated": more}
        if not hits:
            return ToolResult(f"no matches for {args['pattern']!r} in {root} ({searched} files searched)", False,
                              meta)
        content = "\n".join(hits)
        if more:
            content += f"\n[... stopped at {limit} matches; narrow the pattern or raise max_results]"
        return ToolResult(content, False, meta)


#: The tool instance the registry discovers.
TOOL: Final = GrepTool()
