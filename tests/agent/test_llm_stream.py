"""``stream_completion``: real litellm streaming (scripted provider) turned into kithost's own events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from host.agent.errors import LLMCallError
from host.agent.llm.classify import classify_error
from host.agent.llm.events import (
    Finish,
    ReasoningDelta,
    Retry,
    Source,
    StreamEvent,
    StreamWarning,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from host.agent.llm.messages import to_litellm_messages
from host.agent.llm.stream import stream_completion

WriteScript = Callable[..., Path]
MSGS = [{"role": "user", "content": "go"}]
TOOLS = [{"type": "function", "function": {"name": n, "description": n, "parameters": {"type": "object"}}}
         for n in ("read", "bash")]


def run(script: Path, messages: list[dict[str, Any]] = MSGS, model: str = "scripted/test", **kw: Any
        ) -> list[StreamEvent]:
    kw.setdefault("retry_base_delay_s", 0.0)
    return list(stream_completion(model, messages, params={"script": str(script)}, **kw))


def only(events: list[StreamEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_event_order_and_the_assembled_message(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{
        "reasoning": "Two tools.", "text": "Checking.", "chunk_size": 5,
        "tool_calls": [{"name": "read", "arguments": {"path": "a.txt"}},
                       {"name": "bash", "arguments": {"command": "ls"}}],
    }]])
    events = run(path, tools=TOOLS)
    kinds = [type(e).__name__ for e in events]
    assert kinds[-2:] == ["Usage", "Finish"] and kinds.count("Usage") == kinds.count("Finish") == 1
    assert "".join(e.text for e in only(events, ReasoningDelta)) == "Two tools."
    assert "".join(e.text for e in only(events, TextDelta)) == "Checking."
    # start → deltas → end for the first call, before the second call starts
    first_end = kinds.index("ToolCallEnd")
    assert kinds.index("ToolCallStart") < kinds.index("ToolCallDelta") < first_end
    assert [e.name for e in only(events, ToolCallStart)] == ["read", "bash"]
    ends = only(events, ToolCallEnd)
    assert [(e.index, e.id, e.name, e.arguments) for e in ends] == [
        (0, "call_1_1_0", "read", '{"path": "a.txt"}'), (1, "call_1_1_1", "bash", '{"command": "ls"}')]
    assert "".join(e.delta for e in only(events, ToolCallDelta) if e.index == 1) == '{"command": "ls"}'
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "tool_calls" and finish.provider == "scripted" and finish.model == "scripted/test"
    assert finish.request_id
    assert finish.message == {
        "role": "assistant", "content": "Checking.", "reasoning_content": "Two tools.",
        "tool_calls": [{"id": "call_1_1_0", "type": "function",
                        "function": {"name": "read", "arguments": '{"path": "a.txt"}'}},
                       {"id": "call_1_1_1", "type": "function",
                        "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]}


def test_tool_only_message_has_null_content(litellm_ready: Any, write_script: WriteScript) -> None:
    finish = run(write_script([[{"tool_calls": [{"name": "read"}]}]]), tools=TOOLS)[-1]
    assert isinstance(finish, Finish) and finish.message["content"] is None
    text_only = run(write_script([[{"text": "just text"}]]))[-1]
    assert isinstance(text_only, Finish) and text_only.message == {"role": "assistant", "content": "just text"}
    assert text_only.reason == "stop"


def test_usage_and_cost_from_the_cost_map(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script({"turns": [[{"text": "x", "usage": {"input_tokens": 1000, "output_tokens": 100,
                                                            "cache_read_tokens": 400, "cache_write_tokens": 100}}]],
                         "pricing": {"input_cost_per_token": 3e-6, "output_cost_per_token": 15e-6,
                                     "cache_read_input_token_cost": 3e-7, "cache_creation_input_token_cost": 3.75e-6}})
    events = run(path, model="scripted/priced")
    [usage] = only(events, Usage)
    assert usage.tokens() == {"input_tokens": 1000, "output_tokens": 100, "cache_read_tokens": 400,
                              "cache_write_tokens": 100}
    assert usage.cost == pytest.approx(500 * 3e-6 + 400 * 3e-7 + 100 * 3.75e-6 + 100 * 15e-6)
    assert not only(events, StreamWarning)


@pytest.mark.parametrize("pricing", [None, {"input_cost_per_token": 0, "output_cost_per_token": 0}],
                         ids=["missing-from-cost-map", "priced-zero"])
def test_unknown_cost_is_none_not_zero(litellm_ready: Any, write_script: WriteScript, pricing: Any) -> None:
    model = "scripted/never-priced" if pricing is None else "scripted/zero-priced"
    events = run(write_script({"turns": [[{"text": "x", "usage": {"input_tokens": 10, "output_tokens": 2}}]],
                               "pricing": pricing}), model=model)
    [usage] = only(events, Usage)
    assert usage.cost is None and (usage.input_tokens, usage.output_tokens) == (10, 2)
    assert any("cost unknown" in w.message for w in only(events, StreamWarning))


def test_provider_warnings_and_sources(litellm_ready: Any, write_script: WriteScript) -> None:
    events = run(write_script([[{"text": "see", "warnings": ["deprecated model", "slow"],
                                 "sources": [{"url": "https://docs.test/a", "title": "A"}]}]]))
    assert [w.message for w in only(events, StreamWarning)] == ["deprecated model", "slow"]
    assert only(events, Source) == [Source("url", "0", "https://docs.test/a", "A")]


def test_transient_errors_are_retried_with_events(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"error": "RateLimitError", "times": 2, "message": "slow down"}, {"text": "finally"}]])
    events = run(path, retry_base_delay_s=0.001)
    retries = only(events, Retry)
    assert [(r.attempt, r.delay_s) for r in retries] == [(1, 0.001), (2, 0.002)]
    assert all("slow down" in r.error for r in retries)
    assert "".join(e.text for e in only(events, TextDelta)) == "finally"
    assert events.index(retries[-1]) < events.index(only(events, TextDelta)[0])


def test_retries_run_out(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"error": "ServiceUnavailableError", "times": 3}]])
    with pytest.raises(LLMCallError) as info:
        run(path, num_retries=2)
    error = info.value
    assert (error.kind, error.status_code, error.retryable, error.attempts, error.partial) == (
        "ServiceUnavailableError", 503, True, 3, False)
    assert "(after 3 attempts)" in str(error)


def test_client_errors_are_not_retried(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"error": "ContextWindowExceededError", "message": "too long"}, {"text": "unused"}]])
    events: list[StreamEvent] = []
    with pytest.raises(LLMCallError) as info:
        for event in stream_completion("scripted/t", MSGS, params={"script": str(path)}, retry_base_delay_s=0):
            events.append(event)
    assert not events
    assert (info.value.kind, info.value.status_code, info.value.attempts) == ("ContextWindowExceededError", 400, 1)


def test_mid_stream_failure_is_not_retried(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"error": "InternalServerError", "after_text": "half an ans"}, {"text": "unused"}]])
    events: list[StreamEvent] = []
    with pytest.raises(LLMCallError) as info:
        for event in stream_completion("scripted/t", MSGS, params={"script": str(path)}, retry_base_delay_s=0):
            events.append(event)
    assert "".join(e.text for e in only(events, TextDelta)) == "half an ans"
    assert not only(events, Retry)
    assert (info.value.kind, info.value.partial, info.value.attempts) == ("InternalServerError", True, 1)


def test_script_mismatch_surfaces_as_a_clear_error(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"expect": {"last_role": "tool"}, "text": "x"}]], name="strict.json")
    with pytest.raises(LLMCallError, match=r"strict.json: turn 1, step 1 .*role 'tool', got 'user'") as info:
        run(path)
    assert info.value.kind == "BadRequestError" and not info.value.retryable


def test_cancel_stops_the_stream(litellm_ready: Any, write_script: WriteScript) -> None:
    cancel = threading.Event()
    path = write_script([[{"text": "a long answer that will be cut", "chunk_size": 2}]])
    seen: list[StreamEvent] = []
    for event in stream_completion("scripted/t", MSGS, params={"script": str(path)}, cancel=cancel):
        seen.append(event)
        if isinstance(event, TextDelta):
            cancel.set()
    finish = seen[-1]
    assert isinstance(finish, Finish) and finish.reason == "cancelled"
    assert finish.message["content"] == "a "
    assert len(only(seen, TextDelta)) == 1 and len(only(seen, Usage)) == 1


def test_cancel_during_retry_wait(litellm_ready: Any, write_script: WriteScript) -> None:
    cancel = threading.Event()
    path = write_script([[{"error": "RateLimitError", "times": 5}]])
    events: list[StreamEvent] = []
    for event in stream_completion("scripted/t", MSGS, params={"script": str(path)}, cancel=cancel,
                                   retry_base_delay_s=60):
        events.append(event)
        if isinstance(event, Retry):
            cancel.set()  # the 60 s wait returns at once
    assert [type(e).__name__ for e in events] == ["Retry", "Usage", "Finish"]
    assert isinstance(events[-1], Finish) and events[-1].reason == "cancelled"


def test_conversation_round_trip_through_the_provider(litellm_ready: Any, write_script: WriteScript) -> None:
    """A message built by one call is valid input to the next (reasoning stripped, tool result attached)."""
    path = write_script([[{"reasoning": "r", "tool_calls": [{"name": "read", "arguments": {"path": "x"}}]},
                          {"expect": {"last_role": "tool", "last_contains": "file body", "message_count": 3},
                           "text": "done"}]])
    first = run(path, tools=TOOLS)[-1]
    assert isinstance(first, Finish)
    messages = [*MSGS, first.message,
                {"role": "tool", "tool_call_id": first.message["tool_calls"][0]["id"], "content": "file body"}]
    second = run(path, messages, tools=TOOLS)[-1]
    assert isinstance(second, Finish) and second.message["content"] == "done"


def test_to_litellm_messages_cleans_kithost_messages() -> None:
    out = to_litellm_messages([
        {"role": "system", "content": "sys"},
        {"role": "assistant", "content": "", "reasoning_content": "r", "entry_id": "abc",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": {"path": "a"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "body", "name": "read"},
        {"role": "assistant", "content": "plain", "tool_calls": []},
        {"role": "user", "content": [{"type": "text", "text": "parts"}]},
    ])
    assert out == [
        {"role": "system", "content": "sys"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "body", "name": "read"},
        {"role": "assistant", "content": "plain"},
        {"role": "user", "content": [{"type": "text", "text": "parts"}]},
    ]
    with pytest.raises(ValueError, match="message 0: unknown role 'robot'"):
        to_litellm_messages([{"role": "robot", "content": "x"}])


def test_classify_error(litellm_ready: Any) -> None:
    lit = litellm_ready
    cases = [
        (lit.RateLimitError(message="x", llm_provider="p", model="m"), ("RateLimitError", 429, True)),
        (lit.InternalServerError(message="Missing credentials", llm_provider="p", model="m"),
         ("InternalServerError", 500, False)),
        (lit.InternalServerError(message="Connection error.", llm_provider="p", model="m"),
         ("InternalServerError", 500, True)),
        (lit.AuthenticationError(message="bad key", llm_provider="p", model="m"), ("AuthenticationError", 401, False)),
        (lit.Timeout(message="slow", llm_provider="p", model="m"), ("Timeout", 408, True)),
        (ValueError("bug"), ("ValueError", None, False)),
    ]
    for exc, expected in cases:
        info = classify_error(exc)
        assert (info.kind, info.status_code, info.retryable) == expected, exc


def test_classify_error_goes_by_class_not_by_name(litellm_ready: Any) -> None:
    lit = litellm_ready

    class ProviderThrottled(lit.RateLimitError):  # a subclass keeps its parent's meaning
        pass

    class RateLimitError(Exception):  # not litellm's: the name alone means nothing
        pass

    wrapped = lit.exceptions.MidStreamFallbackError(
        message="stream broke", model="m", llm_provider="p", is_pre_first_chunk=True,
        original_exception=lit.RateLimitError(message="slow", llm_provider="p", model="m"))
    cases = [
        (ProviderThrottled(message="x", llm_provider="p", model="m"), ("ProviderThrottled", 429, True)),
        (RateLimitError("x"), ("RateLimitError", None, False)),
        (lit.APIConnectionError(message="reset", llm_provider="p", model="m"), ("APIConnectionError", 500, True)),
        (lit.ContextWindowExceededError(message="long", llm_provider="p", model="m"),
         ("ContextWindowExceededError", 400, False)),
        (wrapped, ("RateLimitError", 429, True)),
    ]
    for exc, expected in cases:
        info = classify_error(exc)
        assert (info.kind, info.status_code, info.retryable) == expected, exc
    assert classify_error(wrapped).pre_first_chunk


def test_an_empty_step_is_an_empty_answer(litellm_ready: Any, write_script: WriteScript) -> None:
    events = run(write_script([[{}]]))
    assert [type(e).__name__ for e in events] == ["Usage", "Finish"]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.message == {"role": "assistant", "content": ""}
