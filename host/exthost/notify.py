"""The notify delivery thread: drains each extension's FIFO in batches, concurrently.

Contract:

* :meth:`NotifyPump.wake` is all ``emit`` does for a notify event (after the
  enqueue): setting a ``threading.Event``. The agent never waits for an
  observer.
* One round: for every extension with queued events whose exchange is free,
  :meth:`~.exchange.Exchange.begin_backlog` sends one ``batch`` (up to
  ``limits.notify_batch`` events, oldest first); then all replies are awaited
  together with one poller, answering host calls, until each batch is
  answered or reaches its deadline. A busy extension (a gate/chain request in
  flight) is skipped: that request carries the backlog itself, so order is
  kept either way.
* Per-extension order is the queue order; across extensions there is no
  ordering promise.
* :meth:`NotifyPump.flush` waits (bounded) until every queue is empty and no
  batch is in flight — for tests, the demo and shutdown.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import zmq

from .exchange import InFlight
from .extension import RunningExtension

__all__ = ["NotifyPump"]

log = logging.getLogger("kithost.notify")
#: What a batch polls (zmq flags), and which batch owns each polled item.
_Items = list[tuple[zmq.Socket[bytes] | int, int]]
_Owners = dict[zmq.Socket[bytes] | int, InFlight]


class NotifyPump(threading.Thread):
    """Background delivery of notify events for one host."""

    def __init__(self, extensions: Callable[[], list[RunningExtension]]) -> None:
        super().__init__(name="kithost-notify", daemon=True)
        self._extensions = extensions
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._busy = False

    def wake(self) -> None:
        """New events were queued.

        Already set (the pump has not started its next cycle yet): nothing to do — its next wait returns at
        once and that cycle takes these events too. The check is a plain read; ``Event.set`` takes a lock
        and a condition, once per emit of a burst otherwise.
        """
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """End the thread (pending events stay queued)."""
        self._stopping.set()
        self._wake.set()
        self.join(timeout=5)

    def flush(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or in flight; ``False`` on timeout."""
        end = time.monotonic() + timeout_s
        with self._idle:
            while self._busy or any(e.queued() for e in self._extensions() if e.alive()):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._idle:
                self._busy = True
            try:
                while self._round():
                    if self._stopping.is_set():
                        return
            except Exception:
                log.exception("notify delivery round failed")
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _round(self) -> bool:
        """One delivery round; ``True`` if anything was sent (so go again)."""
        in_flight: list[InFlight] = []
        poller = zmq.Poller()
        owners: _Owners = {}
        for ext in self._extensions():
            batch = ext.exchange.begin_backlog()
            if batch is None:
                continue
            in_flight.append(batch)
            self._watch(batch, batch.items, poller, owners)
        sent = bool(in_flight)
        try:
            while in_flight:
                now = time.monotonic()
                for batch in [b for b in in_flight if b.ends_at <= now]:
                    batch.expire()
                    self._finish(batch, poller, owners, in_flight)
                if not in_flight:
                    break
                wait_ms = math.ceil((min(b.ends_at for b in in_flight) - now) * 1000)
                for item, flags in poller.poll(max(wait_ms, 1)):
                    owner = owners.get(item)  # None: its batch finished earlier in this loop
                    if owner is None or owner.finished:
                        continue
                    batch = owner
                    if batch.service(item, flags):
                        self._finish(batch, poller, owners, in_flight)
                    elif (change := batch.changed_items()) is not None:
                        old, new = change
                        self._unwatch(batch, old, poller, owners)
                        self._watch(batch, new, poller, owners)
        finally:
            for batch in list(in_flight):
                batch.expire()
                self._finish(batch, poller, owners, in_flight)
        return sent

    @staticmethod
    def _finish(batch: InFlight, poller: zmq.Poller, owners: _Owners, in_flight: list[InFlight]) -> None:
        """Stop polling for ``batch``."""
        in_flight.remove(batch)
        NotifyPump._unwatch(batch, batch.items, poller, owners)

    @staticmethod
    def _watch(batch: InFlight, items: _Items, poller: zmq.Poller, owners: _Owners) -> None:
        """Poll ``items`` for ``batch``."""
        for item, flags in items:
            poller.register(item, flags)
            owners[item] = batch

    @staticmethod
    def _unwatch(batch: InFlight, items: _Items, poller: zmq.Poller, owners: _Owners) -> None:
        """Stop polling those of ``items`` that ``batch`` still owns (a descriptor it closed may be another
        extension's new connection by now)."""
        for item, _ in items:
            if owners.get(item) is batch:
                poller.unregister(item)
                del owners[item]
