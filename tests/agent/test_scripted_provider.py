"""The scripted provider through litellm itself: real streaming chunks, errors, pricing, script lookup."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from host.agent import scripted
from host.agent.llm.classify import classify_error
from host.agent.scripted.script import ERROR_TYPES

MSGS = [{"role": "user", "content": "hi"}]
WriteScript = Callable[..., Path]
TOOLS = [{"type": "function", "function": {"name": "read", "description": "Read a file.",
                                           "parameters": {"type": "object", "properties": {}}}}]


def stream(litellm: Any, script: Path, model: str = "scripted/test", **kw: Any) -> list[Any]:
    return list(litellm.completion(model=model, messages=kw.pop("messages", MSGS), stream=True,
                                   stream_options={"include_usage": True}, script=str(script), **kw))


def test_streaming_chunks_have_litellm_shapes(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{
        "reasoning": "hmm", "text": "Hello!", "chunk_size": 3,
        "tool_calls": [{"name": "read", "arguments": {"path": "a.txt"}}],
        "usage": {"input_tokens": 50, "output_tokens": 7, "cache_read_tokens": 20},
    }]])
    chunks = stream(litellm_ready, path, tools=TOOLS)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert [d.reasoning_content for d in deltas if getattr(d, "reasoning_content", None)] == ["hmm"]
    assert [d.content for d in deltas if d.content] == ["Hel", "lo!"]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls[0].id == "call_1_1_0" and calls[0].function.name == "read"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"path": "a.txt"}'
    assert len(calls) > 2 and all(tc.index == 0 for tc in calls)  # arguments really arrive in fragments
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    usage = [c.usage for c in chunks if getattr(c, "usage", None) is not None][-1]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (50, 7, 20)
    assert usage.cost == pytest.approx(30 * 1e-6 + 20 * 1e-7 + 7 * 2e-6)


def test_non_streaming_and_async_calls(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"text": "sync", "reasoning": "r", "tool_calls": [{"name": "read"}]}],
                         [{"text": "async stream"}], [{"text": "async whole"}]])
    response = litellm_ready.completion(model="scripted/x", messages=MSGS, script=str(path), tools=TOOLS)
    message = response.choices[0].message
    assert (message.content, message.reasoning_content, message.tool_calls[0].function.name) == ("sync", "r", "read")
    assert response.choices[0].finish_reason == "tool_calls" and response.usage.total_tokens > 0

    async def run() -> tuple[str, str]:
        streamed = await litellm_ready.acompletion(model="scripted/x", messages=MSGS, script=str(path), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
        whole = await litellm_ready.acompletion(model="scripted/x", messages=MSGS, script=str(path))
        return text, whole.choices[0].message.content

    assert asyncio.run(run()) == ("async stream", "async whole")


def test_script_from_environment(litellm_ready: Any, write_script: WriteScript, monkeypatch: pytest.MonkeyPatch
                                 ) -> None:
    path = write_script([[{"text": "from env"}]])
    monkeypatch.setenv(scripted.SCRIPT_ENV, str(path))
    response = litellm_ready.completion(model="scripted/env", messages=MSGS)
    assert response.choices[0].message.content == "from env"
    monkeypatch.delenv(scripted.SCRIPT_ENV)
    with pytest.raises(litellm_ready.BadRequestError, match="needs a script: pass script=PATH"):
        litellm_ready.completion(model="scripted/env", messages=MSGS)


def test_error_steps_raise_litellm_errors(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script([[{"error": "RateLimitError", "message": "slow down"},
                          {"error": "ContextWindowExceededError"},
                          {"error": "PermissionDeniedError"},
                          {"error": "InternalServerError", "after_text": "partial answer"}]])
    with pytest.raises(litellm_ready.RateLimitError, match="slow down") as rate:
        stream(litellm_ready, path)
    assert rate.value.status_code == 429
    with pytest.raises(litellm_ready.ContextWindowExceededError):
        stream(litellm_ready, path)
    with pytest.raises(litellm_ready.PermissionDeniedError):
        stream(litellm_ready, path)
    got: list[str] = []
    with pytest.raises(litellm_ready.ServiceUnavailableError) as mid:  # litellm wraps mid-stream 5xx
        for chunk in litellm_ready.completion(model="scripted/test", messages=MSGS, stream=True, script=str(path)):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "partial answer"
    assert "scripted InternalServerError" in str(mid.value)


def test_broken_script_and_mismatch_are_bad_requests(litellm_ready: Any, write_script: WriteScript) -> None:
    broken = write_script({"turns": [[{"txt": "typo"}]]})
    with pytest.raises(litellm_ready.BadRequestError, match=r"turn 1, step 1: unknown key 'txt'"):
        stream(litellm_ready, broken)
    strict = write_script([[{"expect": {"last_contains": "magic word"}, "text": "ok"}]])
    with pytest.raises(litellm_ready.BadRequestError, match="to contain 'magic word'"):
        stream(litellm_ready, strict)
    chunks = stream(litellm_ready, strict, messages=[{"role": "user", "content": "the magic word"}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"


def test_warnings_sources_and_the_end_of_the_script(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script({"turns": [[{"warnings": ["w1"], "sources": [{"url": "https://a.test", "title": "A"}]}]],
                         "end_text": "THE END"})
    deltas = [c.choices[0].delta for c in stream(litellm_ready, path) if c.choices]
    assert [d.provider_specific_fields for d in deltas if d.provider_specific_fields] == [{"warnings": ["w1"]}]
    assert [a["url_citation"]["url"] for d in deltas for a in (getattr(d, "annotations", None) or [])] == [
        "https://a.test"]
    ended = [c.choices[0].delta.content or "" for c in stream(litellm_ready, path) if c.choices]
    assert "".join(ended) == "THE END"


def test_pricing_null_leaves_the_cost_unknown(litellm_ready: Any, write_script: WriteScript) -> None:
    path = write_script({"turns": [[{"text": "free?"}], [{"text": "free?"}]], "pricing": None})
    usage = [c.usage for c in stream(litellm_ready, path, model="scripted/unpriced-model")
             if getattr(c, "usage", None) is not None][-1]
    assert getattr(usage, "cost", None) is None


def test_the_documented_error_table_is_what_the_agent_does(litellm_ready: Any, write_script: WriteScript) -> None:
    """Every ``error`` name of docs/scripted-provider.md: raised with its status, retried as the table says."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scripted-provider.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (\d{3}) \| (yes|no) \|$", doc, re.M)
    assert {name for name, _, _ in rows} == set(ERROR_TYPES)
    for name, status, retried in rows:
        path = write_script([[{"error": name}]], name=f"{name}.json")
        with pytest.raises(Exception) as info:  # which one: checked below
            stream(litellm_ready, path)
        verdict = classify_error(info.value)
        assert (verdict.kind, verdict.status_code, verdict.retryable) == (name, int(status), retried == "yes")
