"""``kithost hooks import``: the argparse command the lead wires into ``host/cli.py``, driven in-process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from host.errors import HostError
from host.exthost.manifest import load_manifest
from host.hooks import command


def run(*argv: str) -> int:
    common = argparse.ArgumentParser(add_help=False)
    parser = argparse.ArgumentParser(prog="kithost")
    sub = parser.add_subparsers(dest="command")
    command.add_parser(sub, common)
    return command.run(parser.parse_args(["hooks", "import", *argv]))


def test_import_writes_a_loadable_folder_and_prints_what_it_mapped(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "proj"
    hooks_dir = project / ".claude" / "hooks"
    hooks_dir.mkdir(parents=True)
    (hooks_dir / "guard.sh").write_text("#!/bin/sh\nexit 0\n")
    settings = project / ".claude" / "settings.json"
    settings.write_text(json.dumps({"hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": '"$CLAUDE_PROJECT_DIR"/.claude/hooks/guard.sh', "timeout": 3}]}],
        "Notification": [{"hooks": [{"type": "command", "command": "notify-send x"}]}],
    }}))
    out = tmp_path / "ext"
    assert run(str(settings), "--out", str(out), "--name", "team-hooks") == 0
    printed = capsys.readouterr().out
    assert "mapped: PreToolUse [Bash] → tool_call  timeout 3s, policy closed" in printed
    assert "not imported: Notification: not mapped (kithost sends no idle or permission notifications)" in printed
    assert f"read access asked for: {hooks_dir}" in printed
    manifest = load_manifest(out)
    assert manifest.name == "team-hooks" and manifest.hooks is not None
    assert manifest.hooks.format.name == "claude" and [str(p) for p in manifest.access.read] == [str(hooks_dir)]


def test_gemini_format_is_guessed_and_milliseconds_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / ".gemini" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"hooks": {"AfterTool": [{"matcher": "write_file", "hooks": [
        {"type": "command", "command": "fmt.sh", "timeout": 2500}]}]}}))
    assert run(str(settings), "--out", str(tmp_path / "g")) == 0
    assert "AfterTool [write_file] → tool_result  timeout 2500ms, policy open" in capsys.readouterr().out
    assert load_manifest(tmp_path / "g").name == "gemini-hooks"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"hooks": {"Notification": [{"hooks": [{"type": "command", "command": "x"}]}]}}),
     "no claude command hooks to import"),
    (json.dumps({"hooks": []}), "'hooks' must be an object"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(content)
    with pytest.raises(HostError) as info:
        run(str(settings), "--format", "claude", "--out", str(tmp_path / "x"))
    assert message in str(info.value) and "\n" not in str(info.value)
