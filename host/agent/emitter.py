"""``Emitter``: the agent's only way to fire an event — to the extension host and to the application's sink.

Contract of :meth:`Emitter.emit`:

1. The application's sink (``on_event(type, data)``, e.g. ``kithost run
   --json``) gets kit's event name and the payload, under a lock (calls may
   come from the agent's thread and, for ``model_change`` set by an
   extension, from the notify delivery thread). For notify events it is
   called before dispatch; for gate and chain events *after* it, with the
   payload as the extensions left it — what the agent acts on (the redacted
   tool result, the transformed prompt), so a printer never shows what the
   model was protected from. A sink that raises is logged and ignored.
2. The extension host dispatches the event (:meth:`ExtensionHost.emit`),
   which never raises for anything an extension did. Without a host (a
   subagent's child loop) the payload comes back unchanged.
3. Every handler failure of the :class:`Outcome` is logged with the event and
   kept (:meth:`take_failures`) so the session can report it with the turn.
   What a fail-closed stop means is decided by the caller (the loop), event by
   event.

Payload discipline (the caller's side): build a fresh payload for every emit
and never mutate it afterwards — notify payloads are held by reference until
the delivery thread has sent them, and the sink may keep them too.
:meth:`wants` says whether a costly payload (a whole context window) is worth
building: only when an extension subscribed, or when ``emit_windows`` asks for
it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ext_sdk.events import spec_for

from ..exthost import Outcome
from ..exthost.host import ExtensionHost

__all__ = ["Emitter", "EventSink", "FailureRecord"]

log = logging.getLogger("kithost.agent")

#: ``on_event(type, data)``: receives every event the agent emits. Must not mutate ``data``.
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """One extension handler that failed while the agent emitted ``event``."""

    event: str
    #: The extension's name (or ``host:<function>`` for an in-process hook).
    handler: str
    #: ``timeout``, ``error``, ``bad_result``, ``disconnected``, ``not_running``, ``budget``, ...
    kind: str
    detail: str
    #: ``open`` (skipped) or ``closed`` (stopped the event).
    policy: str

    def describe(self) -> str:
        """One line for people."""
        action = "skipped" if self.policy == "open" else "failed closed"
        return f"extension {self.handler}: {self.event} handler {self.kind} ({self.detail}); {action}"

    def to_json(self) -> dict[str, str]:
        """Plain data."""
        return {"event": self.event, "handler": self.handler, "kind": self.kind, "detail": self.detail,
                "policy": self.policy}


class Emitter:
    """Fires events to an :class:`ExtensionHost` (optional) and an :data:`EventSink` (optional)."""

    def __init__(self, host: ExtensionHost | None, sink: EventSink | None = None, *,
                 emit_windows: bool = False) -> None:
        #: The extension host, or ``None`` (no extensions: a subagent).
        self.host = host
        self._sink = sink
        self._emit_windows = emit_windows
        self._sink_lock = threading.Lock()
        self._failures_lock = threading.Lock()
        self._failures: list[FailureRecord] = []

    def wants(self, event: str) -> bool:
        """Whether a costly payload for ``event`` should be built at all."""
        return self._emit_windows or (self.host is not None and self.host.subscribed(event))

    def emit(self, event: str, payload: dict[str, Any]) -> Outcome:
        """Fire ``event`` (rules in the module doc)."""
        spec = spec_for(event)
        after = spec is not None and spec.mode != "notify"
        if not after:
            self._to_sink(event, payload)
        outcome = Outcome(event, payload) if self.host is None else self.host.emit(event, payload)
        if after:  # gate/chain: the application sees what the agent acts on (e.g. a redacted tool result)
            self._to_sink(event, outcome.payload)
        if outcome.failures:
            records = [FailureRecord(event, f.handler, f.kind, f.detail, f.policy) for f in outcome.failures]
            for record in records:
                log.info("agent: %s", record.describe())
            with self._failures_lock:
                self._failures.extend(records)
        return outcome

    def _to_sink(self, event: str, payload: dict[str, Any]) -> None:
        if self._sink is None:
            return
        with self._sink_lock:
            try:
                self._sink(event, payload)
            except Exception:  # the application's sink must not end the turn
                log.exception("event sink failed on %s", event)

    def take_failures(self) -> list[FailureRecord]:
        """The failures recorded since the last call, oldest first."""
        with self._failures_lock:
            out, self._failures = self._failures, []
            return out
