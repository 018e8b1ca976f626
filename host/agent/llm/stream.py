"""One streamed model call as kithost's own events: :func:`stream_completion`.

The call goes through ``litellm.completion`` (imported lazily by
:mod:`.litellm_loader`; a registered custom provider such as ``scripted`` is
installed first, :mod:`.providers`) and yields :mod:`host.agent.llm.events`
values in the order documented there; no litellm type leaves this package.

Retries are done here (with tenacity, :mod:`.retry`), not by litellm:
litellm's ``num_retries`` is invisible to the caller, and kit's ``retry``
event needs each attempt and its error. A call is retried (exponential
backoff: ``retry_base_delay_s * 2**(n-1)``, capped at ``retry_max_delay_s``;
the wait ends early on ``cancel``) only when the error is transient
(:func:`.classify.classify_error`) **and** nothing was streamed yet, so a
retry never duplicates output. Anything else raises
:class:`host.agent.errors.LLMCallError` (with the number of calls made);
litellm exceptions never escape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .assembler import StreamAssembler
from .classify import call_error, classify_error
from .events import Retry, StreamEvent
from .litellm_loader import litellm_module
from .messages import to_litellm_messages
from .providers import install_provider, provider_for
from .retry import retry_stream

__all__ = ["stream_completion"]


def _provider(litellm: Any, model: str) -> str:
    try:
        return str(litellm.get_llm_provider(model)[1])
    except Exception:  # noqa: BLE001 - unknown provider: not our problem here, the call will say
        return model.split("/", 1)[0] if "/" in model else ""


def _request(model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
             timeout_s: float | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
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
    """Stream one model call as kithost events (see :mod:`host.agent.llm.events` for the order).

    ``tools`` are OpenAI function specs; ``params`` are passed to
    ``litellm.completion`` as is (``temperature``, ``api_base``, ``script`` for
    the scripted provider...). Setting ``cancel`` stops the stream at the next
    chunk (or the retry wait) and finishes with reason ``cancelled``. Raises
    :class:`~host.agent.errors.LLMCallError` when the call fails for good.
    """
    litellm = litellm_module()
    custom = provider_for(model)
    if custom is not None:
        install_provider(litellm, custom)
    request = _request(model, messages, tools, timeout_s, params)
    provider = _provider(litellm, model)
    current = StreamAssembler(model, provider)
    attempts = 0

    def attempt() -> Iterator[StreamEvent]:
        """One call: its content events; a cancel ends it early (``current.cancelled``)."""
        nonlocal current, attempts
        attempts += 1
        current = asm = StreamAssembler(model, provider)
        stream: Any = None
        try:
            stream = litellm.completion(**request)
            for chunk in stream:
                if cancel is not None and cancel.is_set():
                    asm.cancelled = True
                    return
                yield from asm.feed(chunk)
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing a finished stream is best effort
                    pass

    def should_retry(exc: BaseException) -> bool:
        return classify_error(exc).retryable and not current.streamed

    def retry_event(failed: int, exc: BaseException, delay: float) -> StreamEvent:
        return Retry(failed, classify_error(exc).message, delay)

    try:
        finished = yield from retry_stream(attempt, num_retries=num_retries, base_delay_s=retry_base_delay_s,
                                           max_delay_s=retry_max_delay_s, should_retry=should_retry,
                                           on_retry=retry_event, cancel=cancel)
    except Exception as exc:  # every failure is classified and converted; litellm's never escape
        raise call_error(classify_error(exc), attempts, current.streamed) from exc
    yield from current.finish(litellm, cancelled=current.cancelled or not finished)
