"""The LLM layer: the only code that talks to litellm, and what the agent gets back instead of litellm's types.

Modules (litellm is imported lazily, only by :mod:`.litellm_loader`, never at
kithost import time; nothing here imports the agent core or a provider):

* :mod:`.stream` — :func:`stream_completion`: one streamed call, with retries;
* :mod:`.events` — the stream's events (kithost's own types) and their order;
* :mod:`.assembler` — litellm chunks → those events and the final message;
* :mod:`.messages` — kithost messages → a clean litellm request;
* :mod:`.classify` — what a failure means (retryable or not) → :class:`~host.agent.errors.LLMCallError`;
* :mod:`.retry` — the retry policy around a streamed call (tenacity);
* :mod:`.models` — is a model usable (provider known, key set), how big is its window;
* :mod:`.providers` — the seam through which a custom provider (``scripted``) plugs into litellm;
* :mod:`.litellm_loader` — the lazy, offline-safe litellm import.
"""

from __future__ import annotations

from .events import (
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
from .models import check_model, context_window
from .providers import CustomProvider, register_provider
from .stream import stream_completion

__all__ = [
    "CustomProvider",
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
    "check_model",
    "context_window",
    "register_provider",
    "stream_completion",
]
