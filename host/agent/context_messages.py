"""Context messages: the window as extensions see it, and applying their edits back.

:func:`to_context_messages` projects OpenAI-format messages to the event
schema's ``CONTEXT_MESSAGE`` list (``context_prepare``, ``prepare_step``,
``ctx.get_messages``): ``{index, role, content}`` plus, read-only,
``tool_calls`` (``[{id, name, arguments}]``) of an assistant message and
``tool_call_id`` of a tool message. ``content`` is the message's text (text
parts of a multi-part content joined with newlines).

:func:`apply_context_messages` builds the new window from a handler's list:

* ``index >= 0`` reuses original message ``index`` — its tool calls, tool call
  id, reasoning and non-text parts are kept; if ``content`` differs from the
  original text, only the text is replaced. ``role``, ``tool_calls`` and
  ``tool_call_id`` in the returned item are ignored (read-only).
* ``index == -1`` makes a new text-only message from ``role`` and ``content``.
* Any other index (out of range) is treated like ``-1`` and reported (kit does
  the same without saying so).

Then the window is made valid for every provider, and each repair is
reported in :attr:`Applied.problems` (the caller logs it against the handler):

* a ``tool`` message must directly follow (possibly after other tool
  messages) the assistant message holding its call; otherwise it is an
  **orphan and is dropped** — a provider would reject the whole request;
* an assistant tool call left without its result (the handler dropped or
  moved it) is removed from that assistant message; an assistant message
  left with neither text nor tool calls is dropped.

We repair rather than refuse: the handler's intent (hide, reorder, inject)
is kept as far as the providers allow, and nothing is silent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["CONTEXT_ROLES", "Applied", "apply_context_messages", "message_text", "to_context_messages"]

#: Roles a context message may have (the schema's enum).
CONTEXT_ROLES: Final = ("system", "user", "assistant", "tool")


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message: string content, or its text parts joined with newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if _is_text_part(p))
    return ""


def _is_text_part(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type", "text") == "text" and isinstance(part.get("text"), str)


def _project(index: int, message: Mapping[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role not in CONTEXT_ROLES:
        raise ValueError(f"message {index}: role {role!r} cannot be a context message (roles: {CONTEXT_ROLES})")
    item: dict[str, Any] = {"index": index, "role": role, "content": message_text(message)}
    if role == "assistant" and message.get("tool_calls"):
        item["tool_calls"] = [
            {"id": str(c.get("id", "")), "name": str((c.get("function") or {}).get("name", "")),
             "arguments": _arguments((c.get("function") or {}).get("arguments", ""))}
            for c in message["tool_calls"]
        ]
    if role == "tool":
        item["tool_call_id"] = str(message.get("tool_call_id", ""))
    return item


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def to_context_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``CONTEXT_MESSAGE`` list for ``messages`` (``index`` = position); ``ValueError`` on an unknown role."""
    return [_project(i, m) for i, m in enumerate(messages)]


@dataclass
class Applied:
    """The window built from a handler's list, and what had to be repaired."""

    messages: list[dict[str, Any]]
    #: One sentence per repair (orphan dropped, unanswered call removed, bad index...).
    problems: list[str] = field(default_factory=list)


def _with_text(original: Mapping[str, Any], text: str) -> dict[str, Any]:
    """A copy of ``original`` whose text is ``text`` (non-text parts kept)."""
    out = copy.deepcopy(dict(original))
    content = original.get("content")
    if isinstance(content, list):
        others = [copy.deepcopy(p) for p in content if not _is_text_part(p)]
        out["content"] = [{"type": "text", "text": text}, *others] if text else others
    else:
        out["content"] = text
    return out


def apply_context_messages(original: Sequence[Mapping[str, Any]],
                           items: Sequence[Mapping[str, Any]]) -> Applied:
    """The new window for handler result ``items`` over ``original`` (rules in the module doc).

    ``items`` must already match the ``CONTEXT_MESSAGE`` schema (the dispatcher
    checks results); ``original`` is not modified.
    """
    problems: list[str] = []
    built: list[dict[str, Any]] = []
    for pos, item in enumerate(items):
        index = item.get("index", -1)
        role = str(item.get("role", "user"))
        content = str(item.get("content", ""))
        if isinstance(index, int) and 0 <= index < len(original):
            source = original[index]
            if role != source.get("role"):
                problems.append(f"item {pos}: role {role!r} ignored; message {index} stays {source.get('role')!r}")
            same = content == message_text(source)
            built.append(copy.deepcopy(dict(source)) if same else _with_text(source, content))
            continue
        if index != -1:
            problems.append(f"item {pos}: index {index} is out of range (0..{len(original) - 1}); "
                            "treated as a new message")
        built.append({"role": role, "content": content})
    return Applied(_repair_tool_pairs(built, problems), problems)


def _repair_tool_pairs(messages: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    """Drop orphan tool results and unanswered tool calls (each reported in ``problems``)."""
    out: list[dict[str, Any]] = []
    emptied: set[int] = set()  # assistant messages that lost every call and have no text
    open_calls: dict[str, None] = {}  # calls of the assistant message the current tool block answers
    owner: int | None = None  # position in ``out`` of that assistant message

    def close_block() -> None:
        nonlocal owner
        if owner is not None and open_calls:
            assistant = out[owner]
            kept = [c for c in assistant.get("tool_calls") or () if c.get("id") not in open_calls]
            problems.append(f"assistant tool call(s) {sorted(open_calls)} have no result in the window; removed")
            if kept:
                assistant["tool_calls"] = kept
            else:
                assistant.pop("tool_calls", None)
                if not message_text(assistant):
                    emptied.add(owner)
                    problems.append("an assistant message left with neither text nor tool calls was dropped")
        open_calls.clear()
        owner = None

    for message in messages:
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if owner is not None and call_id in open_calls:
                del open_calls[call_id]
                out.append(message)
            else:
                problems.append(f"tool result {call_id!r} has no matching assistant tool call just before it; "
                                "dropped")
            continue
        close_block()
        out.append(message)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            owner = len(out) - 1
            open_calls.update({str(c.get("id")): None for c in message["tool_calls"]})
    close_block()
    return [m for i, m in enumerate(out) if i not in emptied]
