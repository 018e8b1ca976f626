"""The hook adapter's pure parts (issue 13): durations, the [hooks] table, answers, payloads, the importer.

No process starts here: hook runs are given as :class:`Run` records, and the
adapter is driven through ``FakeHost`` with a stand-in runner.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSIONS

from ext_sdk import hooks as engine
from ext_sdk.events import Policy
from ext_sdk.hooks import (
    FORMATS,
    HookHandler,
    HooksConfigError,
    Run,
    build_extension,
    decide,
    duration_ms,
    format_duration,
    hook_input,
    load_hooks,
)
from ext_sdk.testing import FakeHost
from host.errors import ManifestError
from host.exthost.manifest import load_manifest
from host.hooks import importer

# ---------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("2s", 2000), ("1.5m", 90_000), ("1h", 3_600_000),
                                          ("250us", 0.25), (" 3 s ", 3000), ("0ms", 0)])
def test_durations_take_a_unit(text: str, ms: float) -> None:
    assert duration_ms(text) == ms


@pytest.mark.parametrize(("value", "hint", "message"), [
    (5, "s", 'timeout = 5 has no unit: write "5s"'),
    (500, "ms", 'timeout = 500 has no unit: write "500ms"'),
    ("30", "s", 'timeout = "30" has no unit: write "30s"'),
    ("5 sec", "s", 'must be a duration such as "500ms" or "2s" (got "5 sec"'),
    ("-1s", "s", "must be a duration"),
    (True, "s", "must be a duration"),
])
def test_a_bare_number_says_which_unit_to_add(value: object, hint: str, message: str) -> None:
    with pytest.raises(engine.DurationError) as info:
        duration_ms(value, "timeout", hint)
    assert message in str(info.value)


def test_durations_print_in_the_largest_whole_unit() -> None:
    assert [format_duration(ms) for ms in (250, 1000, 90_000, 60_000, 3_600_000, 1500)] == \
        ["250ms", "1s", "90s", "1m", "1h", "1500ms"]


# ---------------------------------------------------------------------------------------------- [hooks] table


def _table(**handler: Any) -> dict[str, Any]:
    entry = {"event": "PreToolUse", "command": "./guard.sh", "timeout": "5s", **handler}
    return {"format": "claude", "handlers": [entry]}


@pytest.mark.parametrize(("table", "message"), [
    (_table(timeout=5), 'hooks.handlers[0].timeout = 5 has no unit: write "5s"'),
    ({"format": "gemini", "handlers": [{"event": "BeforeTool", "command": "x", "timeout": 5000}]},
     'hooks.handlers[0].timeout = 5000 has no unit: write "5000ms"'),
    (_table(timeout="0s"), "timeout must be greater than 0"),
    ({"format": "claude", "handlers": [{"event": "PreToolUse", "command": "x"}]},
     'timeout is missing: write one with a unit, such as "1m"'),
    (_table(event="Notification"), "'Notification': it does not map to kithost"),
    (_table(event="PreToolUze"), "known claude events: PreToolUse"),
    (_table(policy="maybe"), 'policy must be "open" or "closed"'),
    (_table(matcher="(Bash"), "is not a regular expression"),
    (_table(command=""), "command must be a shell command"),
    (_table(timeout_ms=5), "unknown key(s) ['timeout_ms']"),
    ({"format": "cursor", "handlers": []}, "hooks.format must be one of claude, gemini, codex"),
    ({"format": "claude", "handlers": []}, "non-empty list"),
])
def test_bad_hooks_tables_name_the_entry_and_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(HooksConfigError) as info:
        load_hooks(table)
    assert message in str(info.value)


def test_deadline_declared_to_kithost_is_derived_from_the_hook_timeouts() -> None:
    config = load_hooks({"format": "claude", "handlers": [
        {"event": "PreToolUse", "command": "a", "timeout": "2s"},
        {"event": "PreToolUse", "command": "b", "timeout": "1500ms", "policy": "open"},
        {"event": "Stop", "command": "c", "timeout": "1s"},
    ]})
    assert config.deadline_ms("tool_call") == 2000 + engine.DEADLINE_MARGIN_MS > 2000
    assert config.policy("tool_call") == "closed" and config.policy("agent_end") == "open"
    assert [h.policy for h in config.handlers] == ["closed", "open", "open"]  # gates default closed


def test_session_start_hooks_also_need_the_next_turn_start() -> None:
    config = load_hooks({"format": "gemini", "handlers": [{"event": "SessionStart", "command": "x", "timeout": "1s"}]})
    assert config.kithost_events == ("before_agent_start", "session_start")


def test_matchers_are_regexes_over_their_tool_names() -> None:
    handler = HookHandler("PreToolUse", "tool_call", "x", 1000, Policy.CLOSED, matcher="Edit|Write")
    assert handler.matches("Write") and not handler.matches("Bash") and not handler.matches("WriteX")
    assert HookHandler("PreToolUse", "tool_call", "x", 1000, Policy.CLOSED, matcher="*").matches("Bash")


# ---------------------------------------------------------------------------------------------- answers

GUARD = HookHandler("PreToolUse", "tool_call", "guard.sh", 5000, Policy.CLOSED)
OPEN = HookHandler("PreToolUse", "tool_call", "guard.sh", 5000, Policy.OPEN)


def _json(reply: dict[str, Any]) -> Run:
    return Run(0, json.dumps(reply), "")


@pytest.mark.parametrize(("handler", "run", "block", "reason"), [
    (GUARD, Run(2, "", "no rm -rf here\n"), True, "no rm -rf here"),
    (GUARD, Run(2, "", ""), True, "blocked by hook 'guard.sh'"),
    (GUARD, Run(0, "", ""), False, ""),
    (GUARD, Run(1, "", "jq: not found\n"), True, "hook 'guard.sh' failed (exit 1): jq: not found (fail-closed)"),
    (OPEN, Run(1, "", "jq: not found\n"), False, ""),
    (GUARD, Run(None, "", "", timed_out=True), True, "hook 'guard.sh' timed out after 5s (fail-closed)"),
    (OPEN, Run(None, "", "", timed_out=True), False, ""),
    (GUARD, Run(None, "", "", spawn_error="bash: Permission denied"), True, "could not start: bash: Permission"),
    (GUARD, _json({"decision": "block", "reason": "old style"}), True, "old style"),
    (GUARD, _json({"decision": "deny", "reason": "gemini style"}), True, "gemini style"),
    (GUARD, _json({"hookSpecificOutput": {"permissionDecision": "deny", "permissionDecisionReason": "new"}}),
     True, "new"),
    (GUARD, _json({"hookSpecificOutput": {"permissionDecision": "allow"}}), False, ""),
    (GUARD, _json({"hookSpecificOutput": {"permissionDecision": "ask", "permissionDecisionReason": "sure?"}}),
     True, "cannot prompt for: sure?"),
    (GUARD, _json({"hookSpecificOutput": {"updatedInput": {"command": "ls"}}}), True,
     "rewrote the tool input"),
    (GUARD, _json({"continue": False, "stopReason": "stop everything"}), True, "stop everything"),
])
def test_exit_status_and_json_decisions(handler: HookHandler, run: Run, block: bool, reason: str) -> None:
    answer = decide(handler, run)
    assert answer.block is block
    assert reason in answer.reason
    if handler.policy == "open" and run.code not in (0, 2):
        assert answer.warning  # an open failure is logged, never silent


def test_a_fail_closed_failure_is_marked_failed_a_decision_is_not() -> None:
    assert decide(GUARD, Run(None, "", "", timed_out=True)).failed
    assert not decide(GUARD, Run(2, "", "no")).failed


def test_context_and_messages() -> None:
    post = HookHandler("PostToolUse", "tool_result", "fmt", 5000, Policy.OPEN)
    answer = decide(post, _json({"systemMessage": "formatted", "hookSpecificOutput": {"additionalContext": "ctx"}}))
    assert (answer.block, answer.context, answer.message) == (False, "ctx", "formatted")
    prompt = HookHandler("UserPromptSubmit", "input", "ctx.sh", 5000, Policy.CLOSED)
    assert decide(prompt, Run(0, "branch: main\n", "")).context == "branch: main"  # plain stdout is context
    assert decide(GUARD, Run(0, "just talk\n", "")).context == ""  # ... only where the agent says so


# ---------------------------------------------------------------------------------------------- payloads

INFO = {"session_id": "s1", "session_path": "/s/1.jsonl", "cwd": "/proj", "model": "scripted/x"}


def _call(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return FakeHost.tool_call(tool, args)


def test_payload_per_format_with_tool_and_argument_names() -> None:
    claude = hook_input(FORMATS["claude"], GUARD, "tool_call", _call("write", {"path": "a.py", "content": "x"}),
                        INFO)
    assert claude == {"session_id": "s1", "transcript_path": "/s/1.jsonl", "cwd": "/proj",
                      "hook_event_name": "PreToolUse", "tool_name": "Write",
                      "tool_input": {"file_path": "a.py", "content": "x"}, "tool_use_id": "call_1"}
    before = HookHandler("BeforeTool", "tool_call", "x", 1, Policy.CLOSED)
    gemini = hook_input(FORMATS["gemini"], before, "tool_call", _call("bash", {"command": "ls"}), INFO)
    assert gemini["tool_name"] == "run_shell_command" and gemini["tool_input"] == {"command": "ls"}
    assert gemini["hook_event_name"] == "BeforeTool" and "timestamp" in gemini
    codex = hook_input(FORMATS["codex"], GUARD, "tool_call", _call("bash", {"command": "ls"}), INFO)
    assert codex["tool_name"] == "Bash" and codex["model"] == "scripted/x"
    other = hook_input(FORMATS["claude"], GUARD, "tool_call", _call("my_tool", {"q": 1}), INFO)
    assert other["tool_name"] == "my_tool" and other["tool_input"] == {"q": 1}  # not a built-in: unchanged


def test_post_tool_and_prompt_payloads() -> None:
    post = HookHandler("PostToolUse", "tool_result", "x", 1, Policy.OPEN)
    result = FakeHost.tool_result("bash", "hello\n", {"command": "echo hello"})
    data = hook_input(FORMATS["claude"], post, "tool_result", result, INFO)
    assert data["tool_response"] == {"stdout": "hello\n", "stderr": "", "interrupted": False, "isImage": False}
    prompt = HookHandler("UserPromptSubmit", "input", "x", 1, Policy.CLOSED)
    assert hook_input(FORMATS["claude"], prompt, "input", {"text": "hi", "source": "cli"}, INFO)["prompt"] == "hi"
    notify = HookHandler("notify", "agent_end", ("notify.py",), 1, Policy.OPEN)
    turn = hook_input(FORMATS["codex"], notify, "agent_end", {"response": "done"}, INFO)
    assert turn["type"] == "agent-turn-complete" and turn["last-assistant-message"] == "done"


# ---------------------------------------------------------------------------------------------- the extension


def _fake(answers: dict[str, Run], folder: Path, hooks: str, events: list[str]) -> tuple[FakeHost, list[Any]]:
    """A hooks extension in ``folder`` whose commands are answered from ``answers`` (no process)."""
    (folder / "extension.toml").write_text(
        f'name = "fake-hooks"\nruntime = "python"\nmain = "hooks_adapter.py"\nevents = {json.dumps(events)}\n'
        f'permissions = ["conversation"]\n[access]\nprocesses = true\n{hooks}')
    (folder / "hooks_adapter.py").write_text("")
    seen: list[Any] = []

    def runner(command: Any, stdin: str, timeout_s: float, cwd: str, env: Any, extra: Any) -> Run:
        seen.append((command, json.loads(stdin or extra), timeout_s, env))
        return answers[command]

    return FakeHost(build_extension(folder / "hooks_adapter.py", runner=runner)), seen


GUARD_TABLE = """
[hooks]
format = "claude"
[[hooks.handlers]]
event = "PreToolUse"
matcher = "Bash"
command = "guard"
timeout = "2s"
[[hooks.handlers]]
event = "PostToolUse"
command = "post"
timeout = "1s"
"""


def test_adapter_blocks_and_appends_context(tmp_path: Path) -> None:
    host, seen = _fake({"guard": Run(2, "", "not on my watch"),
                        "post": _json({"hookSpecificOutput": {"additionalContext": "lint: ok"}})},
                       tmp_path, GUARD_TABLE, ["tool_call", "tool_result"])
    out = host.emit("tool_call", FakeHost.tool_call("bash", {"command": "rm -rf /"}))
    assert out.stopped and "not on my watch" in out.reason and "[PreToolUse hook]" in out.reason
    assert seen[0][1]["tool_input"] == {"command": "rm -rf /"} and seen[0][2] == 2.0
    assert "KITHOST_EVENTS" not in seen[0][3] and seen[0][3]["KITHOST_EXTENSION_DIR"] == str(tmp_path.resolve())
    assert not host.emit("tool_call", FakeHost.tool_call("read", {"path": "x"})).stopped  # matcher: Bash only
    result = host.emit("tool_result", FakeHost.tool_result("bash", "out"))
    assert result.payload["content"] == "out\n\nlint: ok"


def test_adapter_fail_closed_post_tool_hook_withholds_the_output(tmp_path: Path) -> None:
    table = GUARD_TABLE.replace('command = "post"\ntimeout = "1s"', 'command = "post"\ntimeout = "1s"\n'
                                                                      'policy = "closed"')
    host, _ = _fake({"guard": Run(0, "", ""), "post": Run(None, "", "", timed_out=True)}, tmp_path, table,
                    ["tool_call", "tool_result"])
    result = host.emit("tool_result", FakeHost.tool_result("bash", "secret output"))
    assert "secret output" not in result.payload["content"] and result.payload["is_error"] is True
    assert "timed out after 1s (fail-closed)" in result.payload["content"]


# ---------------------------------------------------------------------------------------------- manifests


def test_bundled_hook_extensions_load_and_run_the_sdks_adapter() -> None:
    folders = sorted(p.parent for p in (EXTENSIONS / "hooks").glob("*/extension.toml"))
    assert {f.name for f in folders} >= {"claude_guard", "gemini_guard", "codex_guard"}
    for folder in folders:
        manifest = load_manifest(folder)
        assert manifest.hooks is not None and manifest.access.processes
        assert (folder / importer.LAUNCHER_FILE).read_text(encoding="utf-8") == importer.LAUNCHER


@pytest.mark.parametrize(("extra", "message"), [
    ('[access]\nprocesses = true\n[hooks]\nformat = "claude"\n[[hooks.handlers]]\nevent = "PreToolUse"\n'
     'command = "x"\ntimeout = 5\n', 'hooks.handlers[0].timeout = 5 has no unit: write "5s"'),
    ('[hooks]\nformat = "claude"\n[[hooks.handlers]]\nevent = "PreToolUse"\ncommand = "x"\ntimeout = "5s"\n',
     "[hooks] needs [access] processes = true"),
    ('[access]\nprocesses = true\n[hooks]\nformat = "claude"\n[[hooks.handlers]]\nevent = "Stop"\n'
     'command = "x"\ntimeout = "5s"\n', "events must list ['agent_end']"),
])
def test_manifest_hooks_table_is_checked_at_load(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "main.py").write_text("")
    (tmp_path / "extension.toml").write_text(f'name = "h"\nmain = "main.py"\nevents = ["tool_call"]\n{extra}')
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert message in str(info.value) and str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------------------------- importer

CLAUDE_SETTINGS = {"hooks": {
    "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "/x/guard.sh", "timeout": 5}]}],
    "PostToolUse": [{"matcher": "Write|Edit", "hooks": [{"type": "command", "command": "fmt"}]}],
    "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}],
    "Stop": [{"hooks": [{"type": "prompt", "prompt": "check"}]}],
}}


def test_import_claude_settings_maps_and_says_what_it_could_not(tmp_path: Path) -> None:
    found = importer.read_settings(CLAUDE_SETTINGS, "claude")
    assert found.handlers == [
        {"event": "PreToolUse", "matcher": "Bash", "command": "/x/guard.sh", "timeout": "5s", "policy": "closed"},
        {"event": "PostToolUse", "matcher": "Write|Edit", "command": "fmt", "timeout": "1m", "policy": "open"},
    ]
    assert any("Notification: not mapped" in s for s in found.skipped)
    assert any("'prompt' hook" in s for s in found.skipped)
    assert any("no timeout set, claude's default 1m" in n for n in found.notes)
    out = tmp_path / "ext"
    importer.write_extension(out, "my-hooks", found, ["/x"], tmp_path / "settings.json")
    manifest = load_manifest(out)
    assert manifest.name == "my-hooks" and manifest.events == ("tool_call", "tool_result")
    assert manifest.access.processes and [str(p) for p in manifest.access.read] == ["/x"]
    assert (out / importer.LAUNCHER_FILE).read_text() == importer.LAUNCHER
    assert sorted(p.name for p in out.iterdir()) == ["extension.toml", importer.LAUNCHER_FILE]


def test_import_gemini_timeouts_are_milliseconds_and_codex_notify_runs_after_a_turn() -> None:
    gemini = importer.read_settings({"hooks": {"BeforeTool": [{"matcher": "run_shell_command", "hooks": [
        {"type": "command", "command": "g.sh", "timeout": 1500, "name": "guard"}]}],
        "BeforeModel": [{"hooks": [{"type": "command", "command": "m.sh"}]}]}}, "gemini")
    assert gemini.handlers[0]["timeout"] == "1500ms" and gemini.handlers[0]["name"] == "guard"
    assert any("BeforeModel: not mapped" in s for s in gemini.skipped)
    codex = importer.read_settings({"notify": ["python3", "/n.py"], "hooks": {"PreToolUse": [
        {"matcher": "Bash", "hooks": [{"type": "command", "command": "c.py", "timeout": 30}]}]}}, "codex")
    assert [h["event"] for h in codex.handlers] == ["PreToolUse", "notify"]
    assert codex.handlers[1]["command"] == ["python3", "/n.py"] and codex.handlers[0]["timeout"] == "30s"
    assert load_hooks({"format": "codex", "handlers": codex.handlers}).kithost_events == ("agent_end", "tool_call")


def test_format_is_guessed_from_the_path_and_events() -> None:
    assert importer.detect_format(Path("/p/.gemini/settings.json"), {}) == "gemini"
    assert importer.detect_format(Path("/p/.codex/hooks.json"), {}) == "codex"
    assert importer.detect_format(Path("/p/config.toml"), {}) == "codex"
    assert importer.detect_format(Path("/p/x.json"), {"hooks": {"AfterTool": []}}) == "gemini"
    assert importer.detect_format(Path("/p/.claude/settings.json"), {}) == "claude"


PROMPT_TABLE = """
[hooks]
format = "claude"
[[hooks.handlers]]
event = "UserPromptSubmit"
command = "prompt"
timeout = "1s"
[[hooks.handlers]]
event = "SessionStart"
command = "start"
timeout = "1s"
"""


def test_prompt_hooks_block_the_turn_or_add_context(tmp_path: Path) -> None:
    answers = {"prompt": Run(0, "branch: main\n", ""), "start": _json({"hookSpecificOutput": {
        "hookEventName": "SessionStart", "additionalContext": "project rules: no force pushes"}})}
    host, seen = _fake(answers, tmp_path, PROMPT_TABLE, ["input", "session_start", "before_agent_start"])
    out = host.emit("input", {"text": "fix it", "source": "cli"})
    assert out.payload["text"] == "fix it\n\nbranch: main" and not out.stopped
    assert seen[-1][1]["prompt"] == "fix it" and seen[-1][1]["hook_event_name"] == "UserPromptSubmit"
    answers["prompt"] = Run(2, "", "prompt contains a key")
    out = host.emit("input", {"text": "sk-live-1", "source": "cli"})
    assert out.stopped and "prompt contains a key" in out.reason
    host.emit("session_start", {"session_id": "s1"})
    first = host.emit("before_agent_start", {"prompt": "p", "system_prompt": "sys", "inject_text": ""})
    assert first.payload["inject_text"] == "project rules: no force pushes"
    second = host.emit("before_agent_start", {"prompt": "p", "system_prompt": "sys", "inject_text": ""})
    assert second.payload["inject_text"] == ""  # once, with the first turn of the session


def test_codex_notify_gets_its_json_as_the_last_argument(tmp_path: Path) -> None:
    table = '[hooks]\nformat = "codex"\n[[hooks.handlers]]\nevent = "notify"\ncommand = ["notify"]\ntimeout = "2s"\n'
    host, seen = _fake({("notify",): Run(0, "", "")}, tmp_path, table, ["agent_end"])
    end = {"response": "all done", "stop_reason": "completed", "tool_call_count": 0, "tool_names": [],
           "llm_call_count": 1, "input_tokens_delta": 1, "output_tokens_delta": 1, "cache_read_tokens_delta": 0,
           "cache_write_tokens_delta": 0, "duration_ms": 5}
    host.emit("agent_end", end)
    command, data, _, _ = seen[0]
    assert command == ("notify",) and data["type"] == "agent-turn-complete"
    assert data["last-assistant-message"] == "all done"


def test_the_engine_needs_only_the_standard_library_and_the_sdk() -> None:
    """It runs inside the sandbox, which binds the SDK and not the host (nor litellm, pydantic ...)."""
    tree = ast.parse(Path(engine.__file__).read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
    outside = {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "ext_sdk"}
    assert outside == set(), outside
