"""Custom model providers plugged into litellm: the one seam between the llm layer and a provider package.

The llm layer never imports a provider. A provider package (the offline
``scripted`` provider, :mod:`host.agent.scripted`) describes itself with a
:class:`CustomProvider` and calls :func:`register_provider` when it is
imported. For a model ``<name>/<anything>`` of a registered provider:

* :func:`install_provider` (called by
  :func:`host.agent.llm.stream.stream_completion` before every call) adds the
  provider's handler to ``litellm.custom_provider_map`` if it is not there
  (entries of other providers are kept). The handler is built on first
  install, from the litellm module, because it subclasses ``litellm.CustomLLM``
  and litellm is imported lazily;
* :func:`host.agent.llm.models.check_model` accepts the model with no API key;
* :func:`host.agent.llm.models.context_window` is the provider's own.

Registration is cheap (no litellm import) and thread-safe. Registering the
same description again does nothing; another description under a taken name
is a ``ValueError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CustomProvider", "install_provider", "provider_for", "register_provider"]


@dataclass(frozen=True, slots=True)
class CustomProvider:
    """A provider kithost ships, as litellm needs it."""

    #: The model prefix: models are ``<name>/<anything>``.
    name: str
    #: ``make_handler(litellm)``: the ``litellm.CustomLLM`` instance serving the provider's models.
    make_handler: Callable[[Any], Any]
    #: The input limit (tokens) of every model of the provider.
    context_window: int


_lock = threading.Lock()
_providers: dict[str, CustomProvider] = {}
_handlers: dict[str, Any] = {}


def register_provider(provider: CustomProvider) -> None:
    """Make ``provider``'s models callable (see the module doc)."""
    with _lock:
        known = _providers.get(provider.name)
        if known is not None and known != provider:
            raise ValueError(f"a custom provider named {provider.name!r} is already registered")
        _providers[provider.name] = provider


def provider_for(model: str) -> CustomProvider | None:
    """The registered provider of ``model`` (``<name>/...``), or ``None``."""
    name, slash, _ = model.partition("/")
    if not slash:
        return None
    with _lock:
        return _providers.get(name)


def install_provider(litellm: Any, provider: CustomProvider) -> None:
    """Put ``provider``'s handler in ``litellm.custom_provider_map`` (idempotent, thread-safe)."""
    with _lock:
        handler = _handlers.get(provider.name)
        if handler is None:
            handler = _handlers[provider.name] = provider.make_handler(litellm)
        if not any(item.get("provider") == provider.name for item in litellm.custom_provider_map):
            litellm.custom_provider_map = [*litellm.custom_provider_map,
                                           {"provider": provider.name, "custom_handler": handler}]
