"""The dispatcher: a routing table per event, and the one combination loop applied to it.

Routing table: for each event name, the tuple of handlers sorted by the one
ordering rule (:func:`ext_sdk.combine.order_key`: priority, load order,
registration order). The table is rebuilt (copy-on-write) when extensions
load/unload or hooks are added, so :meth:`Dispatcher.emit` reads it without a
lock, and an event nobody subscribed to returns after one dict lookup — no
IPC, no allocation beyond the :class:`Outcome`.

Modes (derived from the event's definition, :mod:`ext_sdk.events`):

* **notify** — in-process hooks run inline through the combination loop;
  each subscribed extension gets the event appended to its FIFO (once per
  extension) and the notify pump sends it. :meth:`emit` never waits for an
  extension. The payload is held by reference until delivered: do not mutate
  it after ``emit``.
* **gate / chain** — :func:`ext_sdk.combine.combine` runs the handlers: order,
  deadlines within the event budget, result check, failure policy, chaining,
  stop rule (its module doc is the contract).

Every failure is counted on its extension and logged with its name (at most
once per ``WARN_EVERY_S`` per extension, event and kind). Nothing an
extension does raises out of :meth:`emit`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ext_sdk.combine import (
    Failure,
    FailureKind,
    Handler,
    HandlerDecl,
    HandlerFailure,
    Outcome,
    Step,
    combine,
    in_order,
)
from ext_sdk.context import EventData
from ext_sdk.events import EventSpec, Mode, Policy, spec_for
from ext_sdk.results import to_plain
from ext_sdk.schema import SchemaError

from ..config import HostConfig
from ..errors import EventError
from .extension import RunningExtension

__all__ = ["HIGH", "LOW", "NORMAL", "DispatchObserver", "Dispatcher", "InProcessHook"]

log = logging.getLogger("kithost.dispatch")

#: The same failure (extension, event, kind) is logged at most once per this many seconds.
WARN_EVERY_S = 10.0

#: In-process hook priorities (kit's SDK hook levels); extensions use the same scale.
HIGH, NORMAL, LOW = 0, 50, 100

#: ``fn(event) -> result | None`` — a trusted in-process handler.
InProcessHook = Callable[[EventData], Any]


class DispatchObserver(Protocol):
    """Hears every dispatch (recording, replay, ``kithost ext call``); must be quick and never raise."""

    def dispatched(self, payload: dict[str, Any], outcome: Outcome, steps: Sequence[Step]) -> None:
        """``payload`` went in, ``outcome`` came out; ``steps``: each handler asked, in order (none for a
        notify event: its extensions get it later, in batches)."""

    def host_call(self, extension: str, method: str, args: dict[str, Any], ok: bool, elapsed_s: float) -> None:
        """``extension`` made host call ``method``; answered (``ok``) or refused, after ``elapsed_s``."""


@dataclass(frozen=True, slots=True)
class _Table:
    #: Handlers in call order (notify events: in-process hooks only).
    handlers: tuple[Handler, ...]
    #: Notify events: ``(extension, deadline)`` to enqueue for, once each.
    notify: tuple[tuple[RunningExtension, float], ...]


_EMPTY: dict[str, _Table] = {}


def _hook_transport(fn: InProcessHook, event: str, label: str) -> Callable[[dict[str, Any], float | None], Any]:
    """An in-process hook as a handler transport (runs inline, unbounded)."""

    def transport(payload: dict[str, Any], timeout_s: float | None, /) -> dict[str, Any] | None:
        try:
            return to_plain(event, fn(EventData(payload)))
        except SchemaError as exc:
            raise HandlerFailure(FailureKind.BAD_RESULT, str(exc)) from None
        except Exception as exc:
            log.exception("in-process hook %s failed on %s", label, event)
            raise HandlerFailure(FailureKind.ERROR, f"{type(exc).__name__}: {exc}") from None

    return transport


class Dispatcher:
    """Routes events to in-process hooks and extension handlers."""

    def __init__(self, config: HostConfig, wake_delivery: Callable[[], None],
                 on_failure: Callable[[str, Failure], None] | None = None) -> None:
        self.config = config
        self._wake = wake_delivery
        #: ``on_failure(event, failure)``: every handler failure of a gate/chain event or in-process hook, as it
        #: happens (not rate-limited like the log); it must not raise.
        self._on_failure = on_failure
        self._budget_s = config.deadlines.event_budget_ms / 1000
        self._tables: dict[str, _Table] = _EMPTY
        self._handlers: list[Handler] = []
        self._mutate = threading.Lock()
        self._order = itertools.count()
        self._warned: dict[tuple[str, str, str], tuple[float, int]] = {}
        #: Observers of every dispatch (empty on the hot path: one truth test per event).
        self.observers: tuple[DispatchObserver, ...] = ()

    # ------------------------------------------------------------------ table

    def next_load_order(self) -> int:
        """Load-order slot for a new extension or hook."""
        return next(self._order)

    def route_extension(self, ext: RunningExtension) -> None:
        """Route ``ext``'s declared handlers, replacing any earlier routes of it in one table swap
        (after a restart there is no window without its handlers)."""
        handlers = [Handler(decl, ext.load_order, ext.name, ext.handler_transport(decl.event, decl.index), ext)
                    for decl in ext.declared.handlers]
        with self._mutate:
            self._handlers = [h for h in self._handlers if h.owner is not ext] + handlers
            self._rebuild()

    def remove_extension(self, ext: RunningExtension) -> None:
        """Stop routing to ``ext``."""
        with self._mutate:
            self._handlers = [h for h in self._handlers if h.owner is not ext]
            self._rebuild()

    def add_hook(self, event: str, fn: InProcessHook, priority: int, policy: str | None) -> Callable[[], None]:
        """Route a trusted in-process hook; returns a function that unregisters it."""
        spec = self._spec(event)
        label = f"host:{getattr(fn, '__qualname__', 'hook')}"
        # A notify hook's failure never stops its event (there is nothing to stop): always open.
        chosen = Policy.OPEN if spec.mode is Mode.NOTIFY else Policy(policy) if policy else spec.default_policy
        decl = HandlerDecl(0, event, priority, None, chosen)
        handler = Handler(decl, self.next_load_order(), label, _hook_transport(fn, event, label))
        with self._mutate:
            self._handlers.append(handler)
            self._rebuild()

        def unregister() -> None:
            with self._mutate:
                self._handlers = [h for h in self._handlers if h is not handler]
                self._rebuild()

        return unregister

    def _rebuild(self) -> None:
        by_event: dict[str, list[Handler]] = {}
        for handler in self._handlers:
            by_event.setdefault(handler.decl.event, []).append(handler)
        tables: dict[str, _Table] = {}
        for event, handlers in by_event.items():
            ordered = in_order(handlers)
            if self._spec(event).mode is Mode.NOTIFY:
                notify: dict[int, tuple[RunningExtension, float]] = {}
                for h in ordered:
                    if isinstance(h.owner, RunningExtension):
                        old = notify.get(id(h.owner))
                        notify[id(h.owner)] = (h.owner, max(h.decl.deadline_s or 0.0, old[1] if old else 0.0))
                tables[event] = _Table(tuple(h for h in ordered if h.owner is None), tuple(notify.values()))
            else:
                tables[event] = _Table(ordered, ())
        self._tables = tables

    def subscribed(self, event: str) -> bool:
        """Whether anyone handles ``event`` (the agent can skip building a costly payload)."""
        return event in self._tables

    @staticmethod
    def _spec(event: str) -> EventSpec:
        spec = spec_for(event)
        if spec is None:
            raise EventError(f"unknown event {event!r}")
        return spec

    # ------------------------------------------------------------------ emit

    def emit(self, event: str, payload: dict[str, Any], exclude: str | None = None) -> Outcome:
        """Dispatch one event (see the module doc for the rules). ``exclude`` skips one extension's handlers
        (the extension that started the act this event announces)."""
        if self.observers:
            return self._emit_observed(event, payload, exclude)
        return self._emit(event, payload, exclude, None)

    def _emit_observed(self, event: str, payload: dict[str, Any], exclude: str | None) -> Outcome:
        steps: list[Step] = []
        outcome = self._emit(event, payload, exclude, steps)
        for observer in self.observers:
            try:
                observer.dispatched(payload, outcome, steps)
            except Exception:
                log.exception("dispatch observer failed")
        return outcome

    def _emit(self, event: str, payload: dict[str, Any], exclude: str | None, trace: list[Step] | None) -> Outcome:
        table = self._tables.get(event)
        if table is None:
            spec = spec_for(event)
            if spec is None:
                raise EventError(f"unknown event {event!r}")
            if self.config.validate_all_payloads:
                self._check_payload(spec, event, payload)
            return Outcome(event, payload)
        spec = self._spec(event)
        if self.config.validate_payloads:
            self._check_payload(spec, event, payload)
        if spec.mode is Mode.NOTIFY:
            return self._notify(event, spec, table, payload, exclude)
        handlers = table.handlers if exclude is None else tuple(
            h for h in table.handlers if not (isinstance(h.owner, RunningExtension) and h.owner.name == exclude))
        if not handlers:
            return Outcome(event, payload)
        return combine(event, spec, handlers, payload, self._budget_s, self._failed, trace)

    @staticmethod
    def _check_payload(spec: EventSpec, event: str, payload: dict[str, Any]) -> None:
        try:
            spec.payload.check(payload, "payload")
        except SchemaError as exc:
            raise EventError(f"bad payload for {event!r}: {exc}") from exc

    def _notify(self, event: str, spec: EventSpec, table: _Table, payload: dict[str, Any],
                exclude: str | None) -> Outcome:
        hooks = combine(event, spec, table.handlers, payload, self._budget_s, self._failed) if table.handlers else None
        queued = 0
        for ext, deadline in table.notify:
            if ext.name != exclude:
                ext.exchange.enqueue(event, payload, deadline)
                queued += 1
        if queued:
            self._wake()
        failures = hooks.failures if hooks is not None else ()
        return Outcome(event, payload, failures=failures, handlers=len(table.handlers) + queued)

    def _failed(self, handler: Handler, failure: Failure) -> None:
        """Report a handler failure to ``on_failure``; log it with the extension's name, at most once per key
        per ``WARN_EVERY_S``."""
        if self._on_failure is not None:
            self._on_failure(handler.decl.event, failure)
        key = (handler.label, handler.decl.event, failure.kind)
        now = time.monotonic()
        last, suppressed = self._warned.get(key, (-WARN_EVERY_S, 0))
        if now - last < WARN_EVERY_S:
            self._warned[key] = (last, suppressed + 1)
            return
        self._warned[key] = (now, 0)
        more = f" (+{suppressed} more like it since the last warning)" if suppressed else ""
        log.warning("extension %s: %s handler failed (%s: %s); policy %s%s", handler.label, handler.decl.event,
                    failure.kind, failure.detail, failure.policy, more)
