"""Typed handler results. Each turns into the plain result map of its event.

A handler may return one of these, a plain ``dict`` matching the event's
result schema, or ``None`` ("no opinion"). The SDK checks the map against the
event's schema before sending, so a wrong result is reported at its source
with the event's name, not as a silent no-op.

=====================  =====================================  =======================
result                 map                                    events
=====================  =====================================  =======================
``Block(reason)``      ``{block: true, reason}``              tool_call
``Cancel(reason)``     ``{cancel: true, reason}``             before_fork,
                                                              before_session_switch,
                                                              before_compact
``Summary(text)``      ``{summary}``                          before_compact
``Transform(text)``    ``{action: "transform", text}``        input
``Handled(reason)``    ``{action: "handled", reason}``        input
``Continue()``         ``{action: "continue"}``               input
``PatchResult(...)``   ``{content?, is_error?}``              tool_result
``Inject(...)``        ``{inject_text?, system_prompt?}``     before_agent_start
``ReplaceMessages(m)`` ``{messages}``                         context_prepare,
                                                              prepare_step
=====================  =====================================  =======================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "Block",
    "Cancel",
    "Continue",
    "Handled",
    "Inject",
    "PatchResult",
    "ReplaceMessages",
    "Result",
    "Summary",
    "Transform",
    "to_plain",
]


class Result:
    """Base of typed results."""

    #: Events this result is meant for (checked again against the schema).
    events: ClassVar[frozenset[str]] = frozenset()

    def to_map(self) -> dict[str, Any]:
        """The plain result map."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Block(Result):
    """Block a tool call; the model gets ``Error: <reason>``."""

    reason: str = "blocked by extension"
    events: ClassVar[frozenset[str]] = frozenset({"tool_call"})

    def to_map(self) -> dict[str, Any]:
        return {"block": True, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Cancel(Result):
    """Cancel a fork, a session switch or a compaction."""

    reason: str = "cancelled by extension"
    events: ClassVar[frozenset[str]] = frozenset({"before_fork", "before_session_switch", "before_compact"})

    def to_map(self) -> dict[str, Any]:
        return {"cancel": True, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Summary(Result):
    """Supply the compaction summary instead of the model's."""

    text: str
    events: ClassVar[frozenset[str]] = frozenset({"before_compact"})

    def to_map(self) -> dict[str, Any]:
        return {"summary": self.text}


@dataclass(frozen=True, slots=True)
class Transform(Result):
    """Replace the prompt's text (later handlers and the model see the new text)."""

    text: str
    events: ClassVar[frozenset[str]] = frozenset({"input"})

    def to_map(self) -> dict[str, Any]:
        return {"action": "transform", "text": self.text}


@dataclass(frozen=True, slots=True)
class Handled(Result):
    """The extension handled the prompt: the turn stops, the model is not called."""

    reason: str = "handled by extension"
    events: ClassVar[frozenset[str]] = frozenset({"input"})

    def to_map(self) -> dict[str, Any]:
        return {"action": "handled", "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Continue(Result):
    """Let the prompt through unchanged (same as returning ``None``)."""

    events: ClassVar[frozenset[str]] = frozenset({"input"})

    def to_map(self) -> dict[str, Any]:
        return {"action": "continue"}


@dataclass(frozen=True, slots=True)
class PatchResult(Result):
    """Replace a tool result's content and/or error flag; ``None`` leaves a field as is."""

    content: str | None = None
    is_error: bool | None = None
    events: ClassVar[frozenset[str]] = frozenset({"tool_result"})

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.content is not None:
            out["content"] = self.content
        if self.is_error is not None:
            out["is_error"] = self.is_error
        return out


@dataclass(frozen=True, slots=True)
class Inject(Result):
    """Set the text injected before the prompt and/or the system prompt for this turn."""

    text: str | None = None
    system_prompt: str | None = None
    events: ClassVar[frozenset[str]] = frozenset({"before_agent_start"})

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.text is not None:
            out["inject_text"] = self.text
        if self.system_prompt is not None:
            out["system_prompt"] = self.system_prompt
        return out


@dataclass(frozen=True, slots=True)
class ReplaceMessages(Result):
    """Replace the context window (``context_prepare``) or the next step's window (``prepare_step``).

    Each message is a map ``{index, role, content}``: ``index >= 0`` keeps
    original message ``index`` (tool calls included) and replaces only its text
    if ``content`` differs; ``index == -1`` adds a new text message.
    """

    messages: Sequence[Mapping[str, Any]]
    events: ClassVar[frozenset[str]] = frozenset({"context_prepare", "prepare_step"})

    def to_map(self) -> dict[str, Any]:
        return {"messages": [_message_map(m) for m in self.messages]}


def _message_map(message: Mapping[str, Any]) -> dict[str, Any]:
    out = {"index": message.get("index", -1), "role": message["role"], "content": message["content"]}
    for key in ("tool_calls", "tool_call_id"):
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def to_plain(event: str, value: object) -> dict[str, Any] | None:
    """Normalise a handler's return value to a plain map (or ``None``).

    Raises ``TypeError`` when a typed result is returned for an event it does
    not apply to, or when the value is neither a result, a map nor ``None``.
    """
    if value is None:
        return None
    if isinstance(value, Result):
        if event not in type(value).events:
            allowed = ", ".join(sorted(type(value).events))
            raise TypeError(f"{type(value).__name__} is not a result for {event!r} (it is for: {allowed})")
        return value.to_map()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"handler for {event!r} returned {type(value).__name__}; expected a result, a dict or None")
