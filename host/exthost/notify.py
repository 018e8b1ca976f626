"""The notify delivery thread: drains each extension's FIFO in batches, concurrently.

Contract:

* :meth:`NotifyPump.wake` is all ``emit`` does for a notify event (after the
  enqueue): setting a ``threading.Event``. The agent never waits for an
  observer.
* One round: for every extension with queued events whose lock is free, send
  one ``batch`` (up to ``limits.notify_batch`` events, oldest first); then
  wait for all replies together with one poller, answering host calls, until
  each batch is answered or reaches its deadline. A busy extension (its lock
  held by a gate/chain request) is skipped: that request carries the backlog
  itself, so order is kept either way.
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

from .extension import RunningExtension

__all__ = ["NotifyPump"]

log = logging.getLogger("kithost.notify")


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
        """New events were queued."""
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
        in_flight: dict[RunningExtension, float] = {}
        poller = zmq.Poller()
        owners: dict[zmq.Socket[bytes], RunningExtension] = {}
        for ext in self._extensions():
            if not ext.queued() or not ext.lock.acquire(blocking=False):
                continue
            started = ext.begin_notify_batch()
            if started is None or ext.channel is None:
                ext.lock.release()
                continue
            in_flight[ext] = time.monotonic() + started[1]
            for sock in (ext.channel.events, ext.channel.calls, ext.channel.monitor):
                poller.register(sock, zmq.POLLIN)
                owners[sock] = ext
        sent = bool(in_flight)
        try:
            while in_flight:
                now = time.monotonic()
                for ext, end in list(in_flight.items()):
                    if end <= now:
                        ext.expire_notify()
                        self._finish(ext, poller, in_flight)
                if not in_flight:
                    break
                wait_ms = math.ceil((min(in_flight.values()) - now) * 1000)
                for sock, _ in poller.poll(max(wait_ms, 1)):
                    ext = owners[sock]
                    if ext in in_flight and ext.service_notify(sock):
                        self._finish(ext, poller, in_flight)
        finally:
            for ext in list(in_flight):
                ext.expire_notify()
                self._finish(ext, poller, in_flight)
        return sent

    @staticmethod
    def _finish(ext: RunningExtension, poller: zmq.Poller, in_flight: dict[RunningExtension, float]) -> None:
        del in_flight[ext]
        if ext.channel is not None:
            for sock in (ext.channel.events, ext.channel.calls, ext.channel.monitor):
                try:
                    poller.unregister(sock)
                except KeyError:
                    pass
        ext.lock.release()
