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

Subagents (policies bind there too): a child loop's emitter has no host of
its own but a :class:`PolicyBinding` to its parent's emitter; its
``tool_call`` and ``tool_result`` are emitted by the parent (its host and its
sink) with a ``subagent: {id, task}`` field, so the parent's gates block the
child's calls and its chain handlers patch the child's results. The child's
other events go only to its sink (the parent turns them into
``subagent_chunk``).

Re-entry: an extension that makes the agent act while it handles an event
(``ctx.compact``, ``ctx.spawn_subagent``...) is not asked by the events that
act fires on the same thread (its channel is busy with the call, and it asked
for the act itself): :meth:`Emitter.acting_for` marks the thread.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from ext_sdk.combine import FailureKind
from ext_sdk.events import Mode, Policy, spec_for

from ..exthost import Outcome
from ..exthost.host import ExtensionHost

__all__ = ["BOUND_EVENTS", "Emitter", "EventSink", "FailureRecord", "PolicyBinding"]

log = logging.getLogger("kithost.agent")

#: ``on_event(type, data)``: receives every event the agent emits. Must not mutate ``data``.
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """One extension handler that failed while the agent emitted ``event``."""

    event: str
    #: The extension's name (or ``host:<function>`` for an in-process hook).
    handler: str
    #: Why it failed.
    kind: FailureKind
    detail: str
    #: The policy applied: ``open`` (skipped) or ``closed`` (stopped the event).
    policy: Policy

    def describe(self) -> str:
        """One line for people."""
        action = "skipped" if self.policy is Policy.OPEN else "failed closed"
        return f"extension {self.handler}: {self.event} handler {self.kind} ({self.detail}); {action}"

    def to_json(self) -> dict[str, str]:
        """Plain data (the enums as their plain strings)."""
        return {"event": self.event, "handler": self.handler, "kind": self.kind.value, "detail": self.detail,
                "policy": self.policy.value}


#: A subagent's events that reach its parent's extension handlers.
BOUND_EVENTS: Final = frozenset({"tool_call", "tool_result"})


@dataclass(frozen=True, slots=True)
class PolicyBinding:
    """A subagent's link to its parent's handlers (see the module doc)."""

    parent: Emitter
    #: The ``subagent`` field: ``{"id": ..., "task": ...}``.
    subagent: dict[str, str]


class Emitter:
    """Fires events to an :class:`ExtensionHost` (optional) and an :data:`EventSink` (optional)."""

    def __init__(self, host: ExtensionHost | None, sink: EventSink | None = None, *,
                 emit_windows: bool = False, binding: PolicyBinding | None = None) -> None:
        #: The extension host, or ``None`` (no extensions of its own: a subagent).
        self.host = host
        self._sink = sink
        self._emit_windows = emit_windows
        self._binding = binding
        self._local = threading.local()
        self._sink_lock = threading.Lock()
        self._failures_lock = threading.Lock()
        self._failures: list[FailureRecord] = []

    def wants(self, event: str) -> bool:
        """Whether a costly payload for ``event`` should be built at all."""
        if self._binding is not None and event in BOUND_EVENTS:
            return self._binding.parent.wants(event)
        return self._emit_windows or (self.host is not None and self.host.subscribed(event))

    @contextmanager
    def acting_for(self, extension: str) -> Iterator[None]:
        """While the block runs on this thread, events skip ``extension``'s handlers (see the module doc)."""
        previous = getattr(self._local, "acting", None)
        self._local.acting = extension
        try:
            yield
        finally:
            self._local.acting = previous

    def _dispatch(self, event: str, payload: dict[str, Any]) -> Outcome:
        """To this emitter's host, or a subagent's bound events to the parent's; else unchanged."""
        if self.host is not None:
            return self.host.emit(event, payload, getattr(self._local, "acting", None))
        if self._binding is not None and event in BOUND_EVENTS:
            return self._binding.parent.emit(event, {**payload, "subagent": dict(self._binding.subagent)})
        return Outcome(event, payload)

    def emit(self, event: str, payload: dict[str, Any]) -> Outcome:
        """Fire ``event`` (rules in the module doc)."""
        spec = spec_for(event)
        after = spec is not None and spec.mode is not Mode.NOTIFY
        if not after:
            self._to_sink(event, payload)
        outcome = self._dispatch(event, payload)
        if after:  # gate/chain: the application sees what the agent acts on (e.g. a redacted tool result)
            self._to_sink(event, outcome.payload)
        self._keep_failures(event, outcome)
        return outcome

    def _keep_failures(self, event: str, outcome: Outcome) -> None:
        if outcome.failures:
            records = [FailureRecord(event, f.handler, f.kind, f.detail, f.policy) for f in outcome.failures]
            for record in records:
                log.info("agent: %s", record.describe())
            with self._failures_lock:
                self._failures.extend(records)

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
