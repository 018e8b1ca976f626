"""litellm stream chunks → kithost's stream events: :class:`StreamAssembler`, one per attempt.

Chunks are read duck-typed (objects or mappings), so a provider that leaves a
field out is not an error. What it produces, in order, is the content part of
the sequence documented in :mod:`host.agent.llm.events`; :meth:`StreamAssembler.finish`
adds the rest. A tool call ends (:class:`ToolCallEnd`) when the next call
starts or the stream ends. Usage is the last chunk's that carries one; the
cost is the provider's (litellm's usage chunk) or litellm's cost map's, and
``None`` — never a silent 0 — when neither knows the model.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .events import (
    Finish,
    ReasoningDelta,
    Source,
    StreamEvent,
    StreamWarning,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = ["StreamAssembler"]


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


@dataclass
class _Call:
    index: int
    id: str
    name: str
    arguments: str = ""
    ended: bool = False


class StreamAssembler:
    """One attempt's stream: litellm chunks in (:meth:`feed`), kithost events and the final message out."""

    def __init__(self, model: str, provider: str) -> None:
        self.model = model
        self.provider = provider
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.finish_reason = ""
        self.usage: Any = None
        self.request_id = ""
        self.sources = 0
        #: True once a content event (text, reasoning, tool call) was produced.
        self.streamed = False
        #: Set by the caller when it stopped reading the stream (the finish reason becomes ``cancelled``).
        self.cancelled = False

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """The events of one chunk (content as it arrives, a tool call's end when the next one starts)."""
        out: list[StreamEvent] = []
        if not self.request_id:
            self.request_id = str(_get(chunk, "id") or "")
        usage = _get(chunk, "usage")
        if usage is not None:
            self.usage = usage
        out.extend(StreamWarning(str(w)) for w in _warnings(_get(chunk, "provider_specific_fields")))
        for choice in _get(chunk, "choices") or ():
            delta = _get(choice, "delta")
            out.extend(StreamWarning(str(w)) for w in _warnings(_get(delta, "provider_specific_fields")))
            reasoning = _get(delta, "reasoning_content")
            if reasoning:
                self.reasoning.append(reasoning)
                out.append(ReasoningDelta(reasoning))
            content = _get(delta, "content")
            if content:
                self.text.append(content)
                out.append(TextDelta(content))
            for annotation in _get(delta, "annotations") or ():
                citation = _get(annotation, "url_citation")
                if citation is not None:
                    out.append(Source("url", str(self.sources), str(_get(citation, "url") or ""),
                                      str(_get(citation, "title") or "")))
                    self.sources += 1
            for fragment in _get(delta, "tool_calls") or ():
                out.extend(self._tool_fragment(fragment))
            reason = _get(choice, "finish_reason")
            if reason:
                self.finish_reason = str(reason)
        if any(not isinstance(e, StreamWarning | Source) for e in out):
            self.streamed = True
        return out

    def _tool_fragment(self, fragment: Any) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        raw_index = _get(fragment, "index")
        fn = _get(fragment, "function")
        name = _get(fn, "name")
        args = _get(fn, "arguments") or ""
        call_id = _get(fragment, "id")
        if isinstance(raw_index, int):
            index = raw_index
        else:  # no index: match by id, else a new call
            index = next((c.index for c in self.calls.values() if call_id and c.id == call_id), len(self.calls))
        call = self.calls.get(index)
        if call is None:
            for earlier in self.calls.values():
                if not earlier.ended:
                    out.append(self._end(earlier))
            call = _Call(index, str(call_id or f"call_{uuid.uuid4().hex[:12]}"), str(name or ""))
            self.calls[index] = call
            out.append(ToolCallStart(index, call.id, call.name))
        elif name and not call.name:
            call.name = str(name)
        if args:
            call.arguments += args
            out.append(ToolCallDelta(index, call.id, args))
        return out

    @staticmethod
    def _end(call: _Call) -> ToolCallEnd:
        call.ended = True
        return ToolCallEnd(call.index, call.id, call.name, call.arguments)

    def message(self) -> dict[str, Any]:
        """The assistant message assembled so far (OpenAI format)."""
        calls = [self.calls[i] for i in sorted(self.calls)]
        text = "".join(self.text)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        return message

    def finish(self, litellm: Any, cancelled: bool = False) -> list[StreamEvent]:
        """The closing events: open tool calls' ends, warnings, one :class:`Usage`, one :class:`Finish`."""
        out: list[StreamEvent] = [self._end(c) for c in self.calls.values() if not c.ended]
        usage, warnings = _usage(litellm, self.model, self.usage)
        if not (cancelled and self.usage is None):  # a cancelled stream has no usage to speak of
            out.extend(warnings)
        out.append(usage)
        reason = "cancelled" if cancelled else self.finish_reason or ("tool_calls" if self.calls else "stop")
        out.append(Finish(reason, self.message(), self.model, self.provider, self.request_id))
        return out


def _warnings(fields: Any) -> list[Any]:
    value = _get(fields, "warnings")
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list | tuple) else []


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _usage(litellm: Any, model: str, raw: Any) -> tuple[Usage, list[StreamWarning]]:
    if raw is None:
        return Usage(), [StreamWarning(f"{model}: the provider reported no token usage; cost unknown")]
    details = _get(raw, "prompt_tokens_details")
    inp = _int(_get(raw, "prompt_tokens"))
    out = _int(_get(raw, "completion_tokens"))
    cache_read = _int(_get(raw, "cache_read_input_tokens")) or _int(_get(details, "cached_tokens"))
    cache_write = (_int(_get(raw, "cache_creation_input_tokens")) or _int(_get(details, "cache_creation_tokens"))
                   or _int(_get(details, "cache_write_tokens")))
    cost_raw = _get(raw, "cost")
    cost: float | None = float(cost_raw) if isinstance(cost_raw, int | float) else None
    if cost is None:
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=inp, completion_tokens=out,
                cache_read_input_tokens=cache_read, cache_creation_input_tokens=cache_write)
            cost = float(prompt_cost) + float(completion_cost)
        except Exception:  # noqa: BLE001 - litellm raises assorted types for an unmapped model
            cost = None
    warnings: list[StreamWarning] = []
    if cost is not None and cost <= 0 and (inp or out):
        cost = None  # litellm's silent $0 for a model it cannot price
    if cost is None and (inp or out):
        warnings.append(StreamWarning(f"{model}: cost unknown (not in litellm's cost map, or priced 0)"))
    return Usage(inp, out, cache_read, cache_write, cost), warnings
