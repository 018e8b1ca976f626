"""Every result kind changes what the agent does — through real extension processes and the scripted provider.

The model's side is checked with the script's ``expect`` conditions (a step
whose conditions fail makes the turn end in error, so ``completed`` proves the
model received what the test says); the world's side with the file system and
the session file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import MakeExt, extension_pids

from host.agent.session_tree import SessionTree

from .harness import Rig, fast_agent_config, recorder

RigFactory = Callable[..., Rig]


def _tool_messages(rig: Rig) -> list[dict[str, Any]]:
    return [m for m in rig.session.tree.messages() if m["role"] == "tool"]


def test_blocked_tool_never_runs_and_the_model_gets_the_reason(rig: RigFactory, make_ext: MakeExt,
                                                               tmp_path: Path) -> None:
    guard = make_ext("guard", """
from ext_sdk import Block, Extension
ext = Extension("guard", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    if "touch" in event.parsed_args.get("command", ""):
        ctx.set_state("blocked", event.tool_call_id)
        return Block("no touching")
""", ["tool_call"])
    r = rig([[
        {"tool_calls": [{"name": "bash", "arguments": {"command": "echo fine > allowed.txt"}},
                        {"name": "bash", "arguments": {"command": "touch forbidden.txt"}}]},
        {"expect": {"last_role": "tool", "last_contains": "Error: no touching"}, "text": "ok"},
    ]], [guard])
    result = r.run("make files")
    assert result.stop_reason == "completed", result.error
    work = tmp_path / "work"
    assert (work / "allowed.txt").read_text() == "fine\n"
    assert not (work / "forbidden.txt").exists()  # the blocked command never ran
    assert r.state("guard", "blocked") == "call_1_1_1"
    started = [p["tool_call_id"] for p in r.payloads("tool_execution_start")]
    assert started == ["call_1_1_0"]  # no execution events for the blocked call
    blocked = r.payloads("tool_result")[1]
    assert blocked["content"] == "Error: no touching" and blocked["is_error"] is True
    assert json.loads(blocked["metadata"]) == {"blocked": True, "blocked_by": "guard"}
    assert _tool_messages(r)[1]["content"] == "Error: no touching"
    assert result.tool_names == ("bash", "bash")


def test_tool_result_chain_is_what_the_model_sees_and_the_session_stores(rig: RigFactory, make_ext: MakeExt,
                                                                         tmp_path: Path) -> None:
    redactor = make_ext("redactor", """
from ext_sdk import Extension, PatchResult
ext = Extension("redactor", permissions=["conversation"])
@ext.on("tool_result", priority=10)
def redact(event, ctx):
    return PatchResult(content=event.content.replace("sk-live-123", "[REDACTED]"))
""", ["tool_result"])
    marker = make_ext("marker", """
from ext_sdk import Extension, PatchResult
ext = Extension("marker", permissions=["conversation"])
@ext.on("tool_result", priority=20)
def mark(event, ctx):
    ctx.set_state("saw", event.content)
    return PatchResult(content=event.content + " (checked)", is_error=True)
""", ["tool_result"])
    r = rig([[
        {"tool_calls": [{"name": "bash", "arguments": {"command": "printf 'key=sk-live-%s' 123"}}]},
        {"expect": {"none_contains": "sk-live-123", "last_contains": "key=[REDACTED] (checked)"}, "text": "ok"},
    ]], [marker, redactor])
    result = r.run("show the key")
    assert result.stop_reason == "completed", result.error
    assert r.state("marker", "saw") == "key=[REDACTED]"  # the second handler saw the first one's output
    stored = [e for e in r.session.tree.entries() if e.type == "message" and e.data["message"]["role"] == "tool"]
    assert stored[0].data["message"]["content"] == "key=[REDACTED] (checked)" and stored[0].data["is_error"] is True
    assert "sk-live-123" not in (tmp_path / "session.jsonl").read_text()


def test_input_transform_reaches_the_model_and_the_session(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("expander", """
from ext_sdk import Extension, Transform
ext = Extension("expander", permissions=["conversation"])
@ext.on("input", priority=10)
def expand(event, ctx):
    return Transform(event.text.replace("@readme", "the README.md file"))
@ext.on("input", priority=20)
def shout(event, ctx):
    return Transform(event.text + "!")
""", ["input"])
    r = rig([[{"expect": {"last_role": "user", "last_contains": "summarise the README.md file!",
                          "none_contains": "@readme"}, "text": "ok"}]], [ext])
    result = r.run("summarise @readme")
    assert result.stop_reason == "completed", result.error
    assert r.payloads("before_agent_start")[0]["prompt"] == "summarise the README.md file!"
    assert r.session.tree.messages()[0]["content"] == "summarise the README.md file!"


def test_input_handled_stops_the_turn_before_the_model(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("commands", """
from ext_sdk import Extension, Handled
ext = Extension("commands", permissions=["conversation"])
@ext.on("input")
def handle(event, ctx):
    if event.text.startswith("!"):
        ctx.print("handled " + event.text)
        return Handled("a bang command")
""", ["input"])
    r = rig([[{"expect": {"message_count": 2, "last_contains": "normal"}, "text": "answered"}]], [ext])
    handled = r.run("!status")
    assert handled.stop_reason == "handled" and handled.reason == "a bang command"
    assert handled.llm_call_count == 0 and r.played() == 0  # the model was never called (kit's bug fixed)
    assert "agent_start" not in r.types() and r.types()[-1] == "agent_end"
    assert r.payloads("agent_end")[0]["stop_reason"] == "handled"
    assert r.session.tree.messages() == []  # nothing stored
    normal = r.run("normal")
    assert normal.stop_reason == "completed" and normal.response == "answered", normal.error


def test_before_agent_start_injects_text_and_replaces_the_system_prompt(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("persona", """
from ext_sdk import Extension, Inject
ext = Extension("persona", permissions=["conversation"])
@ext.on("before_agent_start")
def persona(event, ctx):
    if not ctx.get_state("done"):
        ctx.set_state("done", True)
        return Inject(text="CONTEXT: the repo uses tabs", system_prompt="You are a pirate.")
""", ["before_agent_start"])
    r = rig([
        [{"expect": {"system_contains": "You are a pirate.", "message_count": 3, "last_contains": "indent it"},
          "text": "arr"}],
        [{"expect": {"system_contains": "coding agent", "none_contains": "pirate", "any_contains": "CONTEXT"},
          "text": "back"}],
    ], [ext])
    first = r.run("indent it")
    assert first.stop_reason == "completed", first.error
    window = r.payloads("context_prepare")  # nobody subscribed: the window event is not built
    assert window == []
    entries = [e for e in r.session.tree.entries() if e.type == "message"]
    assert entries[0].data["message"] == {"role": "user", "content": "CONTEXT: the repo uses tabs"}
    assert entries[0].data["origin"] == "before_agent_start" and entries[1].data["message"]["content"] == "indent it"
    second = r.run("again")  # the system prompt was for one turn only; the injected text stays in the history
    assert second.stop_reason == "completed", second.error


def test_context_prepare_result_is_the_window_the_model_receives(rig: RigFactory, make_ext: MakeExt,
                                                                  tmp_path: Path) -> None:
    ext = make_ext("hider", """
from ext_sdk import Extension, ReplaceMessages
ext = Extension("hider", permissions=["conversation"])
@ext.on("context_prepare")
def hide(event, ctx):
    msgs = event.messages
    if len(msgs) < 3:
        return None
    return ReplaceMessages([msgs[0], {"index": -1, "role": "user", "content": "NOTE: older history hidden"},
                            msgs[-1]])
""", ["context_prepare"])
    r = rig([
        [{"text": "first answer"}],
        [{"expect": {"message_count": 3, "none_contains": "first question", "any_contains": "NOTE"},
          "tool_calls": [{"name": "ls", "arguments": {}}]},
         {"expect": {"message_count": 5, "none_contains": "first question", "last_role": "tool"}, "text": "done"}],
    ], [ext])
    assert r.run("first question").stop_reason == "completed"
    result = r.run("second question")
    assert result.stop_reason == "completed", result.error
    assert "first question" in (tmp_path / "session.jsonl").read_text()  # the history itself is untouched
    assert len(r.session.tree.messages()) == 6


def test_prepare_step_replaces_the_window_for_that_step_only(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("stepper", """
from ext_sdk import Extension, ReplaceMessages
ext = Extension("stepper", permissions=["conversation"])
@ext.on("prepare_step")
def note(event, ctx):
    if event.step_number == 2:
        return ReplaceMessages(list(event.messages) + [{"index": -1, "role": "user", "content": "STEP2 NOTE"}])
""", ["prepare_step"])
    r = rig([[
        {"tool_calls": [{"name": "ls", "arguments": {}}]},
        {"expect": {"last_role": "user", "last_contains": "STEP2 NOTE"},
         "tool_calls": [{"name": "ls", "arguments": {}}]},
        {"expect": {"none_contains": "STEP2 NOTE", "last_role": "tool"}, "text": "done"},
    ]], [ext])
    result = r.run("look twice")
    assert result.stop_reason == "completed", result.error
    assert "STEP2 NOTE" not in json.dumps(r.session.tree.messages())


def test_steering_is_injected_between_steps_before_prepare_step_and_queues_follow_ups(
        rig: RigFactory, make_ext: MakeExt, tmp_path: Path) -> None:
    steer = make_ext("steer", """
from ext_sdk import Extension
ext = Extension("steer", permissions=["conversation", "agent"])
@ext.on("tool_result")
def nudge(event, ctx):
    ctx.send_message("please also check the README")
@ext.on("prepare_step")
def look(event, ctx):
    ctx.set_state(f"window_{event.step_number}", [[m["role"], m["content"]] for m in event.messages])
@ext.on("agent_end")
def follow(event, ctx):
    if not ctx.get_state("followed"):
        ctx.set_state("followed", True)
        ctx.send_message("follow-up from agent_end")
""", ["tool_result", "prepare_step", "agent_end"], permissions=["conversation", "agent"])
    r = rig([
        [{"tool_calls": [{"name": "ls", "arguments": {}}]},
         {"expect": {"last_role": "user", "last_contains": "please also check the README"}, "text": "checked"},
         {"expect": {"last_role": "user", "last_contains": "and one more"}, "text": "one more done"}],
        [{"expect": {"last_role": "user", "last_contains": "follow-up from agent_end"}, "text": "followed up"}],
    ], [steer])
    fired: list[bool] = []

    def steer_during_last_step(event: Any) -> None:
        if not fired and "checked".startswith(event.chunk):
            fired.append(True)
            r.session.steer("and one more")  # queued while the last step streams: the turn takes another step

    r.session.host.on("message_update", steer_during_last_step)
    result = r.run("list things")
    assert result.stop_reason == "completed" and result.response == "one more done", result.error
    # injection first, then prepare_step sees it: the step-2 window ends with the tool result and the message
    window = r.state("steer", "window_2")
    assert [role for role, _ in window[-2:]] == ["tool", "user"]
    assert window[-1][1] == "please also check the README"
    assert r.state("steer", "window_3")[-1] == ["user", "and one more"]
    (follow,) = result.followups
    assert follow.stop_reason == "completed" and follow.response == "followed up", follow.error
    assert r.payloads("input")[-1] == {"text": "follow-up from agent_end", "source": "queue"}
    steered = [e for e in r.session.tree.entries() if e.data.get("origin") == "steer"]
    assert [e.data["steer_source"] for e in steered] == ["steer", "user"]


def test_model_change_from_an_extension_and_from_the_user(rig: RigFactory, make_ext: MakeExt) -> None:
    switcher = make_ext("switcher", """
from ext_sdk import Extension, HostCallError
ext = Extension("switcher", permissions=["conversation", "agent"])
@ext.on("tool_call")
def switch(event, ctx):
    try:
        ctx.set_model("no-such-provider-model-xyz")
    except HostCallError as exc:
        ctx.set_state("refused", str(exc))
    ctx.set_model("scripted/other")
""", ["tool_call"], permissions=["conversation", "agent"])
    r = rig([[{"tool_calls": [{"name": "ls", "arguments": {}}]}, {"text": "done"}], [{"text": "user model"}]],
            [switcher])
    assert r.run("go").stop_reason == "completed"
    assert "unknown model" in r.state("switcher", "refused")
    assert r.payloads("model_change") == [{"new_model": "scripted/other", "previous_model": "scripted/main",
                                           "source": "extension"}]
    assert [u["model"] for u in r.payloads("llm_usage")] == ["scripted/main", "scripted/other"]
    assert r.session.set_model("scripted/third") is True
    assert r.payloads("model_change")[-1]["source"] == "user"
    r.run("again")
    assert r.payloads("llm_usage")[-1]["model"] == "scripted/third"
    assert r.session.tree.current_model() == "scripted/third"


def test_fork_cancelled_or_done(rig: RigFactory, make_ext: MakeExt, tmp_path: Path) -> None:
    keeper = make_ext("keeper", """
from ext_sdk import Cancel, Extension
ext = Extension("keeper", permissions=["conversation"])
@ext.on("before_fork")
def keep(event, ctx):
    if "keep" in event.user_text:
        return Cancel("that message is pinned")
""", ["before_fork"])
    r = rig([[{"text": "answer one"}], [{"text": "answer two"}],
             [{"expect": {"message_count": 4, "none_contains": "second", "last_contains": "instead"},
               "text": "answer three"}]], [keeper])
    r.run("keep this")
    r.run("second")
    (keep_id, _), (second_id, _) = r.session.user_messages()
    leaf = r.session.tree.leaf_id
    cancelled = r.session.fork(keep_id)
    assert not cancelled.forked and cancelled.reason == "that message is pinned"
    assert r.session.tree.leaf_id == leaf  # nothing happened
    done = r.session.fork(second_id)
    assert done.forked and done.user_text == "second"
    assert r.payloads("before_fork")[-1] == {"target_id": second_id, "is_user_message": True, "user_text": "second"}
    result = r.run("instead")
    assert result.stop_reason == "completed", result.error
    tree = SessionTree.open(tmp_path / "session.jsonl")  # both branches are in the file
    assert sum(1 for e in tree.entries() if e.type == "message") == 6
    assert [m["content"] for m in tree.messages()] == ["keep this", "answer one", "instead", "answer three"]


def test_session_switch_cancelled_or_done_moves_the_state_sidecar(rig: RigFactory, make_ext: MakeExt,
                                                                  tmp_path: Path) -> None:
    ext = make_ext("sessions", """
from ext_sdk import Cancel, Extension
ext = Extension("sessions", permissions=["conversation"])
@ext.on("before_session_switch")
def ask(event, ctx):
    if "no" in event.initial_prompt:
        return Cancel("not now")
@ext.on("session_start")
def where(event, ctx):
    ctx.set_state("session", event.session_id)
""", ["before_session_switch", "session_start"])
    r = rig([[{"text": "one"}], [{"expect": {"message_count": 2, "last_contains": "yes please"}, "text": "fresh"}]],
            [ext])
    r.run("hello")
    first = r.session.path
    first_id = r.session.tree.session_id
    cancelled = r.session.new_session("no thanks")
    assert not cancelled.switched and cancelled.reason == "not now"
    assert r.session.path == first and "session_shutdown" not in r.types()
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["session.jsonl"]
    done = r.session.new_session("yes please")
    assert done.switched and done.path != first and done.turn is not None
    assert done.turn.stop_reason == "completed", done.turn.error
    second_id = r.session.tree.session_id
    i = r.types().index("session_shutdown")
    assert r.types()[i - 1:i + 2] == ["before_session_switch", "session_shutdown", "session_start"]
    assert r.payloads("session_start")[-1] == {"session_id": second_id}
    # the extensions' state follows the session: each sidecar holds its own session's id
    assert r.state("sessions", "session") == second_id
    assert r.session.host.state.path == done.path.with_suffix(".ext-state.json")
    old = json.loads(first.with_suffix(".ext-state.json").read_text())
    assert old["extensions"]["sessions"]["session"] == first_id
    back = r.session.switch_session(first)
    assert back.switched and r.session.tree.session_id == first_id
    assert r.state("sessions", "session") == first_id
    assert r.payloads("before_session_switch")[-1] == {"reason": "switch", "initial_prompt": ""}


COMPACTOR = """
from ext_sdk import Cancel, Extension, Summary
ext = Extension("compactor", permissions=["conversation"])
@ext.on("before_compact")
def decide(event, ctx):
    n = ctx.get_state("n", 0) + 1
    ctx.set_state("n", n)
    ctx.set_state("last", dict(event))
    if not event.is_automatic and n == 1:
        return Cancel("not yet")
    if not event.is_automatic:
        return Summary("EXTENSION SUMMARY of the old questions")
"""


def test_compaction_cancelled_or_with_the_extension_summary(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("compactor", COMPACTOR, ["before_compact"])
    r = rig([[{"text": "answer one"}], [{"text": "answer two"}], [{"text": "answer three"}],
             [{"expect": {"any_contains": "EXTENSION SUMMARY", "none_contains": ["old question one", "answer one"],
                          "message_count": 5}, "text": "after"}]],
            [ext], agent_config=fast_agent_config(compact_keep_messages=2))
    for prompt in ("old question one", "old question two", "recent question"):
        r.run(prompt)
    cancelled = r.session.compact()
    assert not cancelled.compacted and cancelled.reason == "not yet"
    assert not any(e.type == "compaction" for e in r.session.tree.entries())
    done = r.session.compact()
    assert done.compacted and done.summary_source == "extension" and done.messages_compacted == 4
    assert r.played() == 3  # the extension's summary replaced the model's: no summary call
    (entry,) = [e for e in r.session.tree.entries() if e.type == "compaction"]
    assert entry.data["summary"] == "EXTENSION SUMMARY of the old questions"
    result = r.run("next")  # system, summary, kept "recent question"/"answer three", "next"
    assert result.stop_reason == "completed", result.error


def test_automatic_compaction_at_the_threshold_with_the_model_summary(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("compactor", COMPACTOR, ["before_compact"])
    long_answer = "word " * 240  # ~300 tokens: the next turn starts above 80 % of a 400-token window
    r = rig([[{"text": long_answer}],
             [{"expect": {"last_contains": "first"}, "text": "MODEL SUMMARY: a long answer was given"}],
             [{"expect": {"any_contains": "MODEL SUMMARY", "last_contains": "second"}, "text": "ok"}]],
            [ext], agent_config=fast_agent_config(context_window=400, compact_keep_messages=1))
    assert r.run("first").stop_reason == "completed"
    assert not r.payloads("before_compact")
    result = r.run("second")
    assert result.stop_reason == "completed", result.error
    (event,) = r.payloads("before_compact")
    assert event["is_automatic"] is True and event["context_limit"] == 400 and event["usage_percent"] > 80
    assert r.state("compactor", "last")["is_automatic"] is True
    (entry,) = [e for e in r.session.tree.entries() if e.type == "compaction"]
    assert entry.data["summary"] == "MODEL SUMMARY: a long answer was given"
    assert result.llm_call_count == 2  # the summary call is counted in the turn that triggered it


def test_extension_tool_runs_inside_its_extension(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("toolbox", """
import os
from ext_sdk import Extension
ext = Extension("toolbox", permissions=["conversation"])
@ext.tool("whoami", "Says which process runs it.",
          {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]})
def whoami(args, ctx):
    return args["greeting"] + " from pid " + str(os.getpid())
""", ["tool_call"])
    r = rig([[
        {"expect": {"tools_include": ["whoami", "bash", "read", "subagent"]},
         "tool_calls": [{"name": "whoami", "arguments": {"greeting": "hello"}},
                        {"name": "whoami", "arguments": {}}]},
        {"expect": {"any_contains": "hello from pid"}, "text": "done"},
    ]], [ext])
    result = r.run("who runs tools?")
    assert result.stop_reason == "completed", result.error
    ok, bad = _tool_messages(r)
    toolbox = r.session.host.extension("toolbox")
    assert ok["content"].startswith("hello from pid ")
    assert int(ok["content"].removeprefix("hello from pid ")) in extension_pids(toolbox)
    assert toolbox.process is not None and toolbox.process.pid != __import__("os").getpid()
    assert "greeting" in bad["content"]  # arguments are checked against the tool's schema before it is invoked
    assert r.payloads("tool_call")[0]["tool_kind"] == "other"
    assert [p["tool_name"] for p in r.payloads("tool_execution_start")] == ["whoami", "whoami"]
    assert json.loads(r.payloads("tool_result")[0]["metadata"]) == {"extension": "toolbox"}


def test_cancel_stops_the_stream_and_the_running_command(rig: RigFactory, tmp_path: Path) -> None:
    r = rig([[{"text": "streaming a long answer", "chunk_size": 2}],
             [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo started; sleep 60", "timeout": 30}},
                              {"name": "bash", "arguments": {"command": "touch never.txt"}}]}],
             [{"text": "the next turn"}]])
    unregister = r.session.host.on("message_update", lambda ev: r.session.cancel())
    first = r.run("talk")
    unregister()
    assert first.stop_reason == "cancelled" and first.llm_call_count == 1
    assert r.payloads("agent_end")[-1]["stop_reason"] == "cancelled"
    assert len(r.payloads("message_update")) == 1  # stopped at the next chunk
    r.session.host.on("tool_output", lambda ev: r.session.cancel())
    second = r.run("run it")
    assert second.stop_reason == "cancelled"
    sleep_result, skipped = _tool_messages(r)
    assert "cancelled" in sleep_result["content"] and skipped["content"] == "Error: cancelled before it ran"
    assert not (tmp_path / "work" / "never.txt").exists()
    assert r.played() == 2  # neither turn went on to another step
    assert json.loads(r.payloads("tool_result")[0]["metadata"])["cancelled"] is True
    assert r.run("next").response == "the next turn"  # a cancel does not leak into the next turn


def test_step_limit_and_unparsable_arguments(rig: RigFactory) -> None:
    r = rig([[{"tool_calls": [{"name": "bash", "arguments": "{not json"}]},
              {"expect": {"last_contains": "not valid JSON"}, "tool_calls": [{"name": "ls", "arguments": {}}]}]],
            agent_config=fast_agent_config(max_steps=2))
    result = r.run("loop forever")
    assert result.stop_reason == "error" and "step limit (2" in result.error
    call = r.payloads("tool_call")[0]
    assert call["input"] == "{not json" and call["parsed_args"] is None
    assert r.payloads("error")[-1]["error"] == result.error


def test_messages_are_on_disk_as_they_happen_and_the_session_resumes(rig: RigFactory, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    r = rig([[{"tool_calls": [{"name": "ls", "arguments": {}}]}, {"text": "listed"}]])
    on_disk: list[list[str]] = []
    r.session.host.on("tool_call", lambda ev: on_disk.append(
        [json.loads(line).get("message", {}).get("role", "") for line in path.read_text().splitlines()]))
    r.run("list")
    assert on_disk == [["", "", "user", "assistant"]]  # header, model, prompt, the tool call: all written
    first_id = r.session.tree.session_id
    r.session.close()
    # resume: the model comes from the file, the history is what the model gets
    again = rig([[{"expect": {"message_count": 6, "last_contains": "resumed?"}, "text": "yes"}]],
                session_path=path, model=None)
    assert again.session.model == "scripted/main" and again.session.tree.session_id == first_id
    assert again.payloads("session_start") == [{"session_id": first_id}]
    assert again.run("resumed?").stop_reason == "completed"
    again.session.close()
    r2 = rig([], session_path=path, model="scripted/other")
    assert r2.payloads("model_change") == [{"new_model": "scripted/other", "previous_model": "scripted/main",
                                            "source": "user"}]


def test_ctx_calls_are_answered_by_the_agent(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("svc", """
from ext_sdk import Extension
ext = Extension("svc", permissions=["conversation", "session"])
@ext.on("tool_call")
def calls(event, ctx):
    entry = ctx.append_entry("note", {"call": event.tool_call_id})
    ctx.set_state("entries", ctx.get_entries("note"))
    ctx.set_state("entry", entry)
    ctx.set_state("messages", ctx.get_messages())
    ctx.set_state("info", ctx.get_info())
    ctx.print("hello from svc")
""", ["tool_call"], permissions=["conversation", "session"])
    r = rig([[{"tool_calls": [{"name": "ls", "arguments": {}}]}, {"text": "ok"}]], [ext])
    assert r.run("go").stop_reason == "completed"
    (entry,) = r.state("svc", "entries")
    assert entry["id"] == r.state("svc", "entry") and entry["data"] == {"call": "call_1_1_0"}
    messages = r.state("svc", "messages")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]  # the window as it is at tool_call
    assert messages[2]["tool_calls"][0]["name"] == "ls"
    info = r.state("svc", "info")
    assert info["session_path"] == str(r.session.path) and info["model"] == "scripted/main"
    assert info["session_id"] == r.session.tree.session_id
    assert ("svc", "plain", "hello from svc") in r.session.services.printed
    assert r.session.tree.get_entries("svc", "note")[0]["id"] == entry["id"]


def test_recorder_helper_works_without_conversation_events(rig: RigFactory, tmp_path: Path) -> None:
    """A recorder subscribed only to content-free events needs no 'conversation' permission."""
    ext = recorder(tmp_path, ["session_start", "step_start", "step_finish"], permissions=())
    r = rig([[{"text": "hi"}]], [ext])
    r.run("hello")
    assert [e for e, _ in r.log()] == ["session_start", "step_start", "step_finish"]


def test_unknown_price_is_cost_unknown_never_zero(rig: RigFactory) -> None:
    r = rig([[{"tool_calls": [{"name": "ls", "arguments": {}}]}, {"text": "done"}]],
            script_options={"pricing": None}, model="scripted/unpriced-model")
    result = r.run("how much?")
    assert result.stop_reason == "completed" and result.llm_call_count == 2
    assert [u["cost"] for u in r.payloads("llm_usage")] == [None, None]
    assert r.payloads("agent_end")[0]["cost_delta"] is None and result.cost is None
    assert any("cost unknown" in w for p in r.payloads("warnings") for w in p["warnings"])


def test_ctx_calls_from_the_notify_thread_while_the_turn_appends(rig: RigFactory, make_ext: MakeExt,
                                                                 tmp_path: Path) -> None:
    """Notify handlers run on the delivery thread: their ctx calls interleave with the agent's own appends."""
    ext = make_ext("busy", """
from ext_sdk import Extension
ext = Extension("busy", permissions=["conversation", "session", "agent"])
@ext.on("message_update", deadline_ms=5000)
def each_chunk(event, ctx):
    ctx.append_entry("chunk", event.chunk)
    ctx.set_state("windows", ctx.get_state("windows", 0) + len(ctx.get_messages()))
@ext.on("tool_output", deadline_ms=5000)
def each_line(event, ctx):
    ctx.append_entry("line", event.chunk)
""", ["message_update", "tool_output"], permissions=["conversation", "session", "agent"])
    text = "".join(f"word{i} " for i in range(60))
    r = rig([[{"text": text, "chunk_size": 3,
               "tool_calls": [{"name": "bash", "arguments": {"command": "for i in 1 2 3 4 5; do echo $i; done"}}]},
              {"text": "done"}]], [ext])
    result = r.run("talk a lot")
    assert result.stop_reason == "completed", result.error
    r.flush()
    assert r.session.host.extension("busy").stats.snapshot()["failures"] == {}
    chunks = r.session.tree.get_entries("busy", "chunk")
    assert "".join(c["data"] for c in chunks) == text + "done"
    assert r.state("busy", "windows") > 0
    r.session.close()
    tree = SessionTree.open(tmp_path / "session.jsonl")  # every line intact, every parent known
    assert [m["role"] for m in tree.messages()] == ["user", "assistant", "tool", "assistant"]
