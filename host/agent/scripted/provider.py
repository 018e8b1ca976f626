"""The offline ``scripted`` provider: a litellm custom provider that plays script files.

``litellm.completion(model="scripted/<anything>", messages=..., script="path/to/script.json")``
plays the next step of that script (format: :mod:`host.agent.scripted.script_file`,
``docs/scripted-provider.md``) with real litellm streaming — sync, async,
streaming and non-streaming all work, tools included — so the agent, the demo
and the tests run with no key and no network.

Contract:

* Importing this module registers the provider with the llm layer
  (:data:`SCRIPTED`, through :func:`host.agent.llm.providers.register_provider`),
  which installs it into litellm before any ``scripted/...`` call; the llm
  layer itself never imports this package. :func:`ensure_registered` installs
  it into ``litellm.custom_provider_map`` at once (for direct
  ``litellm.completion`` calls; other custom providers are kept).
* The script is the call's ``script=`` parameter (litellm passes unknown
  parameters of a custom provider through), else the ``KITHOST_SCRIPT``
  environment variable. Neither → ``BadRequestError`` saying so.
* Each call consumes the next step (one shared cursor per script file, see
  :class:`host.agent.scripted.player.ScriptLibrary`). :func:`reset` rewinds.
  A streamed step tells its player when its stream opens and when it reaches
  its end: a stream abandoned before its end (the agent cancelled the turn)
  makes the player drop the rest of that turn (see :mod:`.player`).
* Streaming order of a message step: reasoning fragments, text fragments,
  citation annotations, tool calls (first fragment carries id and name, the
  rest carry argument fragments), one usage chunk, the finish chunk. Provider
  warnings ride on the first chunk as ``delta.provider_specific_fields["warnings"]``.
* An error step raises the litellm exception it names, at call time (so
  retries see it) or, with ``after_text``, mid-stream after that text.
* A broken script or a failed ``expect`` raises ``litellm.BadRequestError``
  (400, never retried) whose message is the :class:`host.agent.errors.ScriptError`.
* Cost: before each call the script's pricing is registered for
  ``scripted/<model>`` (``litellm.register_model``), so litellm's usage chunk
  carries a cost; ``"pricing": null`` leaves the model unpriced (cost unknown).

litellm is imported lazily (only when a function here is called).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Final

from ..errors import ScriptError
from ..llm.litellm_loader import litellm_module
from ..llm.providers import CustomProvider, install_provider, register_provider
from .player import Played, ScriptLibrary, ScriptPlayer
from .script import ErrorStep, MessageStep, Pricing, Script, fragments, resolve_usage

__all__ = ["CONTEXT_WINDOW", "LIBRARY", "PROVIDER", "SCRIPTED", "SCRIPT_ENV", "ensure_registered", "is_scripted",
           "reset"]

#: The provider name: models are ``scripted/<anything>``.
PROVIDER: Final = "scripted"
#: Environment variable naming the script when a call passes no ``script=``.
SCRIPT_ENV: Final = "KITHOST_SCRIPT"
#: The input limit of every scripted model (also what its pricing registers with litellm).
CONTEXT_WINDOW: Final = 1_000_000
#: Every script player of this process, by file.
LIBRARY: Final = ScriptLibrary()

_lock = threading.Lock()
_registered_prices: dict[str, Pricing | None] = {}


def is_scripted(model: str) -> bool:
    """Whether ``model`` names this provider (``scripted/...``)."""
    return model.startswith(PROVIDER + "/")


def reset(path: str | os.PathLike[str] | None = None) -> None:
    """Rewind the script at ``path`` (or every script) to its first step."""
    LIBRARY.reset(path)


def _make_handler(litellm: Any) -> Any:
    """The ``litellm.CustomLLM`` serving ``scripted/...`` (built when litellm is loaded)."""
    return type("ScriptedLLM", (_ScriptedHandler, litellm.CustomLLM), {})()


def ensure_registered() -> None:
    """Install the provider into litellm now (idempotent, thread-safe; imports litellm)."""
    install_provider(litellm_module(), SCRIPTED)


# --------------------------------------------------------------------------- per call


def _register_price(model_key: str, pricing: Pricing | None) -> None:
    """Make litellm's cost map say what the script says about ``model_key``."""
    with _lock:
        known = _registered_prices.get(model_key, "unset")
        if known == pricing:
            return
        if pricing is None and known == "unset":
            return  # never priced here: leave it out of the map (cost unknown)
        # Unpricing a model priced earlier: litellm caches model info, so zero it (0 = unknown to us).
        info = (pricing or Pricing(0.0, 0.0, 0.0, 0.0)).as_model_info(PROVIDER, CONTEXT_WINDOW)
        litellm_module().register_model({model_key: info})
        _registered_prices[model_key] = pricing


def _bad_request(model: str, message: str) -> Exception:
    litellm = litellm_module()
    return litellm.BadRequestError(message=message, model=model, llm_provider=PROVIDER)  # type: ignore[no-any-return]


def _error(step: ErrorStep, model: str) -> Exception:
    litellm = litellm_module()
    cls = getattr(litellm, step.error)
    kwargs: dict[str, Any] = {"message": step.message, "llm_provider": PROVIDER, "model": model}
    if step.error == "PermissionDeniedError":
        import httpx  # a litellm dependency; only this error insists on a response object

        request = httpx.Request("POST", "https://scripted.invalid/v1/chat/completions")
        kwargs["response"] = httpx.Response(403, request=request)
    return cls(**kwargs)  # type: ignore[no-any-return]


def _tool_names(optional_params: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for tool in optional_params.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
    return names


def _begin(model: str, messages: Sequence[Mapping[str, Any]], optional_params: Mapping[str, Any]
           ) -> tuple[ScriptPlayer, Played]:
    """The script and step for this call; no script, a broken one or a failed ``expect`` → BadRequestError."""
    path = optional_params.get("script") or os.environ.get(SCRIPT_ENV)
    if not path:
        raise _bad_request(model, f"scripted model {PROVIDER}/{model} needs a script: pass script=PATH to the "
                                  f"call or set {SCRIPT_ENV}")
    try:
        player = LIBRARY.player(str(path))
        _register_price(f"{PROVIDER}/{model}", player.script.pricing)
        played = player.next(messages, _tool_names(optional_params))
    except ScriptError as exc:
        raise _bad_request(model, str(exc)) from None
    return player, played


def _usage(litellm: Any, step: MessageStep, messages: Sequence[Mapping[str, Any]]) -> Any:
    u = resolve_usage(step, messages)
    assert u.input_tokens is not None and u.output_tokens is not None
    return litellm.Usage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.input_tokens + u.output_tokens,
        prompt_tokens_details={"cached_tokens": u.cache_read_tokens},
        cache_creation_input_tokens=u.cache_write_tokens,
        cache_read_input_tokens=u.cache_read_tokens,
    )


def _annotations(step: MessageStep) -> list[dict[str, Any]]:
    return [{"type": "url_citation", "url_citation": {"url": url, "title": title, "start_index": 0,
                                                      "end_index": 0}} for url, title in step.sources]


def _deltas(script: Script, played: Played, messages: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The keyword arguments of each streamed chunk (``delta`` fields plus ``usage``/``finish_reason``)."""
    step = played.step
    if isinstance(step, ErrorStep):
        for frag in fragments(step.after_text, script.chunk_size):
            yield {"delta": {"content": frag}}
        return
    size = step.chunk_size or script.chunk_size
    out: list[dict[str, Any]] = []
    for text in step.reasoning:
        out.extend({"delta": {"reasoning_content": f}} for f in fragments(text, size))
    for text in step.text:
        out.extend({"delta": {"content": f}} for f in fragments(text, size))
    if step.sources:
        out.append({"delta": {"annotations": _annotations(step)}})
    for i, call in enumerate(step.tool_calls):
        parts = fragments(call.arguments, size) or [""]
        out.append({"delta": {"tool_calls": [{"index": i, "id": played.tool_call_id(i), "type": "function",
                                              "function": {"name": call.name, "arguments": parts[0]}}]}})
        out.extend({"delta": {"tool_calls": [{"index": i, "type": "function", "function": {"arguments": p}}]}}
                   for p in parts[1:])
    if step.warnings:
        if not out:
            out.append({"delta": {"content": ""}})
        out[0]["delta"]["provider_specific_fields"] = {"warnings": list(step.warnings)}
    yield from out
    yield {"delta": {}, "usage": True}
    yield {"delta": {}, "finish_reason": step.resolved_finish_reason}


def _chunk(litellm: Any, spec: Mapping[str, Any], step: Played, messages: Sequence[Mapping[str, Any]]) -> Any:
    types = importlib.import_module("litellm.types.utils")
    delta = types.Delta(**spec["delta"])
    choice = types.StreamingChoices(index=0, delta=delta, finish_reason=spec.get("finish_reason"))
    chunk = litellm.ModelResponseStream(choices=[choice])
    if spec.get("usage"):
        assert isinstance(step.step, MessageStep)
        chunk.usage = _usage(litellm, step.step, messages)
    return chunk


class _ScriptedHandler:
    """The provider's methods; combined with ``litellm.CustomLLM`` at registration time.

    litellm calls ``streaming``/``astreaming`` and wraps what they *return*, so
    they are plain functions: an error step raises here, at call time, where
    litellm's retry and exception mapping see it; chunks come from the
    returned iterator.
    """

    def completion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        """Non-streaming answer: the whole step as one ``ModelResponse``."""
        litellm = litellm_module()
        _, played = _begin(model, messages, _optional_params(args, kwargs))
        step = played.step
        if isinstance(step, ErrorStep):
            raise _error(step, model)
        message: dict[str, Any] = {"role": "assistant", "content": step.full_text or None}
        if step.reasoning:
            message["reasoning_content"] = step.full_reasoning
        if step.tool_calls:
            message["tool_calls"] = [
                {"id": played.tool_call_id(i), "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for i, c in enumerate(step.tool_calls)
            ]
        if step.warnings:
            message["provider_specific_fields"] = {"warnings": list(step.warnings)}
        if step.sources:
            message["annotations"] = _annotations(step)
        return litellm.ModelResponse(
            model=model,
            choices=[{"index": 0, "finish_reason": step.resolved_finish_reason, "message": message}],
            usage=_usage(litellm, step, messages),
        )

    async def acompletion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        """Async non-streaming answer (same as :meth:`completion`)."""
        return self.completion(model, messages, *args, **kwargs)

    def streaming(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Streamed answer (sync)."""
        litellm = litellm_module()
        player, played = _begin(model, messages, _optional_params(args, kwargs))
        step = played.step
        if isinstance(step, ErrorStep) and not step.after_text:
            raise _error(step, model)
        delay = step.chunk_delay_ms / 1000 if isinstance(step, MessageStep) else 0.0
        script = player.script

        def chunks() -> Iterator[Any]:
            for i, spec in enumerate(_deltas(script, played, messages)):
                if delay and i:
                    time.sleep(delay)
                yield _chunk(litellm, spec, played, messages)
            player.stream_closed(played)
            if isinstance(step, ErrorStep):
                raise _error(step, model)

        player.stream_opened(played)
        return chunks()

    def astreaming(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
                   ) -> AsyncIterator[Any]:
        """Streamed answer (async)."""
        litellm = litellm_module()
        player, played = _begin(model, messages, _optional_params(args, kwargs))
        step = played.step
        if isinstance(step, ErrorStep) and not step.after_text:
            raise _error(step, model)
        delay = step.chunk_delay_ms / 1000 if isinstance(step, MessageStep) else 0.0
        script = player.script

        async def chunks() -> AsyncIterator[Any]:
            for i, spec in enumerate(_deltas(script, played, messages)):
                if delay and i:
                    await asyncio.sleep(delay)
                yield _chunk(litellm, spec, played, messages)
            player.stream_closed(played)
            if isinstance(step, ErrorStep):
                raise _error(step, model)

        player.stream_opened(played)
        return chunks()


def _optional_params(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """litellm's ``optional_params`` (keyword in 1.106; positional #8 after model and messages)."""
    if "optional_params" in kwargs:
        return kwargs["optional_params"]  # type: ignore[no-any-return]
    if len(args) >= 8 and isinstance(args[7], Mapping):
        return args[7]
    return {}


#: The provider as the llm layer knows it; registered when this module is imported.
SCRIPTED: Final = CustomProvider(PROVIDER, _make_handler, CONTEXT_WINDOW)
register_provider(SCRIPTED)
