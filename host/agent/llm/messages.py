"""The request side of the litellm boundary: kithost messages as a clean litellm ``messages`` list.

kithost messages are plain OpenAI-format dicts, possibly carrying kithost-only
keys (an entry id, ``reasoning_content``). :func:`to_litellm_messages` keeps
what every provider accepts and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["to_litellm_messages"]

_ROLES: Final = ("system", "user", "assistant", "tool", "developer")
_MESSAGE_KEYS: Final = ("role", "content", "name", "tool_calls", "tool_call_id")


def to_litellm_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A litellm request's ``messages`` from kithost messages.

    Keeps only ``role``, ``content``, ``name``, ``tool_calls`` and
    ``tool_call_id`` (kithost-only keys and ``reasoning_content`` are dropped:
    some providers reject reasoning in input); tool call arguments given as a
    mapping are serialised to JSON; an assistant message with tool calls and
    empty text gets ``content: None``. Raises ``ValueError`` for a message
    without a known role.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"message {i}: unknown role {role!r}")
        clean = {k: message[k] for k in _MESSAGE_KEYS if k in message and message[k] is not None}
        clean.setdefault("content", "")
        calls = message.get("tool_calls")
        if calls:
            clean["tool_calls"] = [_tool_call(c) for c in calls]
            if clean["content"] == "":
                clean["content"] = None
        elif "tool_calls" in clean:
            del clean["tool_calls"]
        out.append(clean)
    return out


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    arguments = fn.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": call.get("id", ""), "type": "function",
            "function": {"name": fn.get("name", ""), "arguments": arguments}}
