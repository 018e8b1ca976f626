"""The one dispatch loop: order, modes, deadlines, budgets, failure policy.

Routing table: for each event name, the tuple of routes sorted by
``(priority, load_order, registration order)`` — lower priority runs first;
then extensions (and in-process hooks) in the order they were loaded; then
the order handlers were registered inside one extension. The table is
rebuilt (copy-on-write) when extensions load/unload or hooks are added, so
:meth:`Dispatcher.emit` reads it without a lock, and an event nobody
subscribed to returns after one dict lookup — no IPC, no allocation beyond
the :class:`Outcome`.

Modes (derived from the event's definition, :mod:`ext_sdk.events`):

* **notify** — in-process hooks run inline; each subscribed extension gets
  the event appended to its FIFO (once per extension), and the delivery
  thread sends it. :meth:`emit` never waits for an extension. The payload is
  held by reference until delivered: do not mutate it after ``emit``.
* **gate / chain** — handlers run one after another. Chained fields of a
  result replace those of the payload for the next handler; a result
  matching the stop rule ends the loop (first block wins).

Deadlines and policy: each handler's wait is ``min(its deadline, what is
left of the event budget)``. A failed handler (timeout, crash, error, bad
reply, budget) is counted and logged with the extension's name; policy
``open`` skips it, ``closed`` stops the event with a reason naming the
extension. Nothing an extension does raises out of :meth:`emit`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ext_sdk.context import EventData
from ext_sdk.events import EventSpec, spec_for
from ext_sdk.results import to_plain
from ext_sdk.schema import SchemaError

from ..config import HostConfig
from ..errors import EventError
from .outcome import Failure, HandlerFailure, Outcome, StopInfo

if TYPE_CHECKING:
    from .extension import HandlerDecl, RunningExtension

__all__ = ["HIGH", "LOW", "NORMAL", "Dispatcher", "InProcessHook"]

log = logging.getLogger("kithost.dispatch")

#: The same failure (extension, event, kind) is logged at most once per this many seconds.
WARN_EVERY_S = 10.0

#: In-process hook priorities (kit's SDK hook levels); extensions use the same scale.
HIGH, NORMAL, LOW = 0, 50, 100

#: ``fn(event) -> result | None`` — a trusted in-process handler.
InProcessHook = Callable[[EventData], Any]


@dataclass(frozen=True, slots=True, eq=False)
class _Route:
    event: str
    priority: int
    load_order: int
    reg_order: int
    policy: str
    label: str
    deadline_s: float
    ext: RunningExtension | None = None
    decl: HandlerDecl | None = None
    hook: InProcessHook | None = None

    def key(self) -> tuple[int, int, int]:
        return (self.priority, self.load_order, self.reg_order)


@dataclass(frozen=True, slots=True)
class _Table:
    #: Gate/chain routes in call order (notify events: in-process hooks only).
    routes: tuple[_Route, ...]
    #: Notify events: ``(extension, deadline)`` to enqueue for, once each.
    notify: tuple[tuple[RunningExtension, float], ...]


_EMPTY: dict[str, _Table] = {}


class Dispatcher:
    """Routes events to in-process hooks and extension handlers."""

    def __init__(self, config: HostConfig, wake_delivery: Callable[[], None]) -> None:
        self.config = config
        self._wake = wake_delivery
        self._tables: dict[str, _Table] = _EMPTY
        self._routes: list[_Route] = []
        self._mutate = threading.Lock()
        self._order = itertools.count()
        self._warned: dict[tuple[str, str, str], tuple[float, int]] = {}

    # ------------------------------------------------------------------ table

    def next_load_order(self) -> int:
        """Load-order slot for a new extension or hook."""
        return next(self._order)

    def route_extension(self, ext: RunningExtension) -> None:
        """Route ``ext``'s declared handlers, replacing any earlier routes of it in one table swap
        (after a restart there is no window without its handlers)."""
        routes = [
            _Route(h.event, h.priority, ext.load_order, h.index, h.policy, ext.name, h.deadline_s, ext=ext, decl=h)
            for h in ext.declared.handlers
        ]
        with self._mutate:
            self._routes = [r for r in self._routes if r.ext is not ext] + routes
            self._rebuild()

    def remove_extension(self, ext: RunningExtension) -> None:
        """Stop routing to ``ext``."""
        with self._mutate:
            self._routes = [r for r in self._routes if r.ext is not ext]
            self._rebuild()

    def add_hook(self, event: str, fn: InProcessHook, priority: int, policy: str | None) -> Callable[[], None]:
        """Route a trusted in-process hook; returns a function that unregisters it."""
        spec = self._spec(event)
        label = f"host:{getattr(fn, '__qualname__', 'hook')}"
        route = _Route(event, priority, self.next_load_order(), 0, policy or spec.default_policy, label, 0.0,
                       hook=fn)
        with self._mutate:
            self._routes.append(route)
            self._rebuild()

        def unregister() -> None:
            with self._mutate:
                self._routes = [r for r in self._routes if r is not route]
                self._rebuild()

        return unregister

    def _rebuild(self) -> None:
        by_event: dict[str, list[_Route]] = {}
        for route in self._routes:
            by_event.setdefault(route.event, []).append(route)
        tables: dict[str, _Table] = {}
        for event, routes in by_event.items():
            routes.sort(key=_Route.key)
            spec = self._spec(event)
            if spec.mode == "notify":
                notify: dict[int, tuple[RunningExtension, float]] = {}
                for r in routes:
                    if r.ext is not None:
                        old = notify.get(id(r.ext))
                        notify[id(r.ext)] = (r.ext, max(r.deadline_s, old[1] if old else 0.0))
                tables[event] = _Table(tuple(r for r in routes if r.hook is not None), tuple(notify.values()))
            else:
                tables[event] = _Table(tuple(routes), ())
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
        """Dispatch one event (see the module doc for the rules). ``exclude`` skips one extension."""
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
        if spec.mode == "notify":
            return self._notify(event, table, payload, exclude)
        return self._run_chain(spec, table.routes, payload)

    @staticmethod
    def _check_payload(spec: EventSpec, event: str, payload: dict[str, Any]) -> None:
        try:
            spec.payload.check(payload, "payload")
        except SchemaError as exc:
            raise EventError(f"bad payload for {event!r}: {exc}") from exc

    def _notify(self, event: str, table: _Table, payload: dict[str, Any], exclude: str | None) -> Outcome:
        spec = self._spec(event)
        failures: list[Failure] = []
        for route in table.routes:  # in-process hooks only
            try:
                self._call_hook(route, spec, payload)
            except HandlerFailure as exc:
                failures.append(self._fail(route, exc, "open"))
        queued = 0
        for ext, deadline in table.notify:
            if ext.name != exclude:
                ext.enqueue(event, payload, deadline)
                queued += 1
        if queued:
            self._wake()
        return Outcome(event, payload, failures=tuple(failures), handlers=len(table.routes) + queued)

    def _run_chain(self, spec: EventSpec, routes: tuple[_Route, ...], payload: dict[str, Any]) -> Outcome:
        current = dict(payload)
        failures: list[Failure] = []
        stop: StopInfo | None = None
        budget_end = time.monotonic() + self.config.deadlines.event_budget_ms / 1000
        for route in routes:
            try:
                if route.hook is not None:
                    result = self._call_hook(route, spec, current)
                else:
                    left = budget_end - time.monotonic()
                    if left <= 0:
                        raise HandlerFailure("budget", f"event budget of {self.config.deadlines.event_budget_ms} ms "
                                                       "was used up before it ran")
                    assert route.ext is not None and route.decl is not None
                    timeout = min(route.deadline_s, left)
                    try:
                        result = route.ext.call_handler(route.decl, current, timeout)
                    except HandlerFailure as exc:
                        if exc.kind in ("timeout", "busy") and timeout < route.deadline_s:
                            raise HandlerFailure("budget", f"stopped when the event budget ran out "
                                                           f"({exc.detail})") from None
                        raise
            except HandlerFailure as exc:
                failure = self._fail(route, exc, route.policy)
                failures.append(failure)
                if route.policy == "closed":
                    stop = self._closed_stop(spec, route, failure)
                    break
                continue
            if result is None:
                continue
            if spec.chain is not None:
                spec.chain.apply(current, result)
            if spec.stop is not None and spec.stop.matches(result):
                reason_field = spec.stop.reason_field
                reason = str(result.get(reason_field) or "") if reason_field else ""
                stop = StopInfo(route.label, result, reason or f"{spec.name} stopped by {route.label}")
                if route.ext is not None:
                    route.ext.stats.record_stop()
                break
        return Outcome(spec.name, current, stop, tuple(failures), len(routes))

    @staticmethod
    def _call_hook(route: _Route, spec: EventSpec, payload: dict[str, Any]) -> dict[str, Any] | None:
        assert route.hook is not None
        try:
            result = to_plain(spec.name, route.hook(EventData(payload)))
            if result is not None:
                if spec.result is None:
                    raise SchemaError("result", "this event takes no result")
                spec.result.check(result, "result")
            return result
        except SchemaError as exc:
            raise HandlerFailure("bad_result", str(exc)) from None
        except Exception as exc:
            log.exception("in-process hook %s failed on %s", route.label, spec.name)
            raise HandlerFailure("error", f"{type(exc).__name__}: {exc}") from None

    def _fail(self, route: _Route, exc: HandlerFailure, policy: str) -> Failure:
        if route.ext is not None:
            route.ext.stats.record_failure(exc.kind, policy)
        self._warn(route, exc, policy)
        return Failure(route.label, exc.kind, exc.detail, policy)

    def _warn(self, route: _Route, exc: HandlerFailure, policy: str) -> None:
        """Log a handler failure with the extension's name, at most once per key per ``WARN_EVERY_S``."""
        key = (route.label, route.event, exc.kind)
        now = time.monotonic()
        last, suppressed = self._warned.get(key, (-WARN_EVERY_S, 0))
        if now - last < WARN_EVERY_S:
            self._warned[key] = (last, suppressed + 1)
            return
        self._warned[key] = (now, 0)
        more = f" (+{suppressed} more like it since the last warning)" if suppressed else ""
        log.warning("extension %s: %s handler failed (%s: %s); policy %s%s", route.label, route.event, exc.kind,
                    exc.detail, policy, more)

    @staticmethod
    def _closed_stop(spec: EventSpec, route: _Route, failure: Failure) -> StopInfo:
        reason = f"{route.label} failed ({failure.kind}: {failure.detail}); failing closed"
        result: dict[str, Any] = {}
        if spec.stop is not None:
            result[spec.stop.field] = spec.stop.equals
            if spec.stop.reason_field:
                result[spec.stop.reason_field] = reason
        return StopInfo(route.label, result, reason, failed=True)

