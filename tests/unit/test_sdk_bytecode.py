"""The host writes the SDK's bytecode that an extension process cannot write itself (host/exthost/bytecode.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import ext_sdk
from host.exthost.bytecode import compile_tree


def _pyc(source: Path) -> Path:
    return Path(importlib.util.cache_from_source(str(source)))


def test_missing_and_stale_bytecode_is_written_and_the_javascript_sdk_is_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "sdk"
    (tree / "sandbox").mkdir(parents=True)
    (tree / "js" / "node_modules" / "gyp").mkdir(parents=True)
    (tree / "__init__.py").write_text("X = 1\n")
    (tree / "sandbox" / "boot.py").write_text("Y = 2\n")
    (tree / "js" / "node_modules" / "gyp" / "tool.py").write_text("Z = 3\n")
    assert compile_tree(tree)
    assert _pyc(tree / "__init__.py").is_file() and _pyc(tree / "sandbox" / "boot.py").is_file()
    assert not _pyc(tree / "js" / "node_modules" / "gyp" / "tool.py").exists()
    before = _pyc(tree / "sandbox" / "boot.py").read_bytes()
    (tree / "sandbox" / "boot.py").write_text("Y = 'edited, and longer than before'\n")
    assert compile_tree(tree)
    assert _pyc(tree / "sandbox" / "boot.py").read_bytes() != before


def test_a_tree_the_host_cannot_write_is_left_alone_without_an_error(tmp_path: Path) -> None:
    tree = tmp_path / "sdk"
    tree.mkdir()
    (tree / "mod.py").write_text("X = 1\n")
    if os.geteuid() == 0:  # root writes anywhere: stand in a file where __pycache__ must go
        (tree / "__pycache__").write_text("not a directory")
    else:
        tree.chmod(0o555)
    try:
        assert compile_tree(tree) is False
    finally:
        tree.chmod(0o755)


def test_the_sdk_itself_is_compiled(tmp_path: Path) -> None:
    sdk = tmp_path / "ext_sdk"
    shutil.copytree(Path(ext_sdk.__file__).parent, sdk, ignore=shutil.ignore_patterns("__pycache__", "js"))
    assert compile_tree(sdk)
    assert all(_pyc(p).is_file() for p in sdk.rglob("*.py"))
