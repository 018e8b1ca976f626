"""Context messages: projection to the event schema and applying a handler's edits back."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ext_sdk.events import CONTEXT_MESSAGE
from ext_sdk.schema import List
from host.agent.context_messages import apply_context_messages, to_context_messages

CALL = {"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a"}'}}
WINDOW: list[dict[str, Any]] = [
    {"role": "system", "content": "You are kit."},
    {"role": "user",
     "content": [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "u"}}]},
    {"role": "assistant", "content": None, "reasoning_content": "thinking", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "SECRET=42"},
    {"role": "assistant", "content": "The file sets SECRET."},
]


def test_projection_matches_the_event_schema() -> None:
    projected = to_context_messages(WINDOW)
    List(CONTEXT_MESSAGE).check(projected)
    assert projected == [
        {"index": 0, "role": "system", "content": "You are kit."},
        {"index": 1, "role": "user", "content": "look at"},
        {"index": 2, "role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "name": "read", "arguments": '{"path": "a"}'}]},
        {"index": 3, "role": "tool", "content": "SECRET=42", "tool_call_id": "c1"},
        {"index": 4, "role": "assistant", "content": "The file sets SECRET."},
    ]
    with pytest.raises(ValueError, match="role 'function'"):
        to_context_messages([{"role": "function", "content": "x"}])


def test_unchanged_list_gives_the_same_window() -> None:
    before = copy.deepcopy(WINDOW)
    applied = apply_context_messages(WINDOW, to_context_messages(WINDOW))
    assert applied.messages == WINDOW and not applied.problems
    assert applied.messages[2] is not WINDOW[2]  # copies, never the originals
    assert WINDOW == before


def test_edited_text_replaces_only_the_text() -> None:
    items = to_context_messages(WINDOW)
    items[3]["content"] = "SECRET=[redacted]"
    items[1]["content"] = "look closely at"
    items[2]["content"] = "Let me read it."
    messages = apply_context_messages(WINDOW, items).messages
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "SECRET=[redacted]"}
    assert messages[1]["content"] == [{"type": "text", "text": "look closely at"},
                                      {"type": "image_url", "image_url": {"url": "u"}}]
    assert messages[2] == {"role": "assistant", "content": "Let me read it.", "reasoning_content": "thinking",
                           "tool_calls": [CALL]}


def test_new_messages_reorder_and_drop() -> None:
    items = to_context_messages(WINDOW)
    result = apply_context_messages(WINDOW, [
        items[0],
        {"index": -1, "role": "system", "content": "Be brief."},
        items[1], items[2], items[3],
        {"index": -1, "role": "user", "content": "Injected note."},
    ])
    assert [m["role"] for m in result.messages] == ["system", "system", "user", "assistant", "tool", "user"]
    assert result.messages[1] == {"role": "system", "content": "Be brief."}
    assert not result.problems


def test_read_only_fields_and_bad_indexes_are_reported() -> None:
    items = to_context_messages(WINDOW[:2])
    items[1]["role"] = "system"
    items.append({"index": 99, "role": "user", "content": "far away"})
    result = apply_context_messages(WINDOW[:2], items)
    assert result.messages[1]["role"] == "user"
    assert result.messages[2] == {"role": "user", "content": "far away"}
    assert any("role 'system' ignored" in p for p in result.problems)
    assert any("index 99 is out of range" in p for p in result.problems)


def test_orphan_tool_result_is_dropped() -> None:
    items = to_context_messages(WINDOW)
    del items[2]  # the assistant message holding the call
    result = apply_context_messages(WINDOW, items)
    assert [m["role"] for m in result.messages] == ["system", "user", "assistant"]
    assert result.problems == ["tool result 'c1' has no matching assistant tool call just before it; dropped"]


def test_tool_result_separated_from_its_call_is_an_orphan() -> None:
    items = to_context_messages(WINDOW)
    items.insert(3, {"index": -1, "role": "user", "content": "interrupting"})
    result = apply_context_messages(WINDOW, items)
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "user", "user", "assistant"]  # the call lost its result, so it went too
    assert len(result.problems) == 3


def test_unanswered_call_is_removed_but_text_kept() -> None:
    window: list[dict[str, Any]] = [{"role": "user", "content": "q"},
              {"role": "assistant", "content": "Two reads.", "tool_calls": [CALL, {**CALL, "id": "c2"}]},
              {"role": "tool", "tool_call_id": "c1", "content": "one"},
              {"role": "tool", "tool_call_id": "c2", "content": "two"}]
    items = to_context_messages(window)
    del items[3]  # drop the result of c2
    result = apply_context_messages(window, items)
    assert result.messages[1]["tool_calls"] == [CALL]
    assert result.messages[1]["content"] == "Two reads."
    assert result.problems == ["assistant tool call(s) ['c2'] have no result in the window; removed"]
    assert window[1]["tool_calls"] == [CALL, {**CALL, "id": "c2"}]  # original untouched

    del items[2]  # now neither result: the call-only assistant message keeps its text
    assert "tool_calls" not in apply_context_messages(window, items).messages[1]


def test_duplicate_tool_result_is_dropped() -> None:
    items = to_context_messages(WINDOW)
    items.insert(4, items[3])
    result = apply_context_messages(WINDOW, items)
    assert [m["role"] for m in result.messages].count("tool") == 1
    assert len(result.problems) == 1
