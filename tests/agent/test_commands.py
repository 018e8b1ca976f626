"""``run_command`` / ``chat_command`` (what ``kithost run``/``chat`` call) and the user errors they raise."""

from __future__ import annotations

import io
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSIONS, MakeExt

from ext_sdk.events import EVENTS
from host.agent import AgentError, ModelError, ScriptError, SessionFileError
from host.agent.cli import ChatArgs, RunArgs, chat_command, run_command
from host.agent.cli.render import render_event_for_humans
from host.agent.scripted import SCRIPT_ENV
from host.errors import HostError, ManifestError

from .harness import MODEL, checked_host_config, fast_agent_config, write_script

TOOL_TURN = [[{"tool_calls": [{"name": "bash", "arguments": {"command": "echo hi"}}]}, {"text": "done"}]]


def _run(tmp_path: Path, turns: list[list[dict[str, Any]]], **kw: Any) -> tuple[int, str, str]:
    script = write_script(tmp_path / "run.json", turns)
    out, err = io.StringIO(), io.StringIO()
    args = RunArgs(kw.pop("prompt", "hello"), model=MODEL, script=script, cwd=tmp_path,
                   config=checked_host_config(), agent_config=kw.pop("agent_config", fast_agent_config()), **kw)
    rc = run_command(args, stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_run_json_writes_one_object_per_event_then_the_result(tmp_path: Path, litellm_ready: Any) -> None:
    session = tmp_path / "s.jsonl"
    rc, out, err = _run(tmp_path, TOOL_TURN, json=True, session=session,
                        extensions=[EXTENSIONS / "usage_budget"], agent_config=fast_agent_config(emit_windows=True))
    every = [json.loads(line) for line in out.splitlines()]
    lines = [line for line in every if not line["type"].startswith("kithost.")]  # kit's events and the result
    types = [line["type"] for line in lines]
    assert rc == 0
    assert types[0] == "session_start" and types[-2:] == ["session_shutdown", "result"]
    assert set(types[:-1]) <= set(EVENTS) and {"context_prepare", "prepare_step", "tool_output"} <= set(types)
    output = next(line for line in lines if line["type"] == "tool_output")
    assert output["chunk"] == "hi\n" and output["tool_name"] == "bash"
    result = lines[-1]
    assert result["response"] == "done" and result["stop_reason"] == "completed" and result["tool_names"] == ["bash"]
    assert result["session"] == str(session) and result["model"] == MODEL and result["cost"] > 0
    prints = [line for line in every if line["type"] == "kithost.print"]  # extension prints: JSON too, on stdout
    assert [(p["extension"], p["level"]) for p in prints] == [("usage-budget", "info")]
    assert prints[0]["text"].startswith("turn: 2 model call(s), 1 tool call(s)") and "usage-budget" not in err


def test_run_json_includes_the_window_events_with_no_extension_subscribed(tmp_path: Path,
                                                                         litellm_ready: Any) -> None:
    """``--json`` wants every event: it sets ``emit_windows`` (it used not to, so these were missing)."""
    rc, out, _ = _run(tmp_path, TOOL_TURN, json=True)
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert rc == 0 and types.count("context_prepare") == 1 and types.count("prepare_step") == 1


def test_run_human_streams_the_answer_and_exit_status_follows_the_turn(tmp_path: Path, litellm_ready: Any) -> None:
    rc, out, _ = _run(tmp_path, TOOL_TURN)
    assert rc == 0
    assert "→ bash echo hi\nhi\n  ✓ bash: 1 line(s)\ndone\n[done: 2 model call(s), 1 tool call(s)" in out
    rc, out, _ = _run(tmp_path, [[{"error": "AuthenticationError", "message": "bad key"}]])
    assert rc == 1 and "error: " in out and "bad key" in out


def test_user_errors_are_one_clear_line(tmp_path: Path, litellm_ready: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    script = write_script(tmp_path / "ok.json", [[{"text": "x"}]])
    monkeypatch.delenv(SCRIPT_ENV, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    bad_session = tmp_path / "bad.jsonl"
    bad_session.write_text('{"type": "session", "version": 1, "id": "x", "timestamp": "t"}\n{not json}\n')
    cases: list[tuple[dict[str, Any], type[HostError], str]] = [
        ({"script": tmp_path / "missing.json"}, ScriptError, "missing.json: cannot read it"),
        ({"script": None}, AgentError, "plays a script: pass --script FILE"),
        ({"model": "openai/gpt-4o", "script": None}, ModelError, "needs OPENAI_API_KEY"),
        ({"model": "gpt-4o", "script": script}, AgentError, "--script plays scripted models only"),
        ({"model": "no-such-model-xyz", "script": None}, ModelError, "unknown model 'no-such-model-xyz'"),
        ({"session": bad_session}, SessionFileError, "bad.jsonl, line 2: invalid JSON"),
        ({"extensions": [tmp_path / "nowhere"]}, ManifestError, "nowhere"),
        ({"cwd": tmp_path / "gone"}, AgentError, "does not exist"),
    ]
    for overrides, error, words in cases:
        fields: dict[str, Any] = {"model": MODEL, "script": script, "cwd": tmp_path, "config": checked_host_config()}
        fields.update(overrides)
        with pytest.raises(error) as info:
            run_command(RunArgs("hi", **fields), stdout=io.StringIO(), stderr=io.StringIO())
        message = str(info.value)
        assert words in message and "\n" not in message, (overrides, message)


def test_chat_reads_lines_runs_slash_commands_and_ctrl_c_cancels_only_the_turn(
        tmp_path: Path, litellm_ready: Any, make_ext: MakeExt) -> None:
    greeter = make_ext("greeter", """
from ext_sdk import Extension
ext = Extension("greeter")
@ext.command("greet", "Say hello.")
def greet(args, ctx):
    return "hello " + args
""", [], permissions=[])
    script = write_script(tmp_path / "chat.json", [
        [{"text": "hi there"}],
        [{"text": "this answer is interrupted", "chunk_size": 3}],
        [{"expect": {"message_count": 2, "last_contains": "again"}, "text": "from the fork"}],
        [{"expect": {"message_count": 2, "last_contains": "fresh"}, "text": "new session answer"}],
    ])
    lines = ["hello", "/model", "/model scripted/other", "interrupt me", "/fork", "/fork 1", "/compact", "/ext",
             "/greet bob", "/session", "/help", "/nope", "/fork zzz", "again", "/new fresh", "", "/exit",
             "never sent"]
    out, err = io.StringIO(), io.StringIO()
    args = ChatArgs(model=MODEL, script=script, extensions=[greeter], session=tmp_path / "chat.jsonl", cwd=tmp_path,
                    config=checked_host_config(), agent_config=fast_agent_config())
    interrupted: list[bool] = []

    def ctrl_c(event: str, data: dict[str, Any]) -> None:  # a real SIGINT in the middle of the second answer
        if event == "message_update" and data["chunk"] == "thi" and not interrupted:
            interrupted.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    from host.agent import session as session_module

    original = session_module.AgentSession.open

    def open_with_hook(*a: Any, **kw: Any) -> Any:
        sink = kw["on_event"]
        kw["on_event"] = lambda t, d: (ctrl_c(t, d), sink(t, d))
        return original(*a, **kw)

    session_module.AgentSession.open = open_with_hook  # type: ignore[method-assign]
    try:
        rc = chat_command(args, stdin=io.StringIO("\n".join(lines) + "\n"), stdout=out, stderr=err)
    finally:
        session_module.AgentSession.open = original  # type: ignore[method-assign]
    text, errors = out.getvalue(), err.getvalue()
    assert rc == 0 and interrupted
    assert "hi there\n" in text and "model: scripted/main" in text
    assert "[model: scripted/main → scripted/other (user)]" in text
    assert "[cancelled: 1 model call(s)" in text and "this answer is interrupted" not in text
    assert "   1  " in text and "  hello" in text and "branched before: hello" in text
    assert "not compacted: nothing to compact" in text
    assert "  greeter 0.1.0  ready" in text and "/greet  (from greeter)" in text and "hello bob" in text
    assert "session " in text and "commands:" in text and "unknown command /nope" in text
    assert "has no entry 'zzz'" in errors
    assert "from the fork" in text and "new session:" in text and "new session answer" in text
    assert "never sent" not in text


def test_run_human_shows_the_block_reason_of_a_blocked_call_whose_result_was_chained(
        tmp_path: Path, litellm_ready: Any, make_ext: MakeExt) -> None:
    guard = make_ext("guard", """
from ext_sdk import Block, Extension
ext = Extension("guard", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    return Block("no shell today")
""", ["tool_call"])
    auditor = make_ext("auditor", """
from ext_sdk import Extension, PatchResult
ext = Extension("auditor", permissions=["conversation"])
@ext.on("tool_result")
def audit(event, ctx):
    return PatchResult(content=event.content + "\\n[audited]")
""", ["tool_result"])
    rc, out, _ = _run(tmp_path, TOOL_TURN, extensions=[guard, auditor])
    assert rc == 0
    assert "→ bash echo hi\n  ✗ blocked by guard: Error: no shell today\n" in out
    assert "[audited]" not in out


def test_render_event_for_humans() -> None:
    render = render_event_for_humans
    assert render("message_update", {"chunk": "Hel"}) == "Hel"
    assert render("message_end", {"content": ""}) is None and render("message_end", {"content": "x"}) == "\n"
    assert render("tool_call", {"tool_name": "read", "parsed_args": {"path": "a.txt"}, "input": ""}) == "→ read a.txt\n"
    assert render("tool_call", {"tool_name": "x", "parsed_args": None, "input": "{bad"}) == "→ x {bad\n"
    failed = {"tool_name": "bash", "content": "a\nError: no", "is_error": True}
    assert render("tool_result", failed) == "  ✗ Error: no\n"
    assert render("tool_result", {"tool_name": "ls", "content": "a\nb", "is_error": False}) == "  ✓ ls: 2 line(s)\n"
    chained = {"tool_name": "bash", "content": "Error: no touching\n[audited by auditor]", "is_error": True,
               "metadata": json.dumps({"blocked": True, "blocked_by": "guard"})}
    assert render("tool_result", chained) == "  ✗ blocked by guard: Error: no touching\n"
    assert render("warnings", {"warnings": ["a", "b"]}) == "warning: a\nwarning: b\n"
    change = {"new_model": "b", "previous_model": "a", "source": "user"}
    assert render("model_change", change) == "[model: a → b (user)]\n"
    assert render("subagent_end", {"error_msg": ""}) == "[subagent done]\n"
    assert "cost unknown" in str(render("agent_end", {"stop_reason": "completed", "cost_delta": None}))
    assert render("agent_end", {"stop_reason": "handled", "cost_delta": 0.0}).startswith("[handled by an extension")  # type: ignore[union-attr]
    assert render("llm_usage", {}) is None and render("session_start", {"session_id": "x"}) is None


def test_ephemeral_session_is_removed_and_errors_create_nothing(tmp_path: Path, litellm_ready: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from host.agent import session as session_module

    made: list[str] = []
    real = tempfile.mkdtemp

    def mkdtemp(**kw: Any) -> str:
        made.append(real(**kw))
        return made[-1]

    monkeypatch.setattr(session_module.tempfile, "mkdtemp", mkdtemp)
    script = write_script(tmp_path / "e.json", [[{"text": "x"}]])
    fields: dict[str, Any] = {"script": script, "cwd": tmp_path, "config": checked_host_config()}
    assert run_command(RunArgs("hi", model=MODEL, **fields), stdout=io.StringIO(), stderr=io.StringIO()) == 0
    sessions = [d for d in made if Path(d).name.startswith("kithost-session-")]
    assert len(sessions) == 1 and not Path(sessions[0]).exists()
    made.clear()
    for session in (None, tmp_path / "typo.jsonl"):  # a user error creates nothing
        with pytest.raises(AgentError):
            run_command(RunArgs("hi", model="gpt-4o", session=session, **fields), stdout=io.StringIO(),
                        stderr=io.StringIO())
    assert made == [] and not (tmp_path / "typo.jsonl").exists()
