"""Every one of the 34 events fires from its real place with the documented payload.

One scripted session (:func:`harness.run_full_scenario`: two turns, a retry, a
bash call with streamed output, a subagent, a model switch, a failed call, a
compaction, a fork, a session switch, close) runs once for this module with a
**recorder extension** subscribed to every event; the recorder stores each
``[event, payload]`` it receives in its host state (the session's sidecar, so
the log spans two sidecars around the session switch). Each parametrised test
then checks one event: where it sits relative to its neighbours and what its
payload says. Payload shapes are also schema-checked by the host on every emit
(``validate_all_payloads``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ext_sdk.events import EVENTS
from host.agent.session_tree import SessionTree

from .harness import ALL_EVENTS, MODEL, ScenarioOutput, check_scenario_behaviour, recorder, run_full_scenario

Log = list[tuple[str, dict[str, Any]]]


@dataclass
class Full:
    """The recorded scenario."""

    out: ScenarioOutput
    #: What the recorder extension received, in order, across both sessions.
    log: Log
    first_id: str
    second_id: str

    @property
    def seq(self) -> list[str]:
        return [e for e, _ in self.log]

    def all(self, event: str) -> list[dict[str, Any]]:
        return [p for e, p in self.log if e == event]

    def index(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda p: True, nth: int = 0) -> int:
        hits = [i for i, (e, p) in enumerate(self.log) if e == event and where(p)]
        assert len(hits) > nth, f"{event} (matching) occurs {len(hits)} times; wanted #{nth + 1}"
        return hits[nth]

    def one(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda p: True) -> dict[str, Any]:
        return self.log[self.index(event, where)][1]


def _sidecar_log(path: Path) -> Log:
    data = json.loads(path.with_suffix(".ext-state.json").read_text())
    return [(e, p) for e, p in data["extensions"]["recorder"]["log"]]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, litellm_ready: Any) -> Full:
    tmp = tmp_path_factory.mktemp("full")
    out = run_full_scenario(tmp, [recorder(tmp)])
    check_scenario_behaviour(out)
    log = _sidecar_log(out.first_session) + _sidecar_log(out.second_session)
    first_id = SessionTree.open(out.first_session).session_id
    second_id = SessionTree.open(out.second_session).session_id
    return Full(out, log, first_id, second_id)


BASH_ID, SUB_ID = "call_1_2_0", "call_1_3_0"
BASH_INPUT = json.dumps({"command": "echo out; echo err >&2"})


def _session_start(f: Full) -> None:
    assert f.seq[0] == "session_start" and f.all("session_start")[0] == {"session_id": f.first_id}
    i = f.index("session_start", nth=1)  # the new session, right after the old one shut down
    assert f.log[i][1] == {"session_id": f.second_id} and f.seq[i - 1] == "session_shutdown"


def _session_shutdown(f: Full) -> None:
    assert [p["reason"] for p in f.all("session_shutdown")] == ["new", "close"]
    assert f.seq[f.index("session_shutdown") - 1] == "before_session_switch" and f.seq[-1] == "session_shutdown"


def _input(f: Full) -> None:
    assert f.all("input") == [{"text": "list files", "source": "cli"}, {"text": "again", "source": "cli"}]
    assert f.seq[f.index("input") + 1] == "before_agent_start"


def _before_agent_start(f: Full) -> None:
    first = f.one("before_agent_start")
    assert first["prompt"] == "list files" and first["inject_text"] == ""
    assert first["system_prompt"].startswith("You are a coding agent")
    assert f.seq[f.index("before_agent_start") + 1] == "agent_start"


def _agent_start(f: Full) -> None:
    assert [p["prompt"] for p in f.all("agent_start")] == ["list files", "again"]
    assert f.seq[f.index("agent_start") + 1] == "context_prepare"


def _context_prepare(f: Full) -> None:
    first, second = f.all("context_prepare")
    assert [(m["index"], m["role"]) for m in first["messages"]] == [(0, "system"), (1, "user")]
    assert first["messages"][1]["content"] == "list files"
    assert second["messages"][-1]["content"] == "again"  # the whole history, once per turn
    assert any(m.get("tool_calls") for m in second["messages"])
    i = f.index("context_prepare")
    assert f.seq[i + 1] == "step_start" and f.log[i + 1][1] == {"step_number": 1}


def _before_model(f: Full) -> None:
    calls = f.all("before_model")
    assert [p["step_number"] for p in calls] == [1, 2, 3, 1]  # every call of the agent's own turns
    first = calls[0]
    assert first["model"] == "scripted/main" and first["params"] == {} and first["response"] is None
    assert {"bash", "subagent"} <= set(first["tools"]) and first["tool_choice"] is None
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert f.seq[f.index("before_model") - 1] == "step_start"


def _step_start(f: Full) -> None:
    steps = [p["step_number"] for p in f.all("step_start")]
    assert steps == [1, 2, 3, 1]  # turn 1: three calls; turn 2: one (failed) call
    assert f.seq[f.index("step_start", nth=1) - 1] == "prepare_step"


def _step_finish(f: Full) -> None:
    first = f.one("step_finish")
    assert first["step_number"] == 1 and first["has_tool_calls"] and first["finish_reason"] == "tool_calls"
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0
    last = f.all("step_finish")[-1]
    assert last["step_number"] == 3 and not last["has_tool_calls"] and last["finish_reason"] == "stop"
    assert f.seq[f.index("step_finish") + 1] == "llm_usage"


def _llm_usage(f: Full) -> None:
    usage = f.all("llm_usage")
    parent = [u for u in usage if u["model"] == MODEL and u["step_number"] in (1, 2, 3)]
    assert [u["step_number"] for u in parent] == [1, 2, 1, 2, 3]  # child's two calls forwarded inside step 2's tool
    assert all(u["provider"] == "scripted" and u["cost"] > 0 and u["request_id"] for u in parent)
    assert usage[-1]["step_number"] == 0 and usage[-1]["model"] == "scripted/second"  # the compaction summary
    i = f.index("llm_usage")
    assert f.seq[i - 1] == "step_finish" and f.seq[i + 1] == "tool_call"


def _message_start(f: Full) -> None:
    assert f.one("message_start") == {}
    i = f.index("message_start")
    assert f.seq[i - 1] == "warnings" and "step_start" in f.seq[i - 4:i]


def _message_update(f: Full) -> None:
    start, end = f.index("message_start"), f.index("message_end")
    chunks = [p["chunk"] for e, p in f.log[start:end] if e == "message_update"]
    assert "".join(chunks) == "Running." and len(chunks) > 1


def _message_end(f: Full) -> None:
    ends = [p["content"] for p in f.all("message_end")]
    assert ends == ["Running.", "Delegating.", "All done."]
    i = f.index("message_end")
    assert f.seq[i - 1] == "tool_call_input_end" and f.seq[i + 1] == "step_finish"


def _reasoning_start(f: Full) -> None:
    assert f.all("reasoning_start") == [{"id": "reasoning_1"}]
    assert f.index("message_start") < f.index("reasoning_start") < f.index("message_update")


def _warnings(f: Full) -> None:
    assert f.one("warnings") == {"warnings": ["careful"]}
    assert f.index("retry") < f.index("warnings") < f.index("message_start")


def _source(f: Full) -> None:
    assert f.all("source") == [{"source_type": "url", "id": "0", "url": "https://example.com/doc", "title": "Doc"}]
    assert f.index("message_update") < f.index("source") < f.index("tool_call_input_start")


def _retry(f: Full) -> None:
    (retry,) = f.all("retry")
    assert retry["attempt"] == 1 and "slow down" in retry["error"]
    assert f.seq[f.index("retry") - 2:f.index("retry")] == ["step_start", "before_model"]


def _error(f: Full) -> None:
    (error,) = f.all("error")
    assert "nope, bad request" in error["error"]
    i = f.index("error")
    assert f.seq[i - 2:i] == ["step_start", "before_model"] and f.seq[i + 1] == "agent_end"


def _tool_call_input_start(f: Full) -> None:
    starts = f.all("tool_call_input_start")
    assert starts == [{"tool_call_id": BASH_ID, "tool_name": "bash", "tool_kind": "execute"},
                      {"tool_call_id": SUB_ID, "tool_name": "subagent", "tool_kind": "agent"}]


def _tool_call_input_delta(f: Full) -> None:
    deltas = [p["delta"] for p in f.all("tool_call_input_delta") if p["tool_call_id"] == BASH_ID]
    assert "".join(deltas) == BASH_INPUT and len(deltas) > 1
    assert f.index("tool_call_input_start") < f.index("tool_call_input_delta") < f.index("tool_call_input_end")


def _tool_call_input_end(f: Full) -> None:
    assert [p["tool_call_id"] for p in f.all("tool_call_input_end")] == [BASH_ID, SUB_ID]


def _tool_call(f: Full) -> None:
    bash = f.one("tool_call", lambda p: p["tool_call_id"] == BASH_ID)
    assert bash == {"tool_call_id": BASH_ID, "tool_name": "bash", "tool_kind": "execute", "input": BASH_INPUT,
                    "parsed_args": {"command": "echo out; echo err >&2"}, "source": "llm", "subagent": None}
    assert f.one("tool_call", lambda p: p["tool_call_id"] == SUB_ID)["parsed_args"] == {"task": "count to two"}
    i = f.index("tool_call")
    assert f.seq[i - 1] == "llm_usage" and f.seq[i + 1] == "tool_execution_start"


def _tool_execution_start(f: Full) -> None:
    assert f.all("tool_execution_start") == [{"tool_call_id": BASH_ID, "tool_name": "bash", "tool_kind": "execute"},
                                             {"tool_call_id": SUB_ID, "tool_name": "subagent", "tool_kind": "agent"}]


def _tool_output(f: Full) -> None:
    start, end = f.index("tool_execution_start"), f.index("tool_execution_end")
    outputs = [p for e, p in f.log[start:end] if e == "tool_output"]
    assert {(p["chunk"], p["is_stderr"]) for p in outputs} == {("out\n", False), ("err\n", True)}
    assert all(p["tool_call_id"] == BASH_ID and p["tool_name"] == "bash" for p in outputs)


def _tool_execution_end(f: Full) -> None:
    bash, sub = f.all("tool_execution_end")
    assert bash["tool_call_id"] == BASH_ID and bash["is_error"] is False and bash["duration_ms"] >= 0
    assert sub["tool_call_id"] == SUB_ID and sub["is_error"] is False
    assert f.seq[f.index("tool_execution_end") + 1] == "tool_result"


def _tool_result(f: Full) -> None:
    bash = f.one("tool_result", lambda p: p["tool_call_id"] == BASH_ID)
    assert bash["content"] == "out\nerr" or set(bash["content"].split()) == {"out", "err"}
    assert bash["is_error"] is False and bash["input"] == BASH_INPUT
    assert json.loads(bash["metadata"])["exit_code"] == 0
    sub = f.one("tool_result", lambda p: p["tool_call_id"] == SUB_ID)
    assert sub["content"] == "one two" and json.loads(sub["metadata"])["stop_reason"] == "completed"
    assert f.seq[f.index("tool_result") + 1] == "prepare_step"


def _prepare_step(f: Full) -> None:
    steps = f.all("prepare_step")
    assert [p["step_number"] for p in steps] == [2, 3]  # between steps, never before the first
    window = steps[0]["messages"]
    assert [m["role"] for m in window] == ["system", "user", "assistant", "tool"]
    assert window[2]["tool_calls"][0]["id"] == BASH_ID and window[3]["tool_call_id"] == BASH_ID
    assert f.seq[f.index("prepare_step") + 1] == "step_start"


def _subagent_start(f: Full) -> None:
    assert f.all("subagent_start") == [{"tool_call_id": SUB_ID, "task": "count to two"}]
    i = f.index("subagent_start")
    assert f.log[i - 1] == ("tool_execution_start", {"tool_call_id": SUB_ID, "tool_name": "subagent",
                                                     "tool_kind": "agent"})


def _subagent_chunk(f: Full) -> None:
    chunks = f.all("subagent_chunk")
    assert all(c["tool_call_id"] == SUB_ID and c["task"] == "count to two" for c in chunks)
    kinds = [c["chunk_type"] for c in chunks]
    assert kinds[0] == "turn_start" and kinds[-1] == "turn_end" and chunks[-1]["content"] == "one two"
    order = [k for k in kinds if k != "text"]
    assert order == ["turn_start", "tool_call", "tool_execution_start", "tool_execution_end", "tool_result",
                     "turn_end"]
    call = next(c for c in chunks if c["chunk_type"] == "tool_call")
    assert call["tool_name"] == "bash" and json.loads(call["tool_args"]) == {"command": "echo two"}
    result = next(c for c in chunks if c["chunk_type"] == "tool_result")
    assert result["tool_result"] == "two" and result["is_error"] is False
    assert "".join(c["content"] for c in chunks if c["chunk_type"] == "text") == "oneone two"
    assert f.index("subagent_start") < f.index("subagent_chunk") < f.index("subagent_end")


def _subagent_end(f: Full) -> None:
    assert f.all("subagent_end") == [{"tool_call_id": SUB_ID, "task": "count to two", "response": "one two",
                                      "error_msg": ""}]
    assert f.seq[f.index("subagent_end") + 1] == "tool_execution_end"


def _agent_end(f: Full) -> None:
    first, second = f.all("agent_end")
    assert first["response"] == "All done." and first["stop_reason"] == "completed"
    assert first["tool_call_count"] == 2 and first["tool_names"] == ["bash", "subagent"]
    usage = [u for u in f.all("llm_usage")[:5]]
    assert first["llm_call_count"] == 5  # three parent calls and the subagent's two
    assert first["input_tokens_delta"] == sum(u["input_tokens"] for u in usage)
    assert first["output_tokens_delta"] == sum(u["output_tokens"] for u in usage)
    assert first["cost_delta"] == pytest.approx(sum(u["cost"] for u in usage))
    assert first["duration_ms"] >= 0 and first["cache_read_tokens_delta"] == first["cache_write_tokens_delta"] == 0
    assert second["stop_reason"] == "error" and second["llm_call_count"] == 0 and second["cost_delta"] == 0.0
    assert f.seq[f.index("agent_end") - 1] == "llm_usage"


def _model_change(f: Full) -> None:
    assert f.all("model_change") == [{"new_model": "scripted/second", "previous_model": MODEL, "source": "user"}]
    assert f.index("agent_end") < f.index("model_change") < f.index("input", nth=1)


def _before_compact(f: Full) -> None:
    (event,) = f.all("before_compact")
    assert event["message_count"] == 7 and event["is_automatic"] is False and event["summary"] == ""
    assert event["context_limit"] == 1_000_000 and event["estimated_tokens"] > 20
    assert event["usage_percent"] == pytest.approx(100 * event["estimated_tokens"] / 1_000_000, abs=0.01)
    assert f.seq[f.index("before_compact") + 1] == "llm_usage"  # then the model writes the summary


def _before_fork(f: Full) -> None:
    assert f.all("before_fork") == [{"target_id": f.out.first_user_entry, "is_user_message": True,
                                     "user_text": "list files"}]


def _before_session_switch(f: Full) -> None:
    assert f.all("before_session_switch") == [{"reason": "new", "initial_prompt": ""}]
    assert f.seq[f.index("before_fork") + 1] == "before_session_switch"


CHECKS: dict[str, Callable[[Full], None]] = {
    "session_start": _session_start, "session_shutdown": _session_shutdown, "input": _input,
    "before_agent_start": _before_agent_start, "agent_start": _agent_start, "context_prepare": _context_prepare,
    "step_start": _step_start, "step_finish": _step_finish, "llm_usage": _llm_usage,
    "message_start": _message_start, "message_update": _message_update, "message_end": _message_end,
    "reasoning_start": _reasoning_start, "warnings": _warnings, "source": _source, "retry": _retry,
    "error": _error, "tool_call_input_start": _tool_call_input_start,
    "tool_call_input_delta": _tool_call_input_delta, "tool_call_input_end": _tool_call_input_end,
    "tool_call": _tool_call, "tool_execution_start": _tool_execution_start, "tool_output": _tool_output,
    "tool_execution_end": _tool_execution_end, "tool_result": _tool_result, "prepare_step": _prepare_step,
    "before_model": _before_model,
    "subagent_start": _subagent_start, "subagent_chunk": _subagent_chunk, "subagent_end": _subagent_end,
    "agent_end": _agent_end, "model_change": _model_change, "before_compact": _before_compact,
    "before_fork": _before_fork, "before_session_switch": _before_session_switch,
}


def test_every_event_has_a_check() -> None:
    assert sorted(CHECKS) == ALL_EVENTS and len(EVENTS) == 35


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_event_fires_from_its_place(full: Full, event: str) -> None:
    CHECKS[event](full)


def test_the_extension_saw_what_the_application_saw(full: Full) -> None:
    """The recorder's log (delivered over IPC, across both sidecars) is exactly the agent's emission order."""
    assert full.log == [(t, d) for t, d in full.out.events]


def test_subagent_session_file_links_to_its_parent(full: Full) -> None:
    (child,) = full.out.child_sessions
    tree = SessionTree.open(child)
    assert tree.header["parent_session"] == str(full.out.first_session)
    assert [m["role"] for m in tree.messages()] == ["user", "assistant", "tool", "assistant"]
    assert tree.messages()[0]["content"] == "count to two"
