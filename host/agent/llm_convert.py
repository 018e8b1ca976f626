"""The litellm boundary (kit's ``llm_convert``): the only module that handles litellm's types.

* :func:`litellm_module` imports litellm lazily (~3 s), once, with offline-safe
  defaults: ``LITELLM_LOCAL_MODEL_COST_MAP=True``,
  ``LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True`` and ``HF_HUB_OFFLINE=1`` unless
  the environment already sets them, and ``litellm.suppress_debug_info``.
* :func:`to_litellm_messages` turns kithost messages (plain OpenAI-format dicts)
  into a clean litellm request.
* :func:`stream_completion` / :func:`astream_completion` make one streamed call
  and yield :mod:`host.agent.llm_events` values (order documented there).

Retries are done here, not by litellm: litellm's ``num_retries`` is invisible
to the caller, and kit's ``retry`` event needs each attempt and its error. A
call is retried (exponential backoff: ``retry_base_delay_s * 2**(n-1)``, capped)
only when the error is transient (429, 5xx, timeouts, connection errors;
"missing credentials" is not) **and** nothing was streamed yet, so a retry
never duplicates output. Anything else raises
:class:`host.agent.errors.LLMCallError`; litellm exceptions never escape.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import LLMCallError
from .llm_events import (
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

__all__ = [
    "OFFLINE_ENV",
    "ErrorInfo",
    "classify_error",
    "litellm_module",
    "stream_completion",
    "to_litellm_messages",
]

#: Environment defaults applied before litellm is imported (never overriding the user's).
OFFLINE_ENV: Final[Mapping[str, str]] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "HF_HUB_OFFLINE": "1",
}

_RETRYABLE_KINDS: Final = frozenset({
    "RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError", "Timeout",
    "APIConnectionError", "MidStreamFallbackError",
})
_RETRYABLE_STATUS: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_NOT_TRANSIENT_HINTS: Final = ("missing credentials", "api key", "api_key", "authentication")
_MESSAGE_KEYS: Final = ("role", "content", "name", "tool_calls", "tool_call_id")

_import_lock = threading.Lock()
_litellm: Any = None


def litellm_module() -> Any:
    """The litellm module, imported on first use with :data:`OFFLINE_ENV` defaults."""
    global _litellm
    if _litellm is None:
        with _import_lock:
            if _litellm is None:
                for key, value in OFFLINE_ENV.items():
                    os.environ.setdefault(key, value)
                module: Any = importlib.import_module("litellm")
                module.suppress_debug_info = True
                _litellm = module
    return _litellm


# --------------------------------------------------------------------------- request


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
        if role not in ("system", "user", "assistant", "tool", "developer"):
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


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an exception from a model call means for us."""

    kind: str
    status_code: int | None
    retryable: bool
    message: str
    #: True when litellm says the error came before the first chunk reached us.
    pre_first_chunk: bool = False


def classify_error(exc: BaseException) -> ErrorInfo:
    """Classify ``exc`` (litellm's mid-stream wrapper is unwrapped to its original error)."""
    pre_first = False
    if type(exc).__name__ == "MidStreamFallbackError":
        pre_first = bool(getattr(exc, "is_pre_first_chunk", False))
        original = getattr(exc, "original_exception", None)
        if isinstance(original, BaseException):
            exc = original
    kind = type(exc).__name__
    raw_status = getattr(exc, "status_code", None)
    status = raw_status if isinstance(raw_status, int) else None
    message = str(getattr(exc, "message", "") or exc) or kind
    retryable = kind in _RETRYABLE_KINDS or (status in _RETRYABLE_STATUS)
    if kind in ("AuthenticationError", "PermissionDeniedError", "NotFoundError") or (
        status is not None and 400 <= status < 500 and status not in _RETRYABLE_STATUS
    ):
        retryable = False
    if retryable and any(h in message.lower() for h in _NOT_TRANSIENT_HINTS):
        retryable = False
    return ErrorInfo(kind, status, retryable, message, pre_first)


def _delay(attempt: int, base: float, cap: float) -> float:
    return float(min(cap, base * 2 ** (attempt - 1)))


def _call_error(info: ErrorInfo, attempts: int, partial: bool) -> LLMCallError:
    tail = f" (after {attempts} attempts)" if attempts > 1 else ""
    return LLMCallError(f"{info.message}{tail}", kind=info.kind, status_code=info.status_code,
                        retryable=info.retryable, attempts=attempts, partial=partial)


# --------------------------------------------------------------------------- chunks → events


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


class _Assembler:
    """Turns litellm stream chunks into events and builds the final message."""

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

    def feed(self, chunk: Any) -> list[StreamEvent]:
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


def _provider(litellm: Any, model: str) -> str:
    try:
        return str(litellm.get_llm_provider(model)[1])
    except Exception:  # noqa: BLE001 - unknown provider: not our problem here, the call will say
        return model.split("/", 1)[0] if "/" in model else ""


def _request(model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
             timeout_s: float | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
    from . import scripted_provider

    if scripted_provider.is_scripted(model):
        scripted_provider.ensure_registered()
    request: dict[str, Any] = {
        **(params or {}),
        "model": model,
        "messages": to_litellm_messages(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "num_retries": 0,
    }
    if tools:
        request["tools"] = [dict(t) for t in tools]
    if timeout_s is not None:
        request["timeout"] = timeout_s
    return request


# --------------------------------------------------------------------------- the calls


def stream_completion(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    num_retries: int = 2,
    retry_base_delay_s: float = 1.0,
    retry_max_delay_s: float = 30.0,
    timeout_s: float | None = None,
    params: Mapping[str, Any] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[StreamEvent]:
    """Stream one model call as kithost events (see :mod:`host.agent.llm_events` for the order).

    ``tools`` are OpenAI function specs; ``params`` are passed to
    ``litellm.completion`` as is (``temperature``, ``api_base``, ``script`` for
    the scripted provider...). Setting ``cancel`` stops the stream at the next
    chunk (or the retry wait) and finishes with reason ``cancelled``. Raises
    :class:`LLMCallError` when the call fails for good.
    """
    litellm = litellm_module()
    request = _request(model, messages, tools, timeout_s, params)
    provider = _provider(litellm, model)
    attempt = 0
    while True:
        attempt += 1
        asm = _Assembler(model, provider)
        stream: Any = None
        try:
            stream = litellm.completion(**request)
            for chunk in stream:
                if cancel is not None and cancel.is_set():
                    yield from asm.finish(litellm, cancelled=True)
                    return
                yield from asm.feed(chunk)
        except Exception as exc:  # every failure is classified and converted
            info = classify_error(exc)
            if info.retryable and not asm.streamed and attempt <= num_retries:
                delay = _delay(attempt, retry_base_delay_s, retry_max_delay_s)
                yield Retry(attempt, info.message, delay)
                if cancel is not None:
                    if cancel.wait(delay):
                        yield from asm.finish(litellm, cancelled=True)
                        return
                else:
                    time.sleep(delay)
                continue
            raise _call_error(info, attempt, asm.streamed) from exc
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing a finished stream is best effort
                    pass
        yield from asm.finish(litellm)
        return

