"""kit's ctx API through real extension processes (issue 11 items 3–5): each call answered by the agent, a
refused call for every permission not granted, policies binding in subagents, ``before_model`` and the
``prepare_step`` tool choice / active tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ext_sdk.hostcalls import ALWAYS_GRANTED, HOST_CALLS

from .harness import Rig, open_rig, recorder, write_ext

PROBE = """
import json
from ext_sdk import Extension, HostCallError
ext = Extension("probe", permissions=["session", "conversation", "agent", "llm"])

@ext.command("probe", "Call the ctx API.")
def probe(args, ctx):
    out = {}
    out["usage"] = ctx.get_session_usage()
    out["stats"] = ctx.get_context_stats()
    out["idle"] = ctx.is_idle()
    out["models"] = ctx.get_models()[:1]
    out["caps"] = ctx.get_model_capabilities()
    branch = ctx.get_current_branch()
    out["branch"] = branch
    out["node"] = ctx.get_tree_node(branch[-1]["id"])
    out["missing_node"] = ctx.get_tree_node("nope")
    out["roots"] = ctx.get_children("")
    out["complete"] = ctx.complete("say something", system="be brief")
    out["summary"] = ctx.summarize_branch()
    out["sub"] = ctx.spawn_subagent("count to one")
    out["usage_after"] = ctx.get_session_usage()
    ctx.set_active_tools(["read", "ls"])
    out["tools"] = ctx.get_tools()
    try:
        ctx.set_active_tools(["no_such_tool"])
    except HostCallError as exc:
        out["bad_tools"] = str(exc)
    out["color"] = ctx.register_option("color", "red", "a colour")
    out["greeting"] = ctx.register_option("greeting", "hello")
    ctx.set_option("greeting", "hey")
    out["greeting_after"] = ctx.get_option("greeting")
    out["unknown_option"] = ctx.get_option("nope")
    out["confirm"] = ctx.prompt_confirm("sure?", default=True)
    out["select"] = ctx.prompt_select("which?", ["a", "b"])
    out["input"] = ctx.prompt_input("name?", default="x")
    ctx.set_status("phase", "probing", 5)
    first_user = next(n["id"] for n in branch if n["role"] == "user")
    out["navigate"] = ctx.navigate_to(first_user)
    out["navigate_bad"] = ctx.navigate_to("nope")
    out["compact"] = ctx.compact()
    return json.dumps(out)
"""


def _probe_turns() -> list[list[dict[str, Any]]]:
    return [
        [{"text": "hi there"}],
        [{"expect": {"last_contains": "say something", "system_contains": "be brief"}, "text": "completed text"}],
        [{"expect": {"last_contains": "hi there"}, "text": "SUMMARY of it"}],
        [{"expect": {"last_contains": "count to one"}, "text": "one"}],
        [{"expect": {"tools_exclude": ["bash"], "tools_include": ["read", "ls"]}, "text": "only reading now"}],
    ]


def test_every_agent_call_from_a_command(tmp_path: Path, litellm_ready: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITHOST_OPT_COLOR", "blue")
    probe = write_ext(tmp_path, "probe", PROBE, [], ["session", "conversation", "agent", "llm"])
    rig = open_rig(tmp_path, _probe_turns(), [probe], script_options={"strict_turns": False})
    session = rig.session
    try:
        assert rig.run("hello").response == "hi there"
        text, is_error = session.run_extension_command("probe")
        assert not is_error, text
        out = json.loads(text)
        assert out["usage"]["request_count"] == 1 and out["usage"]["total_output_tokens"] > 0
        assert out["usage_after"]["request_count"] == 4  # + complete, summary, the subagent's call
        assert out["stats"]["message_count"] >= 3 and out["stats"]["context_limit"] > 0
        assert out["idle"] is True
        assert out["models"][0]["model"] == "scripted/main" and out["models"][0]["current"] is True
        assert out["caps"]["model"] == "scripted/main" and out["caps"]["supports_tools"] is True
        assert [n["role"] for n in out["branch"] if n["type"] == "message"] == ["user", "assistant"]
        assert out["node"]["content"] == "hi there" and out["node"]["children"] == []
        assert out["missing_node"] is None and out["roots"] == [out["branch"][0]["id"]]
        assert out["complete"]["text"] == "completed text" and out["complete"]["model"] == "scripted/main"
        assert out["summary"] == "SUMMARY of it"
        assert out["sub"]["status"] == "completed" and out["sub"]["response"] == "one"
        assert out["sub"]["error_msg"] == ""
        enabled = {t["name"]: t["enabled"] for t in out["tools"]}
        assert enabled["read"] and enabled["ls"] and not enabled["bash"] and not enabled["subagent"]
        assert "unknown tool(s) 'no_such_tool'" in out["bad_tools"]
        assert out["color"] == "blue" and out["greeting"] == "hello" and out["greeting_after"] == "hey"
        assert out["unknown_option"] is None
        assert out["confirm"] == {"value": True, "cancelled": True}  # headless: nobody to ask
        assert out["select"]["cancelled"] and out["input"] == {"value": "x", "cancelled": True}
        assert session.services.status.items() == [("probe", "phase", "probing")]
        assert out["navigate"] == {"success": True, "error": ""}
        assert out["navigate_bad"]["success"] is False and "no entry 'nope'" in out["navigate_bad"]["error"]
        assert out["compact"]["compacted"] is False and "nothing to compact" in out["compact"]["reason"]
        # complete, summary and the subagent reported their spend as llm_usage (step 0 for the first two)
        usage = rig.payloads("llm_usage")
        assert [u["step_number"] for u in usage] == [1, 0, 0, 1]
        assert next(t for t, _ in rig.events if t.startswith("subagent_")) == "subagent_start"
        # navigate_to moved the leaf before the first user message; the active tools bind the next call
        assert rig.run("read only").response == "only reading now"
    finally:
        session.close()


GATE_COMPLETE = """
from ext_sdk import Extension
ext = Extension("asker", permissions=["conversation", "llm", "agent"])

@ext.on("tool_call", deadline_ms=10000)
def ask_model(event, ctx):
    answer = ctx.complete("is this safe: " + event.input)
    ctx.set_state("answer", answer)
    try:
        ctx.compact()
    except Exception as exc:
        ctx.set_state("compact_refused", str(exc))
    ctx.set_state("idle", ctx.is_idle())
    return None
"""


def test_complete_inside_a_turn_counts_in_agent_end_and_acts_needing_idle_are_refused(
        tmp_path: Path, litellm_ready: Any) -> None:
    asker = write_ext(tmp_path, "asker", GATE_COMPLETE, ["tool_call"], ["conversation", "llm", "agent"])
    rig = open_rig(tmp_path, [[
        {"text": "checking", "tool_calls": [{"name": "bash", "arguments": {"command": "echo fine"}}]},
        {"expect": {"last_contains": "is this safe"}, "text": "yes, safe"},
        {"expect": {"last_role": "tool", "last_contains": "fine"}, "text": "done"},
    ]], [asker], script_options={"strict_turns": False})
    try:
        result = rig.run("go")
        assert result.stop_reason == "completed" and result.response == "done"
        end = rig.payloads("agent_end")[-1]
        assert end["llm_call_count"] == 3  # two steps + the handler's complete
        assert [u["step_number"] for u in rig.payloads("llm_usage")] == [1, 0, 2]
        assert rig.state("asker", "answer")["text"] == "yes, safe"
        assert "refused while a turn runs" in rig.state("asker", "compact_refused")
        assert rig.state("asker", "idle") is False
    finally:
        rig.session.close()


REFUSED = """
import json
from ext_sdk import Extension, HostCallError
ext = Extension("nobody", permissions=[])

@ext.command("try", "Call everything.")
def try_all(args, ctx):
    out = {}
    for method in json.loads(args):
        try:
            ctx._call(method, {})
            out[method] = "answered"
        except HostCallError as exc:
            out[method] = str(exc)
    return json.dumps(out)
"""


def test_every_call_needing_a_permission_is_refused_without_it(tmp_path: Path, litellm_ready: Any) -> None:
    nobody = write_ext(tmp_path, "nobody", REFUSED, [], [])
    rig = open_rig(tmp_path, [[{"text": "unused"}]], [nobody])
    guarded = sorted(name for name, call in HOST_CALLS.items() if call.permission not in ALWAYS_GRANTED)
    assert {HOST_CALLS[n].permission for n in guarded} == {"session", "conversation", "agent", "llm"}
    try:
        text, is_error = rig.session.run_extension_command("try", json.dumps(guarded))
        assert not is_error, text
        out = json.loads(text)
        for method in guarded:
            needs = HOST_CALLS[method].permission
            assert f"{method}: permission denied — needs '{needs}'" in out[method], (method, out[method])
        assert rig.played() == 0  # no model call was made for a refused complete or subagent
    finally:
        rig.session.close()


POLICY = """
from ext_sdk import Block, Extension
ext = Extension("policy", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    seen = ctx.get_state("calls", [])
    seen.append({"tool": event.tool_name, "input": event.input, "subagent": event.get("subagent")})
    ctx.set_state("calls", seen)
    if "rm -rf" in event.input:
        return Block("policy: no recursive deletes")
    return None

@ext.on("tool_result")
def patch(event, ctx):
    seen = ctx.get_state("results", [])
    seen.append({"tool": event.tool_name, "content": event.content, "subagent": event.get("subagent")})
    ctx.set_state("results", seen)
    return None
"""


def test_a_parent_gate_blocks_a_command_delegated_to_a_subagent(tmp_path: Path, litellm_ready: Any) -> None:
    work = tmp_path / "work"
    (work / "precious").mkdir(parents=True)
    (work / "precious" / "data.txt").write_text("keep me")
    policy = write_ext(tmp_path, "policy", POLICY, ["tool_call", "tool_result"])
    rig = open_rig(tmp_path, [
        [{"text": "delegating", "tool_calls": [{"name": "subagent", "arguments": {"task": "clean up precious"}}]}],
        [  # the subagent's turn: the blocked command, then it reports what it got
            {"expect": {"last_contains": "clean up precious"}, "text": "removing",
             "tool_calls": [{"name": "bash", "arguments": {"command": "rm -rf precious"}}]},
            {"expect": {"last_role": "tool", "last_contains": "policy: no recursive deletes"},
             "text": "I could not: policy: no recursive deletes"},
        ],
        [{"expect": {"last_role": "tool", "last_contains": "policy: no recursive deletes"}, "text": "blocked, ok"}],
    ], [policy], script_options={"strict_turns": False}, cwd=work)
    try:
        result = rig.run("clean up")
        assert result.response == "blocked, ok"
        assert (work / "precious" / "data.txt").read_text() == "keep me"  # the command never ran
        calls = rig.state("policy", "calls")
        assert [c["tool"] for c in calls] == ["subagent", "bash"]
        assert calls[0]["subagent"] is None
        sub_id = rig.payloads("subagent_start")[0]["tool_call_id"]
        assert calls[1]["subagent"] == {"id": sub_id, "task": "clean up precious"}
        results = rig.state("policy", "results")
        assert results[0]["tool"] == "bash" and results[0]["subagent"]["id"] == sub_id
        assert results[0]["content"] == "Error: policy: no recursive deletes"
        assert rig.payloads("subagent_end")[0]["error_msg"] == ""
        # the application saw the subagent's call too, marked, with the block applied to its result
        assert [(d["tool_name"], d["subagent"]) for d in rig.payloads("tool_call")] == [
            ("subagent", None), ("bash", {"id": sub_id, "task": "clean up precious"})]
        assert rig.payloads("tool_result")[0]["content"] == "Error: policy: no recursive deletes"
    finally:
        rig.session.close()


HOOKS = """
from ext_sdk import Extension
ext = Extension("hooks", permissions=["conversation"])

@ext.on("prepare_step")
def narrow(event, ctx):
    return {"active_tools": ["read"], "tool_choice": "none"}

@ext.on("before_model")
def model(event, ctx):
    seen = ctx.get_state("seen", [])
    seen.append({"step": event.step_number, "tools": event.tools, "tool_choice": event.tool_choice,
                 "params": event.params, "model": event.model})
    ctx.set_state("seen", seen)
    if any("canned" in m["content"] for m in event.messages if m["role"] == "user"):
        return {"response": {"content": "a canned answer"}}
    if event.step_number == 2:
        return {"params": {"temperature": 0.25}}
    return None
"""


def test_before_model_sees_and_changes_each_request_or_answers_it(tmp_path: Path, litellm_ready: Any) -> None:
    hooks = write_ext(tmp_path, "hooks", HOOKS, ["prepare_step", "before_model"])
    rig = open_rig(tmp_path, [
        [{"text": "looking", "tool_calls": [{"name": "bash", "arguments": {"command": "echo hi"}}]},
         {"expect": {"tools_include": ["read"], "tools_exclude": ["bash"]}, "text": "done"}],
    ], [hooks], script_options={"strict_turns": False})
    try:
        assert rig.run("look").response == "done"
        seen = rig.state("hooks", "seen")
        assert seen[0]["step"] == 1 and "bash" in seen[0]["tools"] and seen[0]["tool_choice"] is None
        assert seen[1] == {"step": 2, "tools": ["read"], "tool_choice": "none", "params": {},
                           "model": "scripted/main"}
        assert rig.played() == 2
        canned = rig.run("give me the canned one")
        assert canned.response == "a canned answer" and canned.stop_reason == "completed"
        assert rig.played() == 2  # the provider was not called
        end = rig.payloads("agent_end")[-1]
        assert end["llm_call_count"] == 0
        assert rig.payloads("message_end")[-1]["content"] == "a canned answer"
        assert rig.session.tree.messages()[-1] == {"role": "assistant", "content": "a canned answer"}
    finally:
        rig.session.close()


def test_the_recorder_sees_before_model(tmp_path: Path, litellm_ready: Any) -> None:
    rec = recorder(tmp_path, ["before_model"])
    rig: Rig = open_rig(tmp_path, [[{"text": "plain"}]], [rec])
    try:
        rig.run("hi")
        log = rig.log()
        assert [e for e, _ in log] == ["before_model"]
        assert log[0][1]["messages"][-1]["content"] == "hi" and log[0][1]["step_number"] == 1
    finally:
        rig.session.close()
