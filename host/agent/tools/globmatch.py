"""Glob patterns as regular expressions, and a deterministic file walk (pure Python).

Pattern syntax (matched against ``/``-separated paths relative to the search root):

* ``*`` any characters except ``/``; ``?`` one character except ``/``;
* ``**`` any characters including ``/``; ``**/`` zero or more directories;
* ``[abc]``, ``[a-z]``, ``[!abc]`` character classes; ``{py,txt}`` alternatives.

Wildcards match dot-files too. :func:`walk` prunes :data:`IGNORED_DIRS`
(``.git``, ``node_modules``, caches, virtualenvs) unless the root itself is
one, never follows directory symlinks, and yields paths in sorted order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["IGNORED_DIRS", "compile_glob", "walk"]

#: Directory names never descended into.
IGNORED_DIRS: Final = frozenset({
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".tox",
})


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                at_start = i == 0 or pattern[i - 1] == "/"
                if at_start and pattern.startswith("**/", i):
                    out.append("(?:.*/)?")
                    i += 3
                    continue
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                out.append(f"[{'^/' if negate else ''}{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        elif c == "{":
            end = _matching_brace(pattern, i)
            if end < 0:
                out.append(re.escape(c))
            else:
                alternatives = _split_top(pattern[i + 1:end])
                out.append("(?:" + "|".join(_translate(a) for a in alternatives) + ")")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _matching_brace(pattern: str, start: int) -> int:
    depth = 0
    for j in range(start, len(pattern)):
        if pattern[j] == "{":
            depth += 1
        elif pattern[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_top(body: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in body:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current.append(ch)
    parts.append("".join(current))
    return parts


def compile_glob(pattern: str, *, basename_if_no_slash: bool = False) -> re.Pattern[str]:
    """A regex matching whole relative paths for ``pattern``.

    With ``basename_if_no_slash``, a pattern without ``/`` matches a file at any
    depth (``*.py`` ≡ ``**/*.py``), as in ripgrep's ``--glob``.
    """
    pattern = pattern.lstrip("/") if not pattern.startswith("//") else pattern
    if basename_if_no_slash and "/" not in pattern:
        pattern = "**/" + pattern
    return re.compile(_translate(pattern) + r"\Z", re.DOTALL)


def walk(root: Path, *, max_files: int | None = None) -> Iterator[tuple[Path, str]]:
    """``(path, relative posix path)`` of every file under ``root``, sorted, ignored dirs pruned."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield base / name, rel
            count += 1
            if max_files is not None and count >= max_files:
                return
