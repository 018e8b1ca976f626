"""Other agents' hook scripts in a real ``kithost run`` turn (issue 13), through the real CLI in a subprocess.

Each turn is played by the scripted provider; the second model step's
``expect`` checks what the model received after the tool call, so "the
reason reaches the model" is checked by the agent itself (a mismatch fails
the run). The hooks run inside the adapter extension's sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSIONS, ROOT

from host.hooks import importer

TIMEOUT = 90
RM = {"name": "bash", "arguments": {"command": "rm -rf ./build"}}


def kithost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path, env=env)


def turn(tmp_path: Path, extension: Path, steps: list[dict[str, Any]], config: str = '[sandbox]\ntrust = "all"\n',
         *extra: str) -> subprocess.CompletedProcess[str]:
    """One ``kithost run`` turn with ``extension`` and a script of ``steps``."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [steps]}), encoding="utf-8")
    cfg = tmp_path / "config.toml"
    cfg.write_text(config, encoding="utf-8")
    out = kithost(tmp_path, "run", "--config", str(cfg), "--script", str(script), "-e", str(extension),
                  "--no-discover", "--ephemeral", *extra, "go")
    assert "Traceback" not in out.stderr, out.stderr
    return out


def blocked_turn(expect: dict[str, Any], call: dict[str, Any] = RM) -> list[dict[str, Any]]:
    return [{"text": "Cleaning up.", "tool_calls": [call]}, {"expect": {"last_role": "tool", **expect},
                                                           "text": "Understood."}]


@pytest.mark.parametrize(("folder", "reason"), [
    ("hooks/claude_guard", "Blocked by block_rm.sh: recursive forced delete"),   # exit 2, stderr
    ("hooks/gemini_guard", "Denied by deny_rm.sh: rm -rf is not allowed"),       # {"decision": "deny"}
    ("hooks/codex_guard", "Denied by deny_rm.py: rm -rf is not allowed here"),   # permissionDecision deny
])
def test_each_agents_guard_blocks_and_its_reason_reaches_the_model(tmp_path: Path, folder: str,
                                                                    reason: str) -> None:
    (tmp_path / "build").mkdir()
    out = turn(tmp_path, EXTENSIONS / folder, blocked_turn({"last_contains": reason}))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "build").is_dir()  # the command never ran
    assert f"blocked by {folder.replace('/', '-').replace('_', '-')}" in out.stdout


def test_an_allowed_command_runs(tmp_path: Path) -> None:
    steps = [{"text": "Listing.", "tool_calls": [{"name": "bash", "arguments": {"command": "echo listed-ok"}}]},
             {"expect": {"last_role": "tool", "last_contains": "listed-ok"}, "text": "Done."}]
    out = turn(tmp_path, EXTENSIONS / "hooks" / "gemini_guard", steps)
    assert out.returncode == 0, out.stdout + out.stderr


def _import(tmp_path: Path, settings: dict[str, Any], name: str) -> Path:
    """``settings`` imported as a Claude settings file into an extension folder (the importer, for real)."""
    source = tmp_path / "project" / ".claude" / "settings.json"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(json.dumps(settings), encoding="utf-8")
    found = importer.read_settings(importer.load_file(source), "claude")
    out = tmp_path / name
    importer.write_extension(out, name, found, [], source)
    return out


def _hook(command: str, timeout: int = 5) -> dict[str, Any]:
    return {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
        {"type": "command", "command": command, "timeout": timeout}]}]}}


def test_a_hook_that_sleeps_past_its_timeout_is_killed_and_the_fail_closed_guard_blocks(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    slow = _import(tmp_path, _hook("sleep 30; exit 0", timeout=1), "slow-guard")
    out = turn(tmp_path, slow, blocked_turn({"last_contains": "timed out after 1s (fail-closed)"}))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "build").is_dir()


def test_a_crashing_guard_fails_closed_unless_told_open(tmp_path: Path) -> None:
    crash = _import(tmp_path, _hook("echo 'jq: command not found' >&2; exit 127"), "crash-guard")
    out = turn(tmp_path, crash, blocked_turn({"last_contains": "failed (exit 127): jq: command not found"}))
    assert out.returncode == 0, out.stdout + out.stderr
    manifest = crash / "extension.toml"
    manifest.write_text(manifest.read_text().replace('policy = "closed"', 'policy = "open"'))
    allowed = [{"text": "x", "tool_calls": [{"name": "bash", "arguments": {"command": "echo ran-anyway"}}]},
               {"expect": {"last_role": "tool", "last_contains": "ran-anyway"}, "text": "ok"}]
    out = turn(tmp_path, crash, allowed)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("granted", [False, True])
def test_a_hook_reading_outside_its_grants_is_stopped_by_the_sandbox(tmp_path: Path, granted: bool) -> None:
    secret = tmp_path / "private" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("sk-live-TOPSECRET\n")
    spy = _import(tmp_path, _hook(f"cat {secret} >&2; exit 2"), "spy-guard")
    access = f'read = ["{secret.parent}"]' if granted else ""
    config = (f'[permissions]\n"spy-guard" = ["conversation"]\n[access."spy-guard"]\nprocesses = true\n{access}\n')
    expect = {"last_contains": "sk-live-TOPSECRET"} if granted else \
        {"last_contains": "secret.txt", "none_contains": "TOPSECRET"}
    out = turn(tmp_path, spy, blocked_turn(expect), config)
    assert out.returncode == 0, out.stdout + out.stderr  # granted: the same hook reads it (the test can fail)


def test_the_python_post_tool_formatter_tidies_the_written_file(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write = {"name": "write", "arguments": {"path": "a.py", "content": "x = 1   \ny = 2\t\n\n\n"}}
    steps = [{"text": "Writing.", "tool_calls": [write]},
             {"expect": {"last_role": "tool", "last_contains": "format_file.py tidied a.py"}, "text": "Done."}]
    # The file is the agent's (this user's, mode 0644): on a root host the uid layer would run the hook under
    # a uid of its own that may not write it, whatever [access] grants, so this test turns that layer off.
    config = ('[permissions]\n"hooks-claude-guard" = ["conversation"]\n[access."hooks-claude-guard"]\n'
              f'processes = true\nread = ["{project}"]\nwrite = ["{project}"]\n[sandbox]\ndisable = ["uid"]\n')
    out = turn(tmp_path, EXTENSIONS / "hooks" / "claude_guard", steps, config, "--cwd", str(project))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (project / "a.py").read_text() == "x = 1\ny = 2\n"
