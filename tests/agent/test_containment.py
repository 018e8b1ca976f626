"""The agent survives an extension that crashes, hangs or returns junk in every event, with the policy applied.

* Fail-open (the default for chain/notify, declared for gates here): the full
  34-event scenario runs exactly as it does with a well-behaved extension —
  same turns, same answers, same tool runs, fork, switch and compaction — and
  every failure is counted against the extension.
* Fail-closed (the default for gates): a failing ``tool_call`` handler is a
  block (the command does not run), ``input`` is handled (no model call),
  ``before_fork``/``before_session_switch``/``before_compact`` cancel, a
  ``tool_result`` handler withholds the output, a ``context_prepare`` handler
  ends the turn with an error before the model is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MakeExt

from host import Deadlines

from .harness import (
    ALL_EVENTS,
    Rig,
    check_scenario_behaviour,
    checked_host_config,
    fast_agent_config,
    misbehaving,
    run_full_scenario,
)

RigFactory = Callable[..., Rig]


@pytest.mark.parametrize("mode", ["raise", "exit", "hang", "junk"])
def test_agent_survives_an_extension_failing_in_every_event(mode: str, tmp_path: Path, litellm_ready: object) -> None:
    bad = misbehaving(tmp_path, mode, policy="open", deadline_ms=50, sleep=1.0)
    config = checked_host_config(deadlines=replace(Deadlines(), notify_batch_ms=300, shutdown_ms=300))
    out = run_full_scenario(tmp_path, [bad], config)
    check_scenario_behaviour(out)  # same agent behaviour as with a well-behaved extension
    (info,) = out.ext_info
    stats = info["stats"]
    assert stats["fail_closed"] == 0 and stats["fail_open"] > 0
    if mode == "exit":
        # crashed at its first event; supervision restarts it (after a backoff), every later event failed at once
        assert "exited with status 1" in info["last_exit"] and info["state"] != "stopped"
        assert {f.kind for f in out.failures} <= {"not_running", "disconnected", "timeout", "busy"}
    else:
        assert info["state"] == "ready" or (mode == "hang" and info["state"] == "degraded")
        kinds = {f.kind for f in out.failures}
        assert kinds <= ({"timeout", "busy", "budget"} if mode == "hang" else {"error"}), kinds
        # every gate/chain event of the turns was asked and failed open
        assert {f.event for f in out.failures} >= {"input", "before_agent_start", "context_prepare", "tool_call",
                                                   "tool_result", "prepare_step"}
        assert all(f.handler == "bad" and f.policy == "open" for f in out.failures)


CLOSED = """
from ext_sdk import Extension
ext = Extension("strict", permissions=["conversation"])

@ext.on("input")
def once(event, ctx):
    if "refuse" in event.text:
        raise RuntimeError("input checker crashed")

@ext.on("tool_call")
def gate(event, ctx):
    if "touch" in event.input:
        raise RuntimeError("gate crashed")

@ext.on("tool_result", policy="closed")
def redact(event, ctx):
    if "SECRET" in event.content:
        raise RuntimeError("redactor crashed")

@ext.on("before_fork")
def fork(event, ctx):
    raise RuntimeError("fork checker crashed")

@ext.on("before_session_switch")
def switch(event, ctx):
    raise RuntimeError("switch checker crashed")

@ext.on("before_compact")
def compact(event, ctx):
    raise RuntimeError("compact checker crashed")
"""


def test_fail_closed_policy_blocks_handles_cancels_and_withholds(rig: RigFactory, make_ext: MakeExt,
                                                                 tmp_path: Path) -> None:
    ext = make_ext("strict", CLOSED, ["input", "tool_call", "tool_result", "before_fork", "before_session_switch",
                                      "before_compact"])
    r = rig([[
        {"tool_calls": [{"name": "bash", "arguments": {"command": "touch made.txt"}},
                        {"name": "bash", "arguments": {"command": "printf 'SEC%s' RET-42"}}]},
        {"expect": {"none_contains": "SECRET-42", "any_contains": ["strict failed", "withheld"]}, "text": "ok"},
    ]], [ext], agent_config=fast_agent_config(compact_keep_messages=2))
    refused = r.run("refuse this")
    assert refused.stop_reason == "handled" and "strict" in refused.reason and r.played() == 0
    assert [f.policy for f in refused.failures] == ["closed"]
    result = r.run("go")
    assert result.stop_reason == "completed", result.error
    assert not (tmp_path / "work" / "made.txt").exists()  # fail-closed tool_call = blocked
    blocked, withheld = [m["content"] for m in r.session.tree.messages() if m["role"] == "tool"]
    assert blocked.startswith("Error: strict failed (error:") and "gate crashed" in blocked
    assert withheld.startswith("Error: the tool's output was withheld") and "SECRET" not in withheld
    assert "SECRET-42" not in (tmp_path / "session.jsonl").read_text()
    ((user_id, _),) = r.session.user_messages()
    leaf = r.session.tree.leaf_id
    fork = r.session.fork(user_id)
    assert not fork.forked and "fork checker crashed" in fork.reason and r.session.tree.leaf_id == leaf
    switch = r.session.new_session()
    assert not switch.switched and "switch checker crashed" in switch.reason
    assert r.session.path == tmp_path / "session.jsonl"
    compact = r.session.compact()
    assert not compact.compacted and "compact checker crashed" in compact.reason
    stats = r.session.host.extension("strict").stats.snapshot()
    assert stats["fail_closed"] == 6


def test_chain_handler_failing_closed_ends_the_turn_before_the_model(rig: RigFactory, make_ext: MakeExt) -> None:
    ext = make_ext("pruner", """
from ext_sdk import Extension
ext = Extension("pruner", permissions=["conversation"])
@ext.on("context_prepare", policy="closed")
def prune(event, ctx):
    raise RuntimeError("pruner crashed")
""", ["context_prepare"])
    r = rig([[{"text": "never"}]], [ext])
    result = r.run("hi")
    assert result.stop_reason == "error" and result.error.startswith("context_prepare: pruner failed")
    assert r.played() == 0 and r.payloads("error")[-1]["error"] == result.error
    assert r.types()[-2:] == ["error", "agent_end"]


def test_every_event_is_covered_by_the_misbehaving_extension(tmp_path: Path) -> None:
    source = (misbehaving(tmp_path, "raise") / "extension.toml").read_text()
    assert all(f'"{event}"' in source for event in ALL_EVENTS)
