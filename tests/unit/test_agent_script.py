"""Script files: parsing with located errors, and deterministic playback (no litellm here)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from host.agent.errors import ScriptError, ScriptMismatch
from host.agent.scripted.player import ScriptLibrary, ScriptPlayer
from host.agent.scripted.script import (
    DEFAULT_END_TEXT,
    DEFAULT_PRICING,
    ErrorStep,
    MessageStep,
    StepUsage,
    fragments,
    resolve_usage,
)
from host.agent.scripted.script_file import (
    ErrorStepFile,
    ExpectFile,
    MessageStepFile,
    PricingFile,
    ScriptFile,
    SourceFile,
    ToolCallFile,
    UsageFile,
    load_script,
    parse_script,
)

USER = [{"role": "user", "content": "hi"}]


def player(turns: Any, **options: Any) -> ScriptPlayer:
    return ScriptPlayer(parse_script({"turns": turns, **options}, "test.json"))


def test_full_step_is_parsed() -> None:
    script = parse_script({
        "turns": [[{
            "text": "Hello", "reasoning": ["think", "ing"],
            "tool_calls": [{"name": "read", "arguments": {"path": "a.txt"}}, {"name": "bash", "arguments": "{bad",
                                                                              "id": "mine"}],
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 4, "cache_write_tokens": 1},
            "finish_reason": "length", "warnings": "careful", "sources": [{"url": "https://x.test", "title": "X"}],
            "chunk_size": 2, "chunk_delay_ms": 1, "expect": {"last_role": "user", "tools_include": ["read"]},
            "note": "a comment",
        }]],
        "chunk_size": 3, "end_text": "bye", "strict_turns": False,
        "pricing": {"input_cost_per_token": 2e-6},
    }, "s.json")
    step = script.turns[0][0]
    assert isinstance(step, MessageStep)
    assert step.full_text == "Hello" and step.reasoning == ("think", "ing")
    assert [(c.name, c.arguments, c.id) for c in step.tool_calls] == [
        ("read", '{"path": "a.txt"}', None), ("bash", "{bad", "mine")]
    assert step.usage == StepUsage(10, 5, 4, 1)
    assert step.resolved_finish_reason == "length"
    assert step.warnings == ("careful",) and step.sources == (("https://x.test", "X"),)
    assert step.expect.last_role == "user" and step.expect.tools_include == ("read",)
    assert (script.chunk_size, script.end_text, script.strict_turns) == (3, "bye", False)
    assert script.pricing is not None and script.pricing.input_cost_per_token == 2e-6
    assert script.pricing.output_cost_per_token == DEFAULT_PRICING.output_cost_per_token


def test_a_bare_list_is_the_list_of_turns() -> None:
    script = parse_script([[{"text": "a"}], [{"text": "b"}, {"error": "RateLimitError", "times": 2}]])
    assert script.step_count == 3
    error = script.turns[1][1]
    assert isinstance(error, ErrorStep) and error.times == 2 and error.status_code == 429


@pytest.mark.parametrize(("data", "where", "problem"), [
    ({"turns": [[{"txt": "x"}]]}, "turn 1, step 1", "unknown key 'txt'"),
    ({"turns": [[{"text": "x"}], [{"error": "Boom"}]]}, "turn 2, step 1", "unknown error type 'Boom'"),
    ({"turns": [[{"error": "Timeout", "text": "x"}]]}, "turn 1, step 1", "unknown key 'text'"),
    ({"turns": [[]]}, "turn 1", "non-empty list"),
    ({"turns": {}}, "", "'turns' must be a list"),
    ({"turns": [[{"tool_calls": [{"arguments": {}}]}]]}, "turn 1, step 1, tool_calls[0]", "'name' is required"),
    ({"turns": [[{"usage": {"input_tokens": 5, "cache_read_tokens": 6}}]]}, "turn 1, step 1, usage", "exceed"),
    ({"turns": [[{"expect": {"last_role": "robot"}}]]}, "turn 1, step 1, expect", "'last_role' must be"),
    ({"turns": [[{"finish_reason": "done"}]]}, "turn 1, step 1", "'finish_reason' must be"),
    ({"turns": [[{"text": 3}]]}, "turn 1, step 1", "'text' must be"),
    ({"turns": [], "pricing": {"input_cost_per_token": -1}}, "pricing", "must be a number"),
])
def test_invalid_scripts_name_the_place(data: Any, where: str, problem: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(data, "bad.json")
    assert info.value.where == where
    assert problem in info.value.problem
    assert str(info.value).startswith("script bad.json")


def test_load_script_reports_json_position_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"turns": [\n  [ {"text": "x"} \n')
    with pytest.raises(ScriptError, match=r"bad.json: line 3, column 1: invalid JSON"):
        load_script(bad)
    with pytest.raises(ScriptError, match="cannot read it"):
        load_script(tmp_path / "missing.json")


def test_steps_are_consumed_in_order_then_the_end_text() -> None:
    p = player([[{"text": "one"}, {"text": "two"}], [{"text": "three"}]], strict_turns=False)
    seen = []
    for _ in range(5):
        played = p.next(USER)
        assert isinstance(played.step, MessageStep)
        seen.append((played.step.full_text, played.turn, played.index, played.ended))
    assert seen == [("one", 1, 1, False), ("two", 1, 2, False), ("three", 2, 1, False),
                    (DEFAULT_END_TEXT, 0, 0, True), (DEFAULT_END_TEXT, 0, 0, True)]
    assert p.finished and p.calls == 5
    end = p.next(USER).step
    assert isinstance(end, MessageStep) and "no more steps (3 played)" in end.warnings[0]
    p.reset()
    assert not p.finished


def test_error_step_fails_times_then_is_consumed() -> None:
    p = player([[{"error": "RateLimitError", "times": 2, "message": "slow"}, {"text": "ok"}]])
    first, second, third = (p.next(USER) for _ in range(3))
    assert isinstance(first.step, ErrorStep) and (first.attempt, second.attempt) == (1, 2)
    assert isinstance(third.step, MessageStep) and third.step.full_text == "ok"


def test_expect_mismatch_is_clear_and_does_not_advance() -> None:
    p = player([[{"text": "a"}, {"expect": {"last_role": "tool", "last_contains": "secret"}, "text": "b"}]])
    p.next(USER)
    with pytest.raises(ScriptMismatch) as info:
        p.next([*USER, {"role": "assistant", "content": "plain"}])
    message = str(info.value)
    assert "turn 1, step 2 (model call 2)" in message
    assert "expected the last message to have role 'tool', got 'assistant'" in message
    assert "to contain 'secret'" in message
    played = p.next([*USER, {"role": "tool", "tool_call_id": "c", "content": "the secret"}])
    assert isinstance(played.step, MessageStep) and played.step.full_text == "b"


def test_every_expect_condition() -> None:
    messages: list[dict[str, Any]] = [
                {"role": "system", "content": "You are kit."}, {"role": "user", "content": "find TODO"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "grep",
                                                                              "arguments": '{"pattern": "TODO"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "a.py:1: # TODO"}]
    ok = {"last_role": "tool", "last_contains": ["a.py", "TODO"], "any_contains": "pattern",
          "none_contains": "password", "system_contains": "kit", "message_count": 4,
          "tools_include": ["grep"], "tools_exclude": ["bash"]}
    p = player([[{"expect": ok, "text": "x"}]], strict_turns=False)
    assert p.next(messages, ["grep", "read"]).index == 1
    bad = {"any_contains": "nowhere", "none_contains": "TODO", "system_contains": "pirate", "message_count": 2,
           "tools_include": ["edit"], "tools_exclude": ["grep"]}
    p = player([[{"expect": bad, "text": "x"}]], strict_turns=False)
    with pytest.raises(ScriptMismatch) as info:
        p.next(messages, ["grep"])
    for words in ("some message to contain 'nowhere'", "no message to contain 'TODO'; message(s) [1, 2, 3]",
                  "system prompt to contain 'pirate'", "expected 2 messages, got 4", "tools ['edit'] to be offered",
                  "tools ['grep'] not to be offered"):
        assert words in str(info.value)


def test_strict_turns_catch_an_agent_that_calls_more_than_scripted() -> None:
    p = player([[{"text": "only step"}], [{"text": "next turn"}]])
    p.next(USER)
    tool_reply = [*USER, {"role": "assistant", "content": "x"}, {"role": "tool", "tool_call_id": "c", "content": "r"}]
    with pytest.raises(ScriptMismatch, match=r"turn 2, step 1 .*more model calls in turn 1"):
        p.next(tool_reply)
    loose = player([[{"text": "only step"}], [{"text": "next turn"}]], strict_turns=False)
    loose.next(USER)
    assert loose.next(tool_reply).turn == 2


def test_tool_call_ids_are_deterministic() -> None:
    p = player([[{"tool_calls": [{"name": "a"}, {"name": "b", "id": "given"}]}]])
    played = p.next(USER)
    assert [played.tool_call_id(0), played.tool_call_id(1)] == ["call_1_1_0", "given"]
    step = played.step
    assert isinstance(step, MessageStep) and step.tool_calls[0].arguments == "{}"
    assert step.resolved_finish_reason == "tool_calls"


def test_usage_defaults_are_estimated_deterministically() -> None:
    step = MessageStep(text=("12345678",), usage=StepUsage(cache_read_tokens=3))
    usage = resolve_usage(step, [{"role": "user", "content": "x" * 40}])
    assert usage == StepUsage(10, 2, 3, 0)
    assert resolve_usage(step, [{"role": "user", "content": "x"}]).input_tokens == 3  # at least the cache tokens
    assert fragments("abcdefg", 3) == ["abc", "def", "g"] and fragments("", 3) == []


def test_library_shares_a_cursor_per_file_and_reloads_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([[{"text": "first"}], [{"text": "second"}]]))
    library = ScriptLibrary()
    assert library.player(path) is library.player(str(path))
    assert library.player(path).next(USER).index == 1
    assert library.player(path).next(USER).turn == 2
    path.write_text(json.dumps([[{"text": "rewritten"}]]))
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    fresh = library.player(path).next(USER).step
    assert isinstance(fresh, MessageStep) and fresh.full_text == "rewritten"
    library.reset(path)
    again = library.player(path).next(USER).step
    assert isinstance(again, MessageStep) and again.full_text == "rewritten"
    with pytest.raises(ScriptError, match="cannot read it"):
        library.player(tmp_path / "nope.json")


def test_the_documented_example_is_a_valid_script() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scripted-provider.md").read_text(encoding="utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    script = parse_script(json.loads(example), "docs example")
    assert [len(t) for t in script.turns] == [3, 2]
    assert script.pricing is not None and script.pricing.output_cost_per_token == 1.5e-5


DOC = Path(__file__).resolve().parents[2] / "docs" / "scripted-provider.md"


def _doc_table_keys(heading: str) -> list[str]:
    """The backticked keys in the first column of the first table after ``heading``."""
    section = DOC.read_text(encoding="utf-8").split(heading, 1)[1]
    table = section.split("\n\n|", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", "|" + table, re.M)


def test_the_documented_keys_are_the_format() -> None:
    """docs/scripted-provider.md stays true: each key table lists exactly the model's keys."""
    assert set(_doc_table_keys("### Top-level options")) == set(ScriptFile.model_fields)
    assert set(_doc_table_keys("### Message steps")) == set(MessageStepFile.model_fields)
    assert set(_doc_table_keys("### Error steps")) == set(ErrorStepFile.model_fields)
    assert set(_doc_table_keys("### `expect`")) == set(ExpectFile.model_fields)
    assert set(_doc_table_keys("### Pricing and cost")) == set(PricingFile.model_fields)
    doc = DOC.read_text(encoding="utf-8")
    assert f"`{{{', '.join(UsageFile.model_fields)}}}`" in doc
    assert "list of `{name, arguments, id?}`" in doc and set(ToolCallFile.model_fields) == {"name", "arguments", "id"}
    assert "list of `{url, title?}`" in doc and set(SourceFile.model_fields) == {"url", "title"}
