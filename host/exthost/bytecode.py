"""Bytecode for the Python SDK before the first process that runs it starts.

An extension process cannot write ``__pycache__``: it runs with
``PYTHONDONTWRITEBYTECODE=1`` and, under bubblewrap, sees the SDK read-only.
Without up-to-date ``.pyc`` files every start would compile the SDK's modules
again — about 40 ms on a 2-core machine, more than the bare interpreter start
(issue 10: cold start ≤ 2× a bare interpreter). A fresh clone, an editable
install or an edited SDK file all lack them; a wheel installed by pip has them.

:func:`ensure_sdk_bytecode` compiles what is missing or stale (a ``stat`` per
file when nothing is: ~1 ms), once per host process, before the first launch
that runs the SDK's interpreter (:func:`.launch.python_command`: a Python
extension, or the sandbox boot in front of any extension). Failure policy:
best effort — a directory the host may not write (a system-wide install, whose
pip wrote the bytecode) is left as it is, silently; the extension then still
starts, only slower.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import py_compile
from pathlib import Path

import ext_sdk

__all__ = ["compile_tree", "ensure_sdk_bytecode"]


def _current(source: Path) -> bool:
    """Whether ``source``'s ``.pyc`` is what the import system would accept: its magic, and the source's
    mtime and size in the header. (``compileall`` compares the mtime only, so it would keep a ``.pyc`` of a
    file edited within the same second, which every start would then compile again.)"""
    try:
        with open(importlib.util.cache_from_source(str(source)), "rb") as cached:
            header = cached.read(16)
        info = source.stat()
    except OSError:
        return False
    return (header[:4] == importlib.util.MAGIC_NUMBER and header[4:8] == b"\0\0\0\0"
            and int.from_bytes(header[8:12], "little") == int(info.st_mtime) & 0xFFFF_FFFF
            and int.from_bytes(header[12:16], "little") == info.st_size & 0xFFFF_FFFF)


def _sources(directory: Path) -> list[Path]:
    """The ``.py`` files under ``directory``, without descending into a ``js`` directory (the JavaScript SDK
    and its ``node_modules``: most of the tree's files) or ``__pycache__``."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in ("js", "__pycache__")]
        found += (Path(root, name) for name in files if name.endswith(".py"))
    return sorted(found)


def compile_tree(directory: Path) -> bool:
    """Write the missing or stale ``.pyc`` of every module under ``directory`` (not under a ``js``
    directory); whether all of them are current now."""
    ok = True
    for source in _sources(directory):
        if _current(source):
            continue
        try:
            py_compile.compile(str(source), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
        except (OSError, py_compile.PyCompileError):
            ok = False
    return ok


@functools.cache
def ensure_sdk_bytecode() -> bool:
    """:func:`compile_tree` of the SDK, once per process."""
    return compile_tree(Path(ext_sdk.__file__).parent)
