"""What the agent needs to know about a model before calling it: is it usable, how big is its window.

litellm is reached only through :func:`host.agent.llm.litellm_loader.litellm_module`
(imported lazily, offline-safe), and nothing litellm-typed leaves this module.

* :func:`check_model` raises :class:`host.agent.errors.ModelError` with one
  clear sentence when litellm cannot tell the model's provider, or when the
  provider's API key is not in the environment (and not given as ``api_key``).
  Models of a registered custom provider (:mod:`.providers`, e.g.
  ``scripted/<name>``) are always usable (the provider checks its own inputs).
* :func:`model_capabilities` is what ``ctx.get_model_capabilities`` answers,
  from a custom provider's own info or litellm's local map (``known`` false
  when neither has the model); :func:`usable_models` lists the current model,
  then every model of litellm's map whose provider's key is set (checked once
  per provider).
* :func:`context_window` is the model's input limit: a custom provider's own,
  else litellm's local cost map's, else :data:`DEFAULT_CONTEXT_WINDOW`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..errors import ModelError
from .litellm_loader import litellm_module
from .providers import install_provider, provider_for

__all__ = ["DEFAULT_CONTEXT_WINDOW", "check_model", "context_window", "model_capabilities", "usable_models"]

#: Context window assumed when litellm's map does not know the model.
DEFAULT_CONTEXT_WINDOW: Final = 128_000

#: Parts of an environment variable name that mean "a credential" (others, like OLLAMA_API_BASE, have defaults).
_SECRET_HINTS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIALS")


def check_model(model: str, params: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ModelError` if ``model`` cannot be called (see the module doc)."""
    if not model or not model.strip():
        raise ModelError("no model given; use e.g. --model openai/gpt-4o, or --model scripted/demo --script FILE")
    if provider_for(model) is not None:
        return
    litellm = litellm_module()
    try:
        provider = str(litellm.get_llm_provider(model)[1])
    except Exception:  # noqa: BLE001 - litellm raises BadRequestError (and others) for unknown names
        raise ModelError(f"unknown model {model!r}: litellm cannot tell its provider; write it as "
                         "<provider>/<model>, e.g. openai/gpt-4o or anthropic/claude-sonnet-4-5") from None
    if params and params.get("api_key"):
        return
    try:
        env = litellm.validate_environment(model=model)
    except Exception:  # noqa: BLE001 - a provider litellm cannot check: let the call say what is wrong
        return
    missing = [k for k in env.get("missing_keys") or () if any(h in str(k).upper() for h in _SECRET_HINTS)]
    if missing:
        raise ModelError(f"model {model!r} ({provider}) needs {' and '.join(missing)} in the environment; "
                         "set it, or run offline with --model scripted/<name> --script FILE")


def context_window(model: str) -> int:
    """The model's input limit in tokens (see the module doc)."""
    custom = provider_for(model)
    if custom is not None:
        return custom.context_window
    litellm = litellm_module()
    try:
        info = litellm.get_model_info(model)
    except Exception:  # noqa: BLE001 - unmapped model
        return DEFAULT_CONTEXT_WINDOW
    value = info.get("max_input_tokens") or info.get("max_tokens")
    return int(value) if isinstance(value, int | float) and value > 0 else DEFAULT_CONTEXT_WINDOW


def _model_info(model: str) -> tuple[dict[str, Any], str, bool]:
    """``(info, provider, known)`` from a custom provider or litellm's map."""
    custom = provider_for(model)
    litellm = litellm_module()
    if custom is not None:
        install_provider(litellm, custom)
    try:
        provider = str(litellm.get_llm_provider(model)[1])
    except Exception:  # noqa: BLE001 - unknown provider
        provider = model.split("/", 1)[0] if "/" in model else ""
    try:
        return dict(litellm.get_model_info(model)), provider, True
    except Exception:  # noqa: BLE001 - unmapped model
        return {}, provider, False


def model_capabilities(model: str) -> dict[str, Any]:
    """The ``get_model_capabilities`` value for ``model`` (see the module doc)."""
    info, provider, known = _model_info(model)

    def cost(key: str) -> float | None:
        value = info.get(key)
        return float(value) if isinstance(value, int | float) else None

    return {
        "model": model,
        "provider": provider,
        "context_window": context_window(model),
        "max_output_tokens": int(info.get("max_output_tokens") or 0),
        "supports_tools": bool(info.get("supports_function_calling")),
        "supports_reasoning": bool(info.get("supports_reasoning")),
        "supports_vision": bool(info.get("supports_vision")),
        "input_cost_per_token": cost("input_cost_per_token"),
        "output_cost_per_token": cost("output_cost_per_token"),
        "known": known,
    }


def usable_models(current: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``get_models`` value (see the module doc)."""
    litellm = litellm_module()
    out = [{"model": current, "provider": _model_info(current)[1], "context_window": context_window(current),
            "current": True}]
    usable: dict[str, bool] = {}
    for name, info in sorted(getattr(litellm, "model_cost", {}).items()):
        if name == current or not isinstance(info, dict) or info.get("mode") != "chat":
            continue
        provider = str(info.get("litellm_provider") or "")
        if not provider:
            continue
        if provider not in usable:
            try:
                check_model(name if "/" in name else f"{provider}/{name}", params)
                usable[provider] = True
            except ModelError:
                usable[provider] = False
        if usable[provider]:
            limit = info.get("max_input_tokens") or info.get("max_tokens") or DEFAULT_CONTEXT_WINDOW
            out.append({"model": name, "provider": provider, "context_window": int(limit), "current": False})
    return out
