"""One launch driven as the host drives it: wait for ``hello``, then requests and pings, answering host calls.

Contract:

* :func:`wait_hello` waits (bounded) for the first frame on the calls
  channel, noticing an early exit at once; the secret file is deleted
  afterwards, as the host does.
* A :class:`Session` exists once the kit has welcomed the extension.
  :meth:`Session.request` sends one events request and waits for its reply
  until the deadline plus a grace period (to tell a late reply from none),
  answering every host call meanwhile through :class:`~.answers.HostAnswers`;
  it never raises for anything the extension does, and returns a
  :class:`RequestOutcome` saying what happened. :meth:`Session.begin` /
  :meth:`Session.finish` split the same in two, so that a ping can be sent
  while the request is in flight; ``before_answer`` lets a scenario hold a
  host call (the handler is then observably running) before it is answered.
* Frames that arrive while the session waits for something else are kept
  for the wait that wants them (a reply that arrives while the kit waits for
  a pong is not lost), until a new request on their channel makes them
  stale.
* A session is *tainted* — the next scenario needs a fresh launch — when a
  request got no reply at all, could not be sent, or the process exited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ext_sdk.wire import FrameError

from ..exthost.handshake import Granted
from .answers import CallRecord, HostAnswers
from .launcher import Launched
from .peer import Incoming

__all__ = ["HelloWait", "RequestOutcome", "Session", "wait_hello"]

#: Slice of every wait: how soon an exit of the process is noticed.
_SLICE_S = 0.05


@dataclass(frozen=True, slots=True)
class HelloWait:
    """What arrived first on the calls channel, and when."""

    incoming: Incoming | None
    #: Seconds from spawn to the frame (or to the end of the wait).
    elapsed_s: float
    #: Exit status if the process ended before sending anything.
    exit_status: int | None


def wait_hello(launched: Launched, timeout_s: float) -> HelloWait:
    """The first calls-channel frame within ``timeout_s`` of spawn (see the module doc)."""
    start = launched.process.started
    end = start + timeout_s
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return HelloWait(None, time.monotonic() - start, None)
            incoming = launched.peer.receive(min(left, _SLICE_S), only="calls")
            if incoming is not None:
                return HelloWait(incoming, incoming.at - start, None)
            if not launched.alive():
                return HelloWait(None, time.monotonic() - start, launched.returncode)
    finally:
        launched.launch.forget_secret_file()


@dataclass(slots=True)
class RequestOutcome:
    """What became of one events request."""

    kind: str
    #: What was asked, in words (``event tool_call (handler 0)``).
    what: str
    #: The request id (``None``: it could not be sent, the extension is not connected).
    req_id: int | None
    sent_at: float
    #: The deadline it was given (seconds).
    deadline_s: float
    #: The verified reply envelope.
    reply: dict[str, Any] | None = None
    #: Why the reply frame was rejected.
    error: FrameError | None = None
    #: Seconds from sending to the reply (or the rejected frame).
    elapsed_s: float | None = None
    #: No reply at all within the deadline plus the grace period.
    timed_out: bool = False
    #: Exit status, if the process ended while the request was in flight.
    exit_status: int | None = None
    #: Host calls made while it was in flight.
    calls: list[CallRecord] = field(default_factory=list)

    @property
    def late(self) -> bool:
        return self.elapsed_s is not None and self.elapsed_s > self.deadline_s


class Session:
    """One welcomed launch (see the module doc)."""

    def __init__(self, launched: Launched, hello: dict[str, Any], granted: Granted, answers: HostAnswers,
                 extension: str) -> None:
        self.launched = launched
        self.peer = launched.peer
        self.hello = hello
        self.granted = granted
        self.answers = answers
        self.extension = extension
        #: The next scenario needs a fresh launch.
        self.tainted = False
        #: Id of the events request in flight.
        self.in_flight: int | None = None
        self._stash: list[Incoming] = []
        self._calls: list[CallRecord] = []

    # ------------------------------------------------------------------ requests

    def begin(self, kind: str, fields: dict[str, Any], deadline_s: float, what: str) -> RequestOutcome:
        """Send an events request; its outcome is completed by :meth:`finish`."""
        self._calls = []
        self._forget("events")
        now = time.monotonic()
        req_id = self.peer.send_events(kind, fields, deadline_s)
        outcome = RequestOutcome(kind, what, req_id, now, deadline_s)
        if req_id is None:
            self.tainted = True
        else:
            self.in_flight = req_id
        return outcome

    def finish(self, outcome: RequestOutcome, grace_s: float,
               before_answer: Callable[[Incoming], None] | None = None) -> RequestOutcome:
        """Wait for the reply of ``outcome``'s request (see the module doc)."""
        if outcome.req_id is None:
            return outcome
        until = outcome.sent_at + outcome.deadline_s + grace_s
        incoming = self._pump(until, "events", before_answer)
        self.in_flight = None
        outcome.calls = self._calls
        if incoming is None:
            if not self.launched.alive():
                outcome.exit_status = self.launched.returncode
            else:
                outcome.timed_out = True
            self.tainted = True
            return outcome
        outcome.elapsed_s = incoming.at - outcome.sent_at
        outcome.reply = incoming.msg
        outcome.error = incoming.error
        return outcome

    def request(self, kind: str, fields: dict[str, Any], deadline_s: float, grace_s: float,
                what: str) -> RequestOutcome:
        """:meth:`begin` then :meth:`finish`."""
        return self.finish(self.begin(kind, fields, deadline_s, what), grace_s)

    # ------------------------------------------------------------------ control

    def control(self, kind: str, fields: dict[str, Any], timeout_s: float) -> tuple[int | None, Incoming | None]:
        """Send ``ping``/``shutdown``; ``(request id, the answer or None)`` within ``timeout_s``."""
        until = time.monotonic() + timeout_s
        self._forget("control")
        req_id = self.peer.send_control(kind, fields, timeout_s)
        if req_id is None:
            return None, None
        return req_id, self.await_control(until)

    def await_control(self, until: float) -> Incoming | None:
        """The next control frame (the answer to the latest control request) until ``until``."""
        return self._pump(until, "control", None)

    # ------------------------------------------------------------------ the pump

    def _forget(self, channel: str) -> None:
        """Drop kept frames of ``channel``: a new request makes them answers to older ones."""
        self._stash = [kept for kept in self._stash if kept.channel != channel]

    def _pump(self, until: float, want: str, before_answer: Callable[[Incoming], None] | None) -> Incoming | None:
        for i, kept in enumerate(self._stash):
            if kept.channel == want:
                return self._stash.pop(i)
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return None
            incoming = self.peer.receive(min(left, _SLICE_S))
            if incoming is None:
                if not self.launched.alive():
                    return None
                continue
            if incoming.channel == "calls":
                if before_answer is not None:
                    hold, before_answer = before_answer, None
                    hold(incoming)
                self._serve_call(incoming)
                continue
            if incoming.channel == want:
                return incoming
            self._stash.append(incoming)

    def _serve_call(self, incoming: Incoming) -> None:
        if incoming.msg is None:
            detail = str(incoming.error)
            self.answers.record_bad_frame(detail, self.in_flight)
            self.peer.answer("answer", {"id": 0, "ok": False, "error": f"rejected: {detail}"})
            return
        if incoming.kind != "call":
            self.answers.record_bad_frame(f"a second {incoming.kind!r} after the handshake", self.in_flight)
            self.peer.answer("answer", {"id": 0, "ok": False, "error": "already greeted"})
            return
        fields = self.answers.answer(incoming.msg, self.extension, self.granted.granted, self.in_flight)
        self._calls.append(self.answers.records[-1])
        self.peer.answer("answer", fields)
