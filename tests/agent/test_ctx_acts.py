"""ctx calls that act on the agent, through real extension processes: steer and abort a turn, background
subagents (status, kill), a new session, prompts answered by the application, and an act whose events skip
the acting extension."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from host.agent.prompts_ui import TerminalPrompts

from .harness import Rig, open_rig, write_ext

STEERER = """
import json
from ext_sdk import Extension
ext = Extension("steerer", permissions=["conversation", "agent"])

@ext.on("tool_call")
def steer(event, ctx):
    if "steer" in event.input:
        ctx.cancel_and_send("new direction")
    elif "abort" in event.input:
        ctx.abort()
    return None

@ext.command("spawn", "Start a background subagent.")
def spawn(args, ctx):
    return json.dumps(ctx.spawn_subagent(args, blocking=False))

@ext.command("status", "A subagent's status.")
def status(args, ctx):
    return json.dumps(ctx.subagent_status(args))

@ext.command("kill", "Kill a subagent.")
def kill(args, ctx):
    return json.dumps(ctx.kill_subagent(args))

@ext.command("new", "A new session.")
def new(args, ctx):
    return json.dumps(ctx.new_session(args))

@ext.command("ask", "Ask the user.")
def ask(args, ctx):
    return json.dumps([ctx.prompt_select("which?", ["red", "green"]), ctx.prompt_input("name?", default="x")])
"""


def _command(rig: Rig, name: str, args: str = "") -> Any:
    text, is_error = rig.session.run_extension_command(name, args)
    assert not is_error, text
    return json.loads(text)


def _wait_done(rig: Rig, subagent_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        status: dict[str, Any] = _command(rig, "status", subagent_id)
        if status["status"] != "running":
            return status
        time.sleep(0.05)
    raise AssertionError(f"subagent {subagent_id} still running after 20 s")


def test_steer_abort_and_background_subagents(tmp_path: Path, litellm_ready: Any) -> None:
    ext = write_ext(tmp_path, "steerer", STEERER, ["tool_call"], ["conversation", "agent"])
    rig = open_rig(tmp_path, [
        [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo steer"}}]}],
        [{"expect": {"last_contains": "new direction"}, "text": "going the new way"}],
        [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo abort"}}]}],
        [{"expect": {"last_contains": "background task"}, "text": "bg done"}],
        [{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 30"}}]}, {"text": "never said"}],
    ], [ext], script_options={"strict_turns": False})
    try:
        steered = rig.run("start")
        assert steered.stop_reason == "cancelled"
        (followup,) = steered.followups
        assert followup.response == "going the new way" and followup.stop_reason == "completed"
        aborted = rig.run("again")
        assert aborted.stop_reason == "cancelled" and not aborted.followups

        spawned = _command(rig, "spawn", "background task")
        assert spawned["status"] == "running" and spawned["id"].startswith("ext_steerer_")
        done = _wait_done(rig, spawned["id"])
        assert done == {"id": spawned["id"], "status": "completed", "response": "bg done", "error_msg": ""}
        assert _command(rig, "kill", spawned["id"]) is False  # already ended

        sleeper = _command(rig, "spawn", "sleep for a while")
        deadline = time.monotonic() + 20.0
        while not any(p["tool_call_id"] == sleeper["id"] and p["chunk_type"] == "tool_execution_start"
                      for p in rig.payloads("subagent_chunk")):
            assert time.monotonic() < deadline, "the background subagent never started its command"
            time.sleep(0.05)
        assert _command(rig, "kill", sleeper["id"]) is True
        killed = _wait_done(rig, sleeper["id"])
        assert killed["status"] == "cancelled" and "cancelled" in killed["error_msg"]
        ends = {p["tool_call_id"]: p for p in rig.payloads("subagent_end")}
        assert ends[spawned["id"]]["response"] == "bg done" and ends[sleeper["id"]]["error_msg"]
    finally:
        rig.session.close()


def test_new_session_and_prompts_answered_by_the_application(tmp_path: Path, litellm_ready: Any) -> None:
    ext = write_ext(tmp_path, "steerer", STEERER, ["tool_call"], ["conversation", "agent"])
    rig = open_rig(tmp_path, [
        [{"text": "first session"}],
        [{"expect": {"message_count": 2, "last_contains": "fresh start"}, "text": "second session"}],
    ], [ext], script_options={"strict_turns": False})
    session = rig.session
    session.services.serve_sessions(session.new_session)  # what AgentSession.open does (wired by the lead)
    try:
        rig.run("hello")
        first = session.path
        switched = _command(rig, "new", "fresh start")
        assert switched["switched"] is True and switched["reason"] == ""
        assert Path(switched["session_path"]) == session.path != first
        (turn,) = session.run_queued()  # the prompt is the new session's first message
        assert turn.response == "second session"
        answers = iter(["2", "bob"])
        session.services.prompts = TerminalPrompts(io.StringIO(), lambda prompt: next(answers))
        select, text = _command(rig, "ask")
        assert select == {"value": "green", "index": 1, "cancelled": False}
        assert text == {"value": "bob", "cancelled": False}
    finally:
        session.close()


SELF_COMPACT = """
import json
from ext_sdk import Extension
ext = Extension("compactor", permissions=["agent"])

@ext.on("before_compact", deadline_ms=300)
def summary(event, ctx):
    return {"summary": "my own summary"}

@ext.command("compact", "Compact now.")
def compact(args, ctx):
    return json.dumps(ctx.compact())
"""


def test_an_act_does_not_wait_for_the_acting_extensions_own_handlers(tmp_path: Path, litellm_ready: Any) -> None:
    ext = write_ext(tmp_path, "compactor", SELF_COMPACT, ["before_compact"], ["agent"])
    turns: list[list[dict[str, Any]]] = [[{"text": f"answer {i}"}] for i in range(4)]
    turns.append([{"text": "MODEL SUMMARY"}])
    rig = open_rig(tmp_path, turns, [ext], script_options={"strict_turns": False})
    try:
        for i in range(4):
            rig.run(f"question {i}")
        out = _command(rig, "compact")
        # its own before_compact handler was not asked (its channel is busy with this very call): the model
        # wrote the summary, and nothing waited for that handler's deadline to fail
        assert out["compacted"] is True and out["summary"] == "MODEL SUMMARY", out
    finally:
        rig.session.close()
