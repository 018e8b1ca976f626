"""Answering extensions' ``ctx`` calls.

One method ``_call_<name>`` per entry of :data:`ext_sdk.hostcalls.HOST_CALLS`,
except the agent calls of kit's ctx API (:data:`.services.AGENT_CALLS`), which
all go to :meth:`HostServices.agent_call`; the table is derived from both and a
test checks it covers the definitions exactly. Options (``register_option``,
``get_option``, ``set_option``) are the router's own (:class:`Options`).
Before a handler runs, :meth:`HostCallRouter.handle`:

1. refuses a call whose ``event_id`` is not the request the host is waiting
   on for that extension (the event already timed out: no late side effects);
2. refuses a method the extension was not granted (error names the permission);
3. checks the arguments against the call's schema.

A refusal raises :class:`HostCallRefused`; the channel turns it into an
error ``answer`` and counts it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ext_sdk.hostcalls import HOST_CALLS
from ext_sdk.schema import SchemaError

from ..errors import HostError
from .services import AGENT_CALLS, HostServices, NotAvailable
from .state_store import StateStore

__all__ = ["OPTION_ENV_PREFIX", "Caller", "HostCallRefused", "HostCallRouter", "Options", "option_env_name"]

#: Environment variables ``KITHOST_OPT_<NAME>`` set options (kit's ``KIT_OPT_<NAME>``).
OPTION_ENV_PREFIX = "KITHOST_OPT_"


def option_env_name(name: str) -> str:
    """``KITHOST_OPT_<NAME>``: upper case, every character but letters and digits as ``_``."""
    return OPTION_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


class Options:
    """Extension options (kit's ``RegisterOption``/``GetOption``/``SetOption``), one namespace per host.

    A value resolves, first found wins: the runtime value (``set_option``), the
    environment (:func:`option_env_name`), the config's ``[options]``, the
    default of the first registration of the name. Values are strings.
    Thread-safe.
    """

    def __init__(self, config: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> None:
        self._config = dict(config or {})
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._runtime: dict[str, str] = {}
        #: name -> (registering extension, default, description)
        self.registered: dict[str, tuple[str, str, str]] = {}

    def register(self, extension: str, name: str, default: str, description: str) -> str:
        """Declare ``name`` (the first registration's default is kept); its value."""
        with self._lock:
            self.registered.setdefault(name, (extension, default, description))
        value = self.get(name)
        return default if value is None else value

    def get(self, name: str) -> str | None:
        """The resolved value, or ``None`` when no layer has one."""
        with self._lock:
            if name in self._runtime:
                return self._runtime[name]
            registered = self.registered.get(name)
        env = self._environ.get(option_env_name(name))
        if env is not None:
            return env
        if name in self._config:
            return str(self._config[name])
        return registered[1] if registered is not None else None

    def set(self, name: str, value: str) -> None:
        """The runtime layer (for the life of the host)."""
        with self._lock:
            self._runtime[name] = value

log = logging.getLogger("kithost.hostcalls")

#: ``emit_custom(source_extension, name, data) -> number of extensions queued``.
EmitCustom = Callable[[str, str, Any], int]


class Caller(Protocol):
    """What the router needs to know of the extension that calls (its host handle)."""

    @property
    def name(self) -> str: ...

    @property
    def granted(self) -> frozenset[str]: ...

    def channel_in_flight(self) -> int | None: ...


class HostCallRefused(Exception):
    """A host call was refused; the message is sent to the extension."""


class HostCallRouter:
    """Answers host calls for every extension of one host."""

    def __init__(self, state: StateStore, services: HostServices, emit_custom: EmitCustom,
                 options: Options | None = None, reload: Callable[[str], object] | None = None) -> None:
        """``options``: the option store (default: empty config, the process environment); ``reload(name)``
        starts a background reload of an extension (``None``: ``ctx.reload`` is not available)."""
        self.state = state
        self._reload = reload
        self.services = services
        self.options = options or Options()
        self._emit_custom = emit_custom
        self._denied_at: dict[tuple[str, str], float] = {}
        #: ``observer(extension, method, args, answered, elapsed_s)`` after every call (``kithost ext call``).
        self.observer: Callable[[str, str, dict[str, Any], bool, float], None] | None = None
        self.table: dict[str, Callable[[Caller, dict[str, Any]], Any]] = {
            name.removeprefix("_call_"): getattr(self, name) for name in dir(self) if name.startswith("_call_")
        }
        for method in AGENT_CALLS:
            self.table[method] = self._agent_call(method)

    def handle(self, ext: Caller, method: str, args: dict[str, Any], event_id: int | None) -> Any:
        """Answer one call or raise :class:`HostCallRefused`; each call is reported to :attr:`observer` if set."""
        observer = self.observer
        if observer is None:
            return self._answer(ext, method, args, event_id)
        started = time.monotonic()
        try:
            value = self._answer(ext, method, args, event_id)
        except HostCallRefused:
            observer(ext.name, method, args, False, time.monotonic() - started)
            raise
        observer(ext.name, method, args, True, time.monotonic() - started)
        return value

    def _answer(self, ext: Caller, method: str, args: dict[str, Any], event_id: int | None) -> Any:
        if event_id is None or event_id != ext.channel_in_flight():
            raise HostCallRefused(
                f"{method}: refused, event request {event_id} is no longer being handled (deadline passed)"
            )
        spec = HOST_CALLS.get(method)
        handler = self.table.get(method)
        if spec is None or handler is None:
            raise HostCallRefused(f"unknown host call {method!r}")
        if spec.permission not in ext.granted:
            self._note_denied(ext.name, method, spec.permission)
            raise HostCallRefused(
                f"{method}: permission denied — needs '{spec.permission}', which {ext.name!r} was not granted"
            )
        try:
            spec.args.check(args, "args")
        except SchemaError as exc:
            raise HostCallRefused(f"{method}: bad arguments: {exc}") from exc
        try:
            return handler(ext, args)
        except NotAvailable as exc:
            raise HostCallRefused(str(exc)) from exc
        except HostCallRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the host's own
            # The host's own failure (a closed stdout, a full disk): logged here, never shown to the extension.
            log.warning("host call %s from extension %s failed in the host: %s: %s", method, ext.name,
                        type(exc).__name__, exc)
            raise HostCallRefused(f"{method}: the host could not answer (its error is in the host's log)") from None

    def _note_denied(self, extension: str, method: str, permission: str) -> None:
        """Log a refused call (at most once per extension and method every 10 s; each one is counted)."""
        key = (extension, method)
        now = time.monotonic()
        if now - self._denied_at.get(key, -10.0) >= 10.0:
            self._denied_at[key] = now
            log.warning("extension %s called %s without the %r permission: refused", extension, method, permission)

    # ------------------------------------------------------------------ ui
    def _call_print(self, ext: Caller, args: dict[str, Any]) -> None:
        self.services.print(ext.name, args["level"], args["text"])

    def _call_get_info(self, ext: Caller, args: dict[str, Any]) -> dict[str, str]:
        return self.services.info()

    # ------------------------------------------------------------------ state
    def _call_get_state(self, ext: Caller, args: dict[str, Any]) -> Any:
        return self.state.get(ext.name, args["key"])

    def _call_set_state(self, ext: Caller, args: dict[str, Any]) -> None:
        self.state.set(ext.name, args["key"], args["value"])

    def _call_delete_state(self, ext: Caller, args: dict[str, Any]) -> None:
        self.state.delete(ext.name, args["key"])

    def _call_list_state(self, ext: Caller, args: dict[str, Any]) -> list[str]:
        return self.state.keys(ext.name)

    # ------------------------------------------------------------------ session
    def _call_append_entry(self, ext: Caller, args: dict[str, Any]) -> str:
        return self.services.append_entry(ext.name, args["type"], args["data"])

    def _call_get_entries(self, ext: Caller, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.services.get_entries(ext.name, args["type"])

    # ------------------------------------------------------------------ events
    def _call_reload(self, ext: Caller, args: dict[str, Any]) -> None:
        if self._reload is None:
            raise NotAvailable("reload: this host does not reload extensions")
        try:
            self._reload(args["name"] or ext.name)  # in the background: a reload waits for this very handler
        except HostError as exc:
            raise HostCallRefused(f"reload: {exc}") from None

    def _call_emit(self, ext: Caller, args: dict[str, Any]) -> int:
        return self._emit_custom(ext.name, args["name"], args["data"])

    # ------------------------------------------------------------------ conversation / agent
    def _call_get_messages(self, ext: Caller, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.services.get_messages()

    def _call_send_message(self, ext: Caller, args: dict[str, Any]) -> None:
        self.services.send_message(ext.name, args["text"])

    def _call_set_model(self, ext: Caller, args: dict[str, Any]) -> None:
        self.services.set_model(ext.name, args["model"])

    # ------------------------------------------------------------------ kit's ctx API
    def _agent_call(self, method: str) -> Callable[[Caller, dict[str, Any]], Any]:
        def call(ext: Caller, args: dict[str, Any]) -> Any:
            return self.services.agent_call(ext.name, method, args)

        return call

    def _call_prompt_select(self, ext: Caller, args: dict[str, Any]) -> dict[str, Any]:
        return self.services.prompt(ext.name, "select", args)

    def _call_prompt_confirm(self, ext: Caller, args: dict[str, Any]) -> dict[str, Any]:
        return self.services.prompt(ext.name, "confirm", args)

    def _call_prompt_input(self, ext: Caller, args: dict[str, Any]) -> dict[str, Any]:
        return self.services.prompt(ext.name, "input", args)

    def _call_set_status(self, ext: Caller, args: dict[str, Any]) -> None:
        self.services.set_status(ext.name, args["key"], args["text"], int(args.get("priority") or 0))

    def _call_register_option(self, ext: Caller, args: dict[str, Any]) -> str:
        return self.options.register(ext.name, args["name"], args["default"], str(args.get("description") or ""))

    def _call_get_option(self, ext: Caller, args: dict[str, Any]) -> str | None:
        return self.options.get(args["name"])

    def _call_set_option(self, ext: Caller, args: dict[str, Any]) -> None:
        self.options.set(args["name"], args["value"])
