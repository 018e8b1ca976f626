"""One extension's ordered exchange: its notify backlog and every request on its events channel.

Ordering rule: everything sent to one extension goes through :attr:`Exchange.lock`
and through :meth:`Exchange._compose`, which puts any queued notify events
*before* the request's own item in one ``batch`` (oldest first). So an
extension sees its events in the order they happened, whatever their mode and
whichever thread sends them (the dispatching thread, the notify pump, a tool
call).

The three kinds of request, one composition and one settlement each:

=====================  ==============================  =======================================
who                    method                          request
=====================  ==============================  =======================================
gate/chain dispatch    :meth:`Exchange.call`           ``event``, or ``batch`` = backlog + it
notify pump            :meth:`Exchange.begin_backlog`  ``batch`` of up to ``notify_batch`` queued
tool / slash command   :meth:`Exchange.invoke`         backlog ``batch`` first, then ``invoke``
=====================  ==============================  =======================================

Waits: a request's own deadline, plus for a backlog the sum of the queued
events' deadlines capped at ``deadlines.notify_batch_ms``. Accounting: every
backlog item is counted once (notified, or a failure with policy ``open``).
Failures of the channel are reported to ``on_failure`` (supervision decides
whether the process is gone or just slow) before they are raised as
:class:`~ext_sdk.combine.HandlerFailure` or returned as error text.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import zmq

from ext_sdk.combine import FailureKind, HandlerFailure
from ext_sdk.events import Policy

from ..config import HostConfig
from .channel import CallHandler, Channel, ChannelFailure
from .stats import ExtensionStats

__all__ = ["Exchange", "InFlight"]

#: ``check_ready() -> channel``: the channel of a running extension, or raises HandlerFailure(not_running).
CheckReady = Callable[[], Channel]
#: ``on_failure(failure) -> detail``: supervision sees every channel failure; returns the detail to report.
OnChannelFailure = Callable[[ChannelFailure], str]


@dataclass(slots=True)
class _Pending:
    event: str
    data: dict[str, Any]
    deadline_s: float


@dataclass(slots=True)
class _Request:
    kind: str
    fields: dict[str, Any]
    #: Notify events carried ahead of the request's own item.
    backlog: list[_Pending]
    #: Extra wait granted for the backlog.
    backlog_wait_s: float
    #: Whether the request ends with an item of its own (gate/chain).
    own: bool


class Exchange:
    """The notify FIFO and request path of one extension (see the module doc)."""

    def __init__(self, name: str, config: HostConfig, stats: ExtensionStats, on_call: CallHandler,
                 check_ready: CheckReady, on_failure: OnChannelFailure, wake_delivery: Callable[[], None],
                 notify_failed: Callable[[str, str], None] = lambda event, error: None,
                 warn_notify_errors: Callable[[int, str], None] = lambda count, latest: None) -> None:
        """``notify_failed(event, error)``: every notify handler that reported an error (not rate-limited);
        ``warn_notify_errors(count, latest error)``: the same, rate-limited, for a warning."""
        self.name = name
        self._config = config
        self._stats = stats
        self._on_call = on_call
        self._check_ready = check_ready
        self._on_failure = on_failure
        self._wake_delivery = wake_delivery
        #: Serialises every request on the extension's channel (see the module doc).
        self.lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._notify_queue = config.limits.notify_queue
        self._queue_lock = threading.Lock()
        self._dropped_unreported = 0
        self._notify_warned_at = -10.0
        self._notify_errors_unlogged = 0
        self.warn_notify_errors = warn_notify_errors
        self.notify_failed = notify_failed

    # ------------------------------------------------------------------ the notify FIFO

    def enqueue(self, event: str, data: dict[str, Any], deadline_s: float) -> bool:
        """Queue a notify event; ``False`` (and counted) when the queue is full.

        Below the limit this is one ``deque.append`` (atomic) without the lock: :meth:`_take_pending` takes a
        count first and pops only that many, so an item appended meanwhile waits for the next batch. Two
        producers racing at the limit may pass it by one each; the drop path and its count stay locked.
        """
        queue = self._queue
        if len(queue) < self._notify_queue:
            queue.append(_Pending(event, data, deadline_s))
            return True
        with self._queue_lock:
            if len(self._queue) >= self._notify_queue:
                self._dropped_unreported += 1
                self._stats.record_dropped()
                return False
            self._queue.append(_Pending(event, data, deadline_s))
            return True

    def queued(self) -> int:
        """Notify events waiting for delivery."""
        return len(self._queue)

    def discard_backlog(self) -> None:
        """The process is gone: queued notify events cannot be delivered (each counted ``not_running``)."""
        pending, _ = self._take_pending()
        self._count_failures(len(pending), FailureKind.NOT_RUNNING)

    def _take_pending(self, limit: int | None = None) -> tuple[list[_Pending], int]:
        with self._queue_lock:
            count = len(self._queue) if limit is None else min(limit, len(self._queue))
            items = [self._queue.popleft() for _ in range(count)]
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        return items, dropped

    # ------------------------------------------------------------------ composition and settlement

    def _compose(self, item: dict[str, Any] | None, limit: int | None = None) -> _Request:
        """The next request: the backlog (up to ``limit``) followed by ``item``, as one frame's fields."""
        if item is not None and not self._queue:
            # The hot path: no backlog (and then nothing dropped either: drops happen only to a full queue,
            # and _take_pending takes the queue and the drop count together).
            return _Request("event", item, [], 0.0, True)
        pending, dropped = self._take_pending(limit)
        wait = min(sum(p.deadline_s for p in pending), self._config.deadlines.notify_batch_ms / 1000)
        if item is not None and not pending:
            return _Request("event", item, pending, 0.0, True)
        events = [{"event": p.event, "data": p.data} for p in pending]
        if item is not None:
            events.append(item)
        return _Request("batch", {"events": events, "dropped": dropped}, pending, wait, item is not None)

    def _settle(self, request: _Request, reply: dict[str, Any]) -> dict[str, Any] | None:
        """Count the backlog's results; return the request's own result item (``None`` if it has none)."""
        results: list[dict[str, Any]] = reply["results"]
        expected = len(request.backlog) + request.own
        if len(results) != expected:
            self._count_failures(len(request.backlog), FailureKind.BAD_FRAME)
            raise ChannelFailure(FailureKind.BAD_FRAME, f"reply has {len(results)} results for {expected} events")
        self._count_results(request.backlog, results[:len(request.backlog)])
        return results[-1] if request.own else None

    def _fail(self, request: _Request, exc: ChannelFailure) -> str:
        self._count_failures(len(request.backlog), exc.kind)
        return self._on_failure(exc)

    def _count_results(self, backlog: list[_Pending], results: list[dict[str, Any]]) -> None:
        if not results:  # the hot path: a request with no backlog
            return
        ok = 0
        errors: list[str] = []
        for pending, item in zip(backlog, results, strict=True):
            if item.get("ok"):
                ok += 1
            else:
                self._stats.record_failure(FailureKind.ERROR, Policy.OPEN)
                error = str(item.get("error") or "failed")
                errors.append(error)
                self.notify_failed(pending.event, error)
        self._stats.record_notified(ok)
        if errors:
            self._note_notify_errors(errors)

    def _note_notify_errors(self, errors: list[str]) -> None:
        """Report failing notify handlers with the error text, at most once per 10 s."""
        now = time.monotonic()
        self._notify_errors_unlogged += len(errors)
        if now - self._notify_warned_at < 10:
            return
        count, self._notify_errors_unlogged = self._notify_errors_unlogged, 0
        self._notify_warned_at = now
        self.warn_notify_errors(count, errors[-1])

    def _count_failures(self, count: int, kind: FailureKind) -> None:
        for _ in range(count):
            self._stats.record_failure(kind, Policy.OPEN)

    def _release(self) -> None:
        self.lock.release()
        if self._queue:  # queued while we held the lock: hand them to the delivery thread
            self._wake_delivery()

    # ------------------------------------------------------------------ gate / chain

    def call(self, event: str, index: int, payload: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """Run handler ``index`` for ``event``; its result map or ``None``. Raises :class:`HandlerFailure`.

        A valid reply also records the round trip's latency split (:meth:`ExtensionStats.record_split`):
        host = this call's time before the send and after the reply arrived; extension = the ``us`` the
        extension reports for this item; transit = send → reply received, less the ``us`` of every item of
        the request (a backlog's items included).
        """
        start_ns = perf_counter_ns()
        start = time.monotonic()
        # max(): the deadline may be spent already (a wait before this call); then only an uncontended lock
        if not self.lock.acquire(timeout=max(timeout_s, 0.0)):
            raise HandlerFailure(FailureKind.BUSY, f"{self.name} stayed busy for {max(timeout_s, 0) * 1000:.0f} ms")
        try:
            channel = self._check_ready()
            request = self._compose({"event": event, "handler": index, "data": payload})
            left = timeout_s - (time.monotonic() - start)
            if left <= 0 and not request.backlog_wait_s:
                raise HandlerFailure(FailureKind.BUSY, f"{self.name} stayed busy with earlier events for the whole "
                                                       f"{timeout_s * 1000:.0f} ms deadline")
            try:
                reply = channel.request(request.kind, request.fields, max(left, 0.0) + request.backlog_wait_s,
                                        self._on_call)
                out = self._settle(request, reply)
            except ChannelFailure as exc:
                raise HandlerFailure(exc.kind, self._fail(request, exc)) from None
            assert out is not None
            if not out["ok"]:
                raise HandlerFailure(FailureKind.ERROR, str(out.get("error") or "handler failed"))
            ext_us = out.get("us")
            if ext_us is not None:  # the extension's own claim: clamped to the round trip it is part of
                sent, received = channel.sent_ns, channel.received_ns
                round_trip_us = (received - sent) / 1000
                items_us = ext_us if not request.backlog else sum(r.get("us") or 0 for r in reply["results"])
                self._stats.record_split(((sent - start_ns) + (perf_counter_ns() - received)) / 1000,
                                         min(max(round_trip_us - items_us, 0.0), round_trip_us),
                                         min(max(float(ext_us), 0.0), round_trip_us))
            return out.get("result")  # type: ignore[no-any-return]
        finally:
            self._release()

    # ------------------------------------------------------------------ tools and commands

    def invoke(self, target: str, name: str, args: Any, timeout_s: float,
               cancel: threading.Event | None = None) -> tuple[str, bool]:
        """Run a tool (``args``: map) or command (``args``: string): ``(content, is_error)``, never raises."""
        start = time.monotonic()
        if not self.lock.acquire(timeout=max(timeout_s, 0.0)):
            return f"Error: extension {self.name!r} stayed busy for {timeout_s:.0f} s", True
        try:
            try:
                channel = self._check_ready()
            except HandlerFailure as exc:
                return f"Error: {exc.detail}", True
            backlog = self._compose(None)
            if backlog.backlog:  # keep the extension's FIFO order: deliver its notify backlog first
                try:
                    self._settle(backlog, channel.request(backlog.kind, backlog.fields, backlog.backlog_wait_s,
                                                          self._on_call))
                except ChannelFailure as exc:
                    self._fail(backlog, exc)
            left = max(timeout_s - (time.monotonic() - start), 0.0)
            try:
                reply = channel.request("invoke", {"target": target, "name": name, "args": args}, left,
                                        self._on_call, cancel)
            except ChannelFailure as exc:
                if exc.kind == FailureKind.CANCELLED:
                    return f"Error: {target} {name!r} cancelled", True
                self._on_failure(exc)
                self._stats.record_failure(exc.kind, Policy.OPEN)
                return f"Error: {target} {name!r} of extension {self.name!r} failed ({exc.kind}: {exc.detail})", True
            results = reply["results"]
            item = results[0] if len(results) == 1 else {"ok": False, "error": "malformed reply"}
            if not item["ok"]:
                self._stats.record_failure(FailureKind.ERROR, Policy.OPEN)
                return f"Error: {item.get('error') or 'failed'}", True
            result = item.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("content"), str):
                self._stats.record_failure(FailureKind.BAD_RESULT, Policy.OPEN)
                return f"Error: extension {self.name!r} returned a malformed {target} result", True
            self._stats.record_ok((time.monotonic() - start) * 1e6)
            return result["content"], bool(result.get("is_error"))
        finally:
            self._release()

    def accept_reconnect(self, channel: Channel) -> None:
        """Greet the extension's events reconnect while the host sends it nothing (supervisor tick). Skipped
        while a request holds the lock: that request's own wait accepts it."""
        if channel.awaits_connection() and self.lock.acquire(blocking=False):
            try:
                channel.accept_waiting()
            finally:
                self._release()

    # ------------------------------------------------------------------ notify pump

    def begin_backlog(self) -> InFlight | None:
        """Send one batch of the notify backlog without waiting (notify pump).

        ``None`` when nothing is queued, the channel is busy (its holder carries the
        backlog itself) or the extension is not running (the batch is counted failed).
        Otherwise the caller must drive the returned :class:`InFlight` to its end.
        """
        if not self._queue or not self.lock.acquire(blocking=False):
            return None
        try:
            request = self._compose(None, self._config.limits.notify_batch)
            if not request.backlog:
                self._release()
                return None
            try:
                channel = self._check_ready()
            except HandlerFailure as exc:
                self._count_failures(len(request.backlog), exc.kind)
                self._release()
                return None
            wait = max(request.backlog_wait_s, max(p.deadline_s for p in request.backlog))
            channel.send_request(request.kind, request.fields, wait)
        except ChannelFailure as exc:
            self._count_failures(len(request.backlog), exc.kind)
            self._release()
            return None
        return InFlight(self, channel, request, time.monotonic() + wait)


class InFlight:
    """A notify batch sent and not yet answered; holds its exchange's lock until :meth:`done`."""

    def __init__(self, exchange: Exchange, channel: Channel, request: _Request, ends_at: float) -> None:
        self.exchange = exchange
        self._channel = channel
        self._request = request
        #: ``time.monotonic()`` at which the batch's deadline passes.
        self.ends_at = ends_at
        #: What to poll for this batch, with zmq flags (its reply and connection, host calls).
        self.items = channel.poll_items()
        self._items_version = channel.events.version
        self._finished = False

    def service(self, item: zmq.Socket[bytes] | int, flags: int) -> bool:
        """Handle one ready poll item; ``True`` when the batch is finished (answered or failed)."""
        ex = self.exchange
        try:
            reply = self._channel.service(item, flags, ex._on_call)
            if reply is None:
                return False
            ex._settle(self._request, reply)
        except ChannelFailure as exc:
            ex._fail(self._request, exc)
        self._finish()
        return True

    def changed_items(self) -> tuple[list[tuple[zmq.Socket[bytes] | int, int]], ...] | None:
        """``(old, new)`` poll items when they changed since last asked (a connection came or went, output
        queued or written), else ``None``."""
        version = self._channel.events.version
        if version == self._items_version:
            return None
        old, self.items, self._items_version = self.items, self._channel.poll_items(), version
        return old, self.items

    def expire(self) -> None:
        """The batch passed its deadline: count it as timed out."""
        if self._finished:
            return
        self._channel.abandon()
        ex = self.exchange
        ex._fail(self._request, ChannelFailure(FailureKind.TIMEOUT, "notify batch timed out"))
        self._finish()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.exchange._release()

    @property
    def finished(self) -> bool:
        """Whether the batch is over and the exchange's lock released."""
        return self._finished
