"""The one combination loop: how the handlers of one event run and how their results combine.

Both ends use it: the host's dispatcher (``host.exthost.dispatch``) runs it
over handlers in extension processes and in-process hooks; the SDK's
:class:`~ext_sdk.testing.FakeHost` runs it over one extension's handlers
in-process. The loop is pluggy's ``_multicall``; a handler is reached through
a :class:`HandlerTransport` (httpx's transport seam): a callable that takes a
payload and a deadline and returns the handler's result map.

Order (:func:`order_key`, the only ordering rule): priority (lower first), then
load order of the extension (or hook), then registration order inside it.

Per handler, in that order (:func:`combine`):

1. **deadline** — a bounded handler (``deadline_s`` set) waits at most
   ``min(its deadline, what is left of the event budget)``; when nothing is
   left it fails with ``budget`` without being called, and a timeout cut
   short by the budget is reported as ``budget``. In-process handlers
   (``deadline_s`` ``None``) are not bounded.
2. **result check** — a result must match the event's result schema
   (:func:`check_result`); notify events take no result. A bad result is a
   ``bad_result`` failure.
3. **failure policy** — a failed handler (:class:`HandlerFailure`) is reported
   to ``on_failure``; policy ``open`` skips it, ``closed`` stops the event with
   a synthesised stop result whose reason names the handler.
4. **chain** — the event's chained fields of the result replace those of the
   payload the next handler sees.
5. **stop** — a result matching the event's stop rule ends the loop (first
   block/cancel/handled wins).

Nothing a handler does raises out of :func:`combine`; the returned
:class:`Outcome` carries the final payload, the stop (if any) and every failure.

The records here are plain classes with ``__slots__`` and ``Final`` attributes
(read-only for mypy; not checked at run time, which also keeps them cheap to
build on the hot path), not dataclasses: every extension process imports this
module, and ``import dataclasses`` (it imports ``inspect``) costs ~12 ms of its
start-up, each ``@dataclass`` some hundreds of µs more (issue 10;
``-X importtime``: this module went from 5.7 to 0.7 ms). They
compare by identity; the results of an event (:class:`Outcome`,
:class:`StopInfo`, :class:`Failure`) have a ``repr`` showing their fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from .events import EventSpec, Policy
from .frozen import fields_repr
from .schema import SchemaError

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Any, Final, Protocol
else:
    Protocol = object  # the protocols below are for mypy only: nothing checks them at run time

__all__ = [
    "Accounting",
    "Failure",
    "FailureKind",
    "Handler",
    "HandlerDecl",
    "HandlerFailure",
    "HandlerTransport",
    "Outcome",
    "Step",
    "StopInfo",
    "check_result",
    "combine",
    "in_order",
    "order_key",
]


class FailureKind(StrEnum):
    """Why one handler call failed (each counted per extension)."""

    #: No reply within its deadline.
    TIMEOUT = "timeout"
    #: The event's total budget ran out before or during it.
    BUDGET = "budget"
    #: The handler raised or returned an error.
    ERROR = "error"
    #: The result does not match the event's result schema.
    BAD_RESULT = "bad_result"
    #: The reply frame was rejected (MAC, replay, size, decode, schema, wrong id).
    BAD_FRAME = "bad_frame"
    #: The extension dropped its connection mid-request.
    DISCONNECTED = "disconnected"
    #: The extension was not ready (starting, crashed, stopped).
    NOT_RUNNING = "not_running"
    #: Its channel could not be had within the deadline (an earlier request still held it).
    BUSY = "busy"
    #: The caller gave up waiting (a tool or command cancelled by the user).
    CANCELLED = "cancelled"


class HandlerFailure(Exception):
    """A handler call failed; a transport raises it, :func:`combine` applies the policy."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        #: Why, as a :class:`FailureKind`.
        self.kind = kind
        #: What happened, in words.
        self.detail = detail


class HandlerTransport(Protocol):
    """How :func:`combine` reaches one handler.

    Called with the payload as the previous handler left it and the time the
    handler may take (``None``: unbounded, in-process). Returns the handler's
    result map or ``None``; raises :class:`HandlerFailure` for anything that
    went wrong. It must not keep or mutate the payload after returning.
    """

    def __call__(self, payload: dict[str, Any], timeout_s: float | None, /) -> dict[str, Any] | None: ...


class Accounting(Protocol):
    """Counters of whoever owns a handler (the host's extension handle); :func:`combine` reports to them."""

    def record_ok(self, elapsed_s: float) -> None:
        """The handler answered and its result passed the check, ``elapsed_s`` after it was called."""

    def record_failure(self, kind: FailureKind, policy: Policy) -> None:
        """The handler failed and ``policy`` was applied."""

    def record_stop(self) -> None:
        """The handler's result stopped its event."""


class HandlerDecl:
    """One subscription as the host runs it: event, order, deadline, policy."""

    __slots__ = ("deadline_s", "event", "index", "policy", "priority")

    #: Index of the subscription inside its extension (registration order).
    index: Final[int]
    #: Event name.
    event: Final[str]
    #: Lower runs first.
    priority: Final[int]
    #: Time this handler may take (``None``: in-process, unbounded).
    deadline_s: Final[float | None]
    #: What its failure does to the event.
    policy: Final[Policy]

    def __init__(self, index: int, event: str, priority: int, deadline_s: float | None, policy: Policy) -> None:
        self.index = index
        self.event = event
        self.priority = priority
        self.deadline_s = deadline_s
        self.policy = policy


class Handler:
    """A subscription bound to where it runs."""

    __slots__ = ("decl", "label", "load_order", "owner", "transport")

    #: What was declared (and granted).
    decl: Final[HandlerDecl]
    #: Load order of its extension or hook.
    load_order: Final[int]
    #: Who it is, in messages: the extension's name, or ``host:<function>``.
    label: Final[str]
    #: How to call it.
    transport: Final[HandlerTransport]
    #: Whose counters its outcomes go to (``None``: nobody counts, e.g. an in-process hook).
    owner: Final[Accounting | None]

    def __init__(self, decl: HandlerDecl, load_order: int, label: str, transport: HandlerTransport,
                 owner: Accounting | None = None) -> None:
        self.decl = decl
        self.load_order = load_order
        self.label = label
        self.transport = transport
        self.owner = owner


def order_key(priority: int, load_order: int, index: int) -> tuple[int, int, int]:
    """The ordering rule: priority, then load order, then registration order."""
    return (priority, load_order, index)


def _handler_key(handler: Handler) -> tuple[int, int, int]:
    return order_key(handler.decl.priority, handler.load_order, handler.decl.index)


def in_order(handlers: Iterable[Handler]) -> tuple[Handler, ...]:
    """``handlers`` sorted by :func:`order_key`."""
    return tuple(sorted(handlers, key=_handler_key))


def check_result(spec: EventSpec, result: dict[str, Any]) -> None:
    """The one result check: ``result`` must match ``spec``'s result schema; raises ``SchemaError``."""
    if spec.result is None:
        raise SchemaError("result", f"{spec.name!r} takes no result")
    spec.result.check(result, "result")


class Failure:
    """One handler that failed during an event."""

    __slots__ = ("detail", "handler", "kind", "policy")

    #: ``<extension>`` or ``host:<function>`` for in-process hooks.
    handler: Final[str]
    #: Why it failed.
    kind: Final[FailureKind]
    #: What happened, in words.
    detail: Final[str]
    #: The policy applied: ``open`` (skipped) or ``closed`` (stopped the event).
    policy: Final[Policy]

    def __init__(self, handler: str, kind: FailureKind, detail: str, policy: Policy) -> None:
        self.handler = handler
        self.kind = kind
        self.detail = detail
        self.policy = policy

    def __repr__(self) -> str:
        return fields_repr(self, ("handler", "kind", "detail", "policy"))


class StopInfo:
    """Why a gate event stopped."""

    __slots__ = ("by", "failed", "reason", "result")

    #: Who stopped it.
    by: Final[str]
    #: The stopping result map (for a failure: the synthesised one).
    result: Final[dict[str, Any]]
    #: Human reason.
    reason: Final[str]
    #: True when the stop comes from a fail-closed failure, not a handler's decision.
    failed: Final[bool]

    def __init__(self, by: str, result: dict[str, Any], reason: str, failed: bool = False) -> None:
        self.by = by
        self.result = result
        self.reason = reason
        self.failed = failed

    def __repr__(self) -> str:
        return fields_repr(self, ("by", "result", "reason", "failed"))


class Outcome:
    """What one event produced. Read-only by contract (``Final``; one is built for every event,
    unsubscribed ones included, so nothing is checked at run time: issue 10's ≤ 1 µs)."""

    __slots__ = ("event", "failures", "handlers", "payload", "stop")

    event: Final[str]
    #: The payload after every chained result was applied (notify: as emitted).
    payload: Final[dict[str, Any]]
    #: Set when a gate stopped: a handler blocked/cancelled/handled, or failed closed.
    stop: Final[StopInfo | None]
    #: Every handler failure of this event, with the policy applied.
    failures: Final[tuple[Failure, ...]]
    #: How many handlers were asked (0 = nobody subscribed: no IPC happened).
    handlers: Final[int]

    def __init__(self, event: str, payload: dict[str, Any], stop: StopInfo | None = None,
                 failures: tuple[Failure, ...] = (), handlers: int = 0) -> None:
        self.event = event
        self.payload = payload
        self.stop = stop
        self.failures = failures
        self.handlers = handlers

    def __repr__(self) -> str:
        return fields_repr(self, ("event", "payload", "stop", "failures", "handlers"))

    @property
    def stopped(self) -> bool:
        """Whether the event was blocked/cancelled/handled."""
        return self.stop is not None

    @property
    def reason(self) -> str:
        """The stop reason, or ''."""
        return self.stop.reason if self.stop is not None else ""


class Step:
    """One handler as it ran during an event (kept only when :func:`combine` is given a ``trace``)."""

    __slots__ = ("elapsed_s", "failure", "handler", "result")

    #: Who (``Handler.label``).
    handler: Final[str]
    #: From the call to its answer (or failure).
    elapsed_s: Final[float]
    #: Its result map, or ``None`` (no opinion, or it failed).
    result: Final[dict[str, Any] | None]
    #: Its failure, with the policy applied, or ``None``.
    failure: Final[Failure | None]

    def __init__(self, handler: str, elapsed_s: float, result: dict[str, Any] | None,
                 failure: Failure | None = None) -> None:
        self.handler = handler
        self.elapsed_s = elapsed_s
        self.result = result
        self.failure = failure


#: ``on_failure(handler, failure)``: log a failure (called before the policy acts).
OnFailure = Callable[[Handler, Failure], None]


def _ignore(handler: Handler, failure: Failure) -> None:
    return None


def combine(event: str, spec: EventSpec, handlers: tuple[Handler, ...], payload: dict[str, Any],
            budget_s: float, on_failure: OnFailure = _ignore, trace: list[Step] | None = None) -> Outcome:
    """Run ``handlers`` (already :func:`in_order`) for ``event`` (whose definition is ``spec``).

    See the module doc for the rules.

    ``payload`` is not mutated: chained fields go into a shallow copy. Each
    handler's outcome is reported to its owner's :class:`Accounting` exactly
    once: ok, a failure with the policy applied (then also to ``on_failure``),
    and a stop. ``trace``: when given, one :class:`Step` per handler asked is
    appended, in order (recording, ``kithost ext call``; off on the hot path).
    """
    current = dict(payload)
    failures: list[Failure] = []
    stop: StopInfo | None = None
    budget_end = time.monotonic() + budget_s
    chain, stop_rule = spec.chain, spec.stop
    for handler in handlers:
        deadline = handler.decl.deadline_s
        owner = handler.owner
        started = time.monotonic()
        try:
            if deadline is None:
                result = handler.transport(current, None)
            else:
                left = budget_end - started
                if left <= 0:
                    raise HandlerFailure(FailureKind.BUDGET, f"event budget of {budget_s * 1000:.0f} ms was used "
                                                             "up before it ran")
                timeout = min(deadline, left)
                try:
                    result = handler.transport(current, timeout)
                except HandlerFailure as exc:
                    if exc.kind in (FailureKind.TIMEOUT, FailureKind.BUSY) and timeout < deadline:
                        raise HandlerFailure(FailureKind.BUDGET, f"stopped when the event budget ran out "
                                                                 f"({exc.detail})") from None
                    raise
            if result is not None:
                try:
                    check_result(spec, result)
                except SchemaError as exc:
                    raise HandlerFailure(FailureKind.BAD_RESULT, f"bad result for {event}: {exc}") from None
        except HandlerFailure as exc:
            policy = handler.decl.policy
            failure = Failure(handler.label, exc.kind, exc.detail, policy)
            if owner is not None:
                owner.record_failure(exc.kind, policy)
            on_failure(handler, failure)
            failures.append(failure)
            if trace is not None:
                trace.append(Step(handler.label, time.monotonic() - started, None, failure))
            if policy == Policy.CLOSED:
                stop = _closed_stop(spec, handler, failure)
                break
            continue
        if owner is not None:
            owner.record_ok(time.monotonic() - started)
        if trace is not None:
            trace.append(Step(handler.label, time.monotonic() - started, result))
        if result is None:
            continue
        if chain is not None:
            chain.apply(current, result)
        if stop_rule is not None and stop_rule.matches(result):
            reason_field = stop_rule.reason_field
            reason = str(result.get(reason_field) or "") if reason_field else ""
            stop = StopInfo(handler.label, result, reason or f"{event} stopped by {handler.label}")
            if owner is not None:
                owner.record_stop()
            break
    return Outcome(event, current, stop, tuple(failures), len(handlers))


def _closed_stop(spec: EventSpec, handler: Handler, failure: Failure) -> StopInfo:
    reason = f"{handler.label} failed ({failure.kind}: {failure.detail}); failing closed"
    result: dict[str, Any] = {}
    if spec.stop is not None:
        result[spec.stop.field] = spec.stop.equals
        if spec.stop.reason_field:
            result[spec.stop.reason_field] = reason
    return StopInfo(handler.label, result, reason, failed=True)
