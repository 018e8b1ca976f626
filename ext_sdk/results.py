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

Results are values: immutable, equal when of the same class with equal
fields, hashable (when their fields are), with a ``repr`` naming the fields —
what frozen dataclasses gave, from :class:`ext_sdk.frozen.Frozen`, because
``import dataclasses`` (it imports ``inspect``) costs ~12 ms of an extension
process's start-up (issue 10, measured with ``-X importtime``), and most
extensions import a result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .frozen import Frozen

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
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


class Result(Frozen):
    """Base of typed results: values over the fields named in :attr:`~ext_sdk.frozen.Frozen.FIELDS`."""

    __slots__ = ()
    #: Events this result is meant for (checked again against the schema).
    events: ClassVar[frozenset[str]] = frozenset()

    def to_map(self) -> dict[str, Any]:
        """The plain result map."""
        raise NotImplementedError


_set = object.__setattr__


class Block(Result):
    """Block a tool call; the model gets ``Error: <reason>``."""

    __slots__ = ("reason",)
    events = frozenset({"tool_call"})
    FIELDS = __slots__
    reason: str

    def __init__(self, reason: str = "blocked by extension") -> None:
        _set(self, "reason", reason)

    def to_map(self) -> dict[str, Any]:
        return {"block": True, "reason": self.reason}


class Cancel(Result):
    """Cancel a fork, a session switch or a compaction."""

    __slots__ = ("reason",)
    events = frozenset({"before_fork", "before_session_switch", "before_compact"})
    FIELDS = __slots__
    reason: str

    def __init__(self, reason: str = "cancelled by extension") -> None:
        _set(self, "reason", reason)

    def to_map(self) -> dict[str, Any]:
        return {"cancel": True, "reason": self.reason}


class Summary(Result):
    """Supply the compaction summary instead of the model's."""

    __slots__ = ("text",)
    events = frozenset({"before_compact"})
    FIELDS = __slots__
    text: str

    def __init__(self, text: str) -> None:
        _set(self, "text", text)

    def to_map(self) -> dict[str, Any]:
        return {"summary": self.text}


class Transform(Result):
    """Replace the prompt's text (later handlers and the model see the new text)."""

    __slots__ = ("text",)
    events = frozenset({"input"})
    FIELDS = __slots__
    text: str

    def __init__(self, text: str) -> None:
        _set(self, "text", text)

    def to_map(self) -> dict[str, Any]:
        return {"action": "transform", "text": self.text}


class Handled(Result):
    """The extension handled the prompt: the turn stops, the model is not called."""

    __slots__ = ("reason",)
    events = frozenset({"input"})
    FIELDS = __slots__
    reason: str

    def __init__(self, reason: str = "handled by extension") -> None:
        _set(self, "reason", reason)

    def to_map(self) -> dict[str, Any]:
        return {"action": "handled", "reason": self.reason}


class Continue(Result):
    """Let the prompt through unchanged (same as returning ``None``)."""

    __slots__ = ()
    events = frozenset({"input"})

    def to_map(self) -> dict[str, Any]:
        return {"action": "continue"}


class PatchResult(Result):
    """Replace a tool result's content and/or error flag; ``None`` leaves a field as is."""

    __slots__ = ("content", "is_error")
    events = frozenset({"tool_result"})
    FIELDS = __slots__
    content: str | None
    is_error: bool | None

    def __init__(self, content: str | None = None, is_error: bool | None = None) -> None:
        _set(self, "content", content)
        _set(self, "is_error", is_error)

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.content is not None:
            out["content"] = self.content
        if self.is_error is not None:
            out["is_error"] = self.is_error
        return out


class Inject(Result):
    """Set the text injected before the prompt and/or the system prompt for this turn."""

    __slots__ = ("system_prompt", "text")
    events = frozenset({"before_agent_start"})
    FIELDS = ("text", "system_prompt")
    text: str | None
    system_prompt: str | None

    def __init__(self, text: str | None = None, system_prompt: str | None = None) -> None:
        _set(self, "text", text)
        _set(self, "system_prompt", system_prompt)

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.text is not None:
            out["inject_text"] = self.text
        if self.system_prompt is not None:
            out["system_prompt"] = self.system_prompt
        return out


class ReplaceMessages(Result):
    """Replace the context window (``context_prepare``) or the next step's window (``prepare_step``).

    Each message is a map ``{index, role, content}``: ``index >= 0`` keeps
    original message ``index`` (tool calls included) and replaces only its text
    if ``content`` differs; ``index == -1`` adds a new text message.
    """

    __slots__ = ("messages",)
    events = frozenset({"context_prepare", "prepare_step"})
    FIELDS = __slots__
    messages: Sequence[Mapping[str, Any]]

    def __init__(self, messages: Sequence[Mapping[str, Any]]) -> None:
        _set(self, "messages", messages)

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
