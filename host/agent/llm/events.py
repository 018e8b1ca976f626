"""kithost's own types for one streamed model call (no litellm type ever leaves :mod:`host.agent.llm`).

:func:`host.agent.llm.stream.stream_completion` yields these, in this order:

1. zero or more :class:`Retry` (a transient failure before anything was
   streamed; the call is made again after ``delay_s``);
2. the content events as they arrive: :class:`ReasoningDelta`,
   :class:`TextDelta`, :class:`ToolCallStart` → :class:`ToolCallDelta`\\* →
   :class:`ToolCallEnd` per tool call, :class:`Source`; :class:`StreamWarning`
   may come anywhere;
3. exactly one :class:`Usage`, then exactly one :class:`Finish` carrying the
   assembled assistant message.

A failure that cannot be retried raises :class:`host.agent.errors.LLMCallError`
instead of 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Finish",
    "ReasoningDelta",
    "Retry",
    "Source",
    "StreamEvent",
    "StreamWarning",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A fragment of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A fragment of the model's reasoning (thinking) text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """The model started a tool call (its id and name are known)."""

    #: Position of the call in the message (0-based).
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments."""

    index: int
    id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """A tool call's arguments are complete (the next call started, or the stream ended)."""

    index: int
    id: str
    name: str
    #: The full arguments text (not guaranteed to be valid JSON).
    arguments: str


@dataclass(frozen=True, slots=True)
class Source:
    """The model cited a source (OpenAI ``url_citation`` annotations)."""

    source_type: str
    id: str
    url: str
    title: str


@dataclass(frozen=True, slots=True)
class StreamWarning:
    """A provider warning, or one of ours (e.g. the cost of this model is unknown)."""

    message: str


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure; the call is retried after ``delay_s``."""

    #: Which retry this is: 1 = the second call.
    attempt: int
    #: The error, as text.
    error: str
    #: Seconds waited before the retry.
    delay_s: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one call.

    ``input_tokens`` counts every prompt token, cache reads and writes included.
    ``cost`` is USD, or ``None`` when unknown: the model is missing from
    litellm's cost map, is priced 0 there, or the provider reported no usage.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost: float | None = None

    def tokens(self) -> dict[str, int]:
        """The four counts under the event schema's names (``step_finish``/``llm_usage``)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


@dataclass(frozen=True, slots=True)
class Finish:
    """The call finished; ``message`` is the assistant message to append (OpenAI format).

    ``message`` has ``role`` ``"assistant"``, ``content`` (text, or ``None`` when
    there is only tool calls), and when present ``tool_calls`` and
    ``reasoning_content``. ``reason`` is the provider's finish reason
    (``stop``, ``tool_calls``, ``length``, ...) or ``cancelled``.
    """

    reason: str
    message: dict[str, Any]
    #: The model as requested.
    model: str
    #: litellm's provider name for it (``openai``, ``anthropic``, ``scripted``...), or ''.
    provider: str
    #: The provider's response id, or ''.
    request_id: str


StreamEvent = (TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | ToolCallEnd | Source | StreamWarning
               | Retry | Usage | Finish)
