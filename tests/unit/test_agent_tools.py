"""Built-in file tools and the registry, on real files in a tmp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ext_sdk.events import TOOL_CALL
from ext_sdk.schema import Enum
from host.agent.tools import TOOL_KINDS, ProxyTool, ToolContext, ToolRegistry, ToolResult, builtin_tools
from host.agent.tools import read as read_mod
from host.agent.tools.args import check_args
from host.agent.tools.globmatch import compile_glob


@pytest.fixture
def reg(tmp_path: Path) -> ToolRegistry:
    return ToolRegistry(tmp_path)


# --------------------------------------------------------------------------- registry


def test_builtins_are_derived_from_the_package() -> None:
    assert [t.name for t in builtin_tools()] == ["bash", "edit", "glob", "grep", "ls", "read", "write"]


def test_tool_kinds_match_the_event_schema() -> None:
    kind = TOOL_CALL.payload.fields["tool_kind"].type
    assert isinstance(kind, Enum) and kind.values == frozenset(TOOL_KINDS)
    assert {t.name: t.kind for t in builtin_tools()} == {
        "bash": "execute", "edit": "edit", "glob": "search", "grep": "search", "ls": "read", "read": "read",
        "write": "edit"}


def test_specs_are_openai_function_specs(reg: ToolRegistry) -> None:
    specs = reg.specs()
    assert [s["function"]["name"] for s in specs] == reg.names()
    for spec in specs:
        assert spec["type"] == "function" and spec["function"]["description"]
        assert spec["function"]["parameters"]["type"] == "object"
        json.dumps(spec)
    assert [s["function"]["name"] for s in reg.specs(["read", "nope", "ls"])] == ["read", "ls"]


def test_bad_calls_become_error_results(reg: ToolRegistry) -> None:
    unknown = reg.run("teleport", {})
    assert unknown.is_error and "unknown tool 'teleport'" in unknown.content and "read" in unknown.content
    assert reg.run("read", {}).content == "read: missing required argument 'path'"
    assert reg.run("read", {"path": 3}).content == "read: argument 'path' must be string, got int"
    assert reg.run("read", {"path": "a", "lines": 3}).content.startswith("read: unknown argument 'lines'")
    assert reg.run("read", {"path": "a", "offset": 0}).content == "read: argument 'offset' must be >= 1, got 0"
    assert reg.run("read", "not a dict").content == "read: arguments must be a JSON object, got str"
    assert reg.run("edit", {"path": "a", "old_string": "x", "new_string": "y", "replace_all": "yes"}).is_error


def test_argument_problems_name_the_argument_and_come_in_reading_order() -> None:
    schema = {
        "type": "object",
        "properties": {
            "mode": {"enum": ["r", "w"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "ratio": {"type": "number", "exclusiveMaximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"line": {"type": "integer"}, "file": {"type": "string"}},
                      "required": ["file"], "additionalProperties": False},
            "name": {"type": ["string", "null"], "pattern": "^[a-z]+$"},
        },
        "required": ["mode"],
        "additionalProperties": False,
    }
    assert check_args({"mode": "r"}, schema) is None
    assert check_args({"count": 2}, schema) == "missing required argument 'mode'"
    assert check_args({"mode": "r", "zz": 1, "aa": 2}, schema) == (
        "unknown argument 'aa' (known: mode, count, ratio, tags, where, name)")
    assert check_args({"mode": "x"}, schema) == "argument 'mode' must be one of ['r', 'w'], got 'x'"
    assert check_args({"mode": "r", "count": 1.0}, schema) == "argument 'count' must be integer, got float"
    assert check_args({"mode": "r", "count": True}, schema) == "argument 'count' must be integer, got bool"
    assert check_args({"mode": "r", "count": 10}, schema) == "argument 'count' must be <= 9, got 10"
    assert check_args({"mode": "r", "ratio": 1}, schema) == "argument 'ratio' must be < 1, got 1"
    assert check_args({"mode": "r", "tags": ["a", 2]}, schema) == "argument 'tags[1]' must be string, got int"
    assert check_args({"mode": "r", "where": {"line": 3}}, schema) == "missing required argument 'where.file'"
    assert check_args({"mode": "r", "where": {"file": "a", "col": 1}}, schema) == (
        "unknown argument 'where.col' (known: line, file)")
    assert check_args({"mode": "r", "name": 3}, schema) == "argument 'name' must be one of ['string', 'null'], got int"
    assert check_args({"mode": "r", "name": "A1"}, schema) == "argument 'name': 'A1' does not match '^[a-z]+$'"
    # the first problem in the order the model gave the arguments
    assert check_args({"mode": "r", "tags": [1], "count": 0}, schema) == "argument 'tags[0]' must be string, got int"
    assert check_args({"mode": "r", "count": 0, "tags": [1]}, schema) == "argument 'count' must be >= 1, got 0"


def test_a_tool_whose_parameters_are_not_a_json_schema_is_refused(reg: ToolRegistry) -> None:
    def never(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        raise AssertionError("not offered")

    broken = ProxyTool("broken", "Broken schema.", {"type": "object", "properties": {"a": {"type": "strng"}}}, never)
    with pytest.raises(ValueError, match=r"tool 'broken': parameters are not a valid JSON Schema at properties/a/type"):
        reg.register(broken)
    assert "broken" not in reg


def test_proxy_tools_and_registration_rules(reg: ToolRegistry, tmp_path: Path) -> None:
    calls: list[tuple[dict[str, Any], ToolContext]] = []

    def remote(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        calls.append((args, ctx))
        if args.get("explode"):
            raise RuntimeError("extension went away")
        return ToolResult(f"weather in {args['city']}: sunny", False, {"source": "ext"})

    proxy = ProxyTool("weather", "Weather report.", {"type": "object", "properties": {"city": {"type": "string"},
                                                                                      "explode": {"type": "boolean"}},
                                                     "required": ["city"]}, remote, kind="other", source="wx")
    reg.register(proxy)
    assert reg.names()[-1] == "weather" and reg.kind("weather") == "other" and "weather" in reg
    result = reg.run("weather", {"city": "Oslo"}, tool_call_id="c9")
    assert result == ToolResult("weather in Oslo: sunny", False, {"source": "ext"})
    assert calls[0][1].tool_call_id == "c9" and calls[0][1].cwd == tmp_path.resolve()
    broken = reg.run("weather", {"city": "Oslo", "explode": True})
    assert broken.is_error and broken.content == "weather failed: RuntimeError: extension went away"
    with pytest.raises(ValueError, match="already registered"):
        reg.register(proxy)
    reg.register(proxy, replace=True)
    with pytest.raises(ValueError, match="kind 'magic'"):
        reg.register(ProxyTool("x", "x", {"type": "object"}, remote, kind="magic"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="letters, digits"):
        reg.register(ProxyTool("bad name", "x", {"type": "object"}, remote))
    with pytest.raises(ValueError, match="type 'object'"):
        reg.register(ProxyTool("arr", "x", {"type": "array"}, remote))
    assert reg.unregister("weather") and not reg.unregister("weather")
    assert reg.kind("weather") == "other" and reg.get("weather") is None


def test_empty_registry(tmp_path: Path) -> None:
    assert ToolRegistry(tmp_path, builtins=False).names() == []


# --------------------------------------------------------------------------- read / write / edit


def test_read_whole_file_and_ranges(reg: ToolRegistry, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    whole = reg.run("read", {"path": "f.txt"})
    assert whole.content == "\n".join(f"line {i}" for i in range(1, 11)) and not whole.is_error
    assert whole.metadata == {"path": str(tmp_path.resolve() / "f.txt"), "total_lines": 10, "start_line": 1,
                              "end_line": 10, "truncated": False}
    part = reg.run("read", {"path": str(tmp_path / "f.txt"), "offset": 3, "limit": 2})
    assert part.content == "line 3\nline 4\n\n[Showing lines 3-4 of 10. Use offset=5 to read more.]"
    assert part.metadata["truncated"] is True
    past = reg.run("read", {"path": "f.txt", "offset": 11})
    assert past.is_error and "past the end" in past.content


def test_read_caps_and_refusals(reg: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wide.txt").write_text("x" * 5000 + "\nshort\n")
    wide = reg.run("read", {"path": "wide.txt"}).content
    assert wide.startswith("x" * read_mod.MAX_LINE_CHARS + " [... line cut at") and wide.endswith("\nshort")
    monkeypatch.setattr(read_mod, "MAX_OUTPUT_CHARS", 25)
    (tmp_path / "many.txt").write_text("".join(f"row{i:02}\n" for i in range(20)))
    capped = reg.run("read", {"path": "many.txt"})
    assert capped.content.startswith("row00\nrow01\nrow02\nrow03\n\n[Showing lines 1-4 of 20 (output limit")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01binary")
    assert "binary file" in reg.run("read", {"path": "bin.dat"}).content
    assert "is a directory; use ls" in reg.run("read", {"path": "."}).content
    assert reg.run("read", {"path": "missing.txt"}).content.startswith("file not found: ")
    (tmp_path / "empty.txt").write_text("")
    assert reg.run("read", {"path": "empty.txt"}).content == "(empty file)"
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
    assert reg.run("read", {"path": "latin.txt"}).content == "caf\ufffd"


def test_write_creates_and_overwrites(reg: ToolRegistry, tmp_path: Path) -> None:
    created = reg.run("write", {"path": "new/dir/a.txt", "content": "héllo\n"})
    assert not created.is_error and created.metadata["created"] is True and created.metadata["bytes"] == 7
    assert (tmp_path / "new/dir/a.txt").read_text() == "héllo\n"
    again = reg.run("write", {"path": "new/dir/a.txt", "content": "bye"})
    assert again.metadata["created"] is False and (tmp_path / "new/dir/a.txt").read_text() == "bye"
    assert reg.run("write", {"path": "new", "content": "x"}).is_error


def test_edit_unique_replacement_with_diff(reg: ToolRegistry, tmp_path: Path) -> None:
    target = tmp_path / "code.py"
    target.write_text("def f():\n    return 1\n\ndef g():\n    return 2\n")
    result = reg.run("edit", {"path": "code.py", "old_string": "return 2", "new_string": "return 3"})
    assert not result.is_error and "replaced 1 occurrence (first at line 5)" in result.content
    assert target.read_text().endswith("return 3\n")
    assert "-    return 2\n+    return 3\n" in result.metadata["diff"]
    assert result.metadata["replacements"] == 1


def test_edit_errors_say_what_to_do(reg: ToolRegistry, tmp_path: Path) -> None:
    target = tmp_path / "code.py"
    target.write_text("x = 1\ny = 1\nz = 1\n")
    many = reg.run("edit", {"path": "code.py", "old_string": " = 1", "new_string": " = 2"})
    assert many.is_error and "occurs 3 times" in many.content and "(lines 1, 2, 3)" in many.content
    assert many.metadata["occurrences"] == 3 and target.read_text() == "x = 1\ny = 1\nz = 1\n"
    none = reg.run("edit", {"path": "code.py", "old_string": "w = 1", "new_string": "w = 2"})
    assert none.is_error and none.content == f"old_string not found in {target.resolve()}"
    spaced = reg.run("edit", {"path": "code.py", "old_string": "x  =  1", "new_string": "x = 0"})
    assert "a match exists if whitespace is ignored" in spaced.content
    assert "identical" in reg.run("edit", {"path": "code.py", "old_string": "x", "new_string": "x"}).content
    assert "empty" in reg.run("edit", {"path": "code.py", "old_string": "", "new_string": "x"}).content
    assert "file not found" in reg.run("edit", {"path": "nope.py", "old_string": "a", "new_string": "b"}).content
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    assert "not UTF-8" in reg.run("edit", {"path": "bin", "old_string": "a", "new_string": "b"}).content
    everywhere = reg.run("edit", {"path": "code.py", "old_string": " = 1", "new_string": " = 2",
                                  "replace_all": True})
    assert not everywhere.is_error and everywhere.metadata["replacements"] == 3
    assert target.read_text() == "x = 2\ny = 2\nz = 2\n"


def test_edit_matches_crlf_files(reg: ToolRegistry, tmp_path: Path) -> None:
    target = tmp_path / "win.txt"
    target.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = reg.run("edit", {"path": "win.txt", "old_string": "one\ntwo", "new_string": "1\n2"})
    assert not result.is_error
    assert target.read_bytes() == b"1\r\n2\r\nthree\r\n"


# --------------------------------------------------------------------------- ls / glob / grep


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel, text in {"README.md": "# Title\nTODO: docs\n", "src/app.py": "import os\n# todo later\n",
                      "src/lib/util.py": "def util():\n    return 'TODO'\n", "src/lib/data.json": "{}",
                      ".git/config": "TODO in git", "node_modules/x/index.js": "TODO", ".hidden": "TODO"}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "src/blob.bin").write_bytes(b"TODO\x00binary")
    return tmp_path


def test_ls(reg: ToolRegistry, tree: Path) -> None:
    listing = reg.run("ls", {})
    assert listing.content == ".git/\n.hidden\nREADME.md\nnode_modules/\nsrc/"
    assert listing.metadata["count"] == 5
    assert reg.run("ls", {"path": "src"}).content == "app.py\nblob.bin\nlib/"
    assert "is a file" in reg.run("ls", {"path": "README.md"}).content
    assert reg.run("ls", {"path": "nope"}).is_error
    (tree / "empty").mkdir()
    assert reg.run("ls", {"path": "empty"}).content == "(empty directory)"


def test_glob(reg: ToolRegistry, tree: Path) -> None:
    assert reg.run("glob", {"pattern": "**/*.py"}).content == "src/app.py\nsrc/lib/util.py"
    assert reg.run("glob", {"pattern": "*.md"}).content == "README.md"
    assert reg.run("glob", {"pattern": "*.py"}).content.startswith("no files match '*.py'")
    assert reg.run("glob", {"pattern": "src/**/*.{py,json}"}).content == (
        "src/app.py\nsrc/lib/data.json\nsrc/lib/util.py")
    assert reg.run("glob", {"pattern": "*.py", "path": "src/lib"}).content == "util.py"
    assert reg.run("glob", {"pattern": "**/index.js"}).metadata["count"] == 0  # node_modules is ignored
    assert reg.run("glob", {"pattern": "*", "path": "nope"}).is_error
    absolute = reg.run("glob", {"pattern": f"{tree}/src/**/*.py", "path": "ignored-for-absolute-patterns"})
    assert absolute.content == "app.py\nlib/util.py" and absolute.metadata["path"] == str(tree / "src")


def test_globmatch_translation() -> None:
    cases = {"**/*.py": ["a.py", "x/y/a.py"], "a?c": ["abc"], "[!a]x": ["bx"], "{a,b/**}/z": ["a/z", "b/q/z"],
             "src/**": ["src/a", "src/a/b"]}
    rejects = {"**/*.py": ["a.pyc"], "a?c": ["a/c"], "[!a]x": ["ax"], "{a,b/**}/z": ["c/z"], "src/**": ["srcx"]}
    for pattern, paths in cases.items():
        regex = compile_glob(pattern)
        assert all(regex.match(p) for p in paths), pattern
        assert not any(regex.match(p) for p in rejects[pattern]), pattern
    assert compile_glob("*.py", basename_if_no_slash=True).match("deep/down/x.py")


def test_grep(reg: ToolRegistry, tree: Path) -> None:
    hits = reg.run("grep", {"pattern": "TODO"})
    assert hits.content == ".hidden:1: TODO\nREADME.md:2: TODO: docs\nsrc/lib/util.py:2:     return 'TODO'"
    assert hits.metadata["matches"] == 3 and hits.metadata["files_matched"] == 3
    loose = reg.run("grep", {"pattern": "todo", "ignore_case": True, "include": "*.py"})
    assert loose.content == "src/app.py:2: # todo later\nsrc/lib/util.py:2:     return 'TODO'"
    assert reg.run("grep", {"pattern": "import", "path": "src/app.py"}).content == "app.py:1: import os"
    capped = reg.run("grep", {"pattern": "TODO", "max_results": 1})
    assert capped.metadata["truncated"] is True and "stopped at 1 matches" in capped.content
    assert reg.run("grep", {"pattern": "nowhere"}).content.startswith("no matches for 'nowhere'")
    bad = reg.run("grep", {"pattern": "(unclosed"})
    assert bad.is_error and "invalid regular expression" in bad.content
    assert reg.run("grep", {"pattern": "x", "path": "missing"}).is_error
