"""The kit's own host end of one launch's three channels, at the wire level.

The sockets are made exactly as the host makes them (:mod:`host.exthost.channel`):
bound in the launch's private directory, in its ZAP domain (only the
launched process tree may connect), ``ZMQ_MAXMSGSIZE`` set, and ``events``
and ``control`` are REQ with ``REQ_RELAXED`` + ``REQ_CORRELATE`` — so what an
extension sees from the kit is what it sees from the host, including a next
request sent after a bad frame without waiting for an answer to it.

Unlike the host's :class:`~host.exthost.channel.Channel`, a :class:`Peer`
decides nothing: it sends well-formed frames (:meth:`Peer.send_events`,
:meth:`Peer.send_control`, :meth:`Peer.answer`) or any bytes at all
(:meth:`Peer.send_events_raw`, :meth:`Peer.send_control_raw`), and hands
back every inbound frame as an :class:`Incoming` — opened and checked with
the protocol's :class:`~ext_sdk.wire.Opener`, or with the
:class:`~ext_sdk.wire.FrameError` that rejected it. Judging is the
scenarios' business.

Not thread-safe: one thread drives one peer.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Literal

import zmq

from ext_sdk.wire import CONTROL_FRAME, MAC_SIZE, FrameError, Opener, Sealer

from ..exthost.channel import CALL_KINDS, CONTROL_KINDS, EVENT_KINDS, bind_host_socket
from ..exthost.launch import Launch

__all__ = ["Channel", "Incoming", "Peer"]

#: Which of the three channels a frame came from.
Channel = Literal["events", "calls", "control"]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One inbound frame: the verified envelope, or why it was rejected."""

    channel: Channel
    #: ``time.monotonic()`` when it was read.
    at: float
    msg: dict[str, Any] | None
    error: FrameError | None

    @property
    def kind(self) -> str:
        return str(self.msg.get("k")) if self.msg is not None else ""


class Peer:
    """The kit's sockets and codecs for one launch (see the module doc)."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], launch: Launch, max_frame: int) -> None:
        endpoints = launch.endpoints
        secret = launch.secret
        # The host's own sockets, options and codecs (host.exthost.channel).
        self.events = bind_host_socket(zctx, launch.domain, zmq.REQ, endpoints.events, max_frame + MAC_SIZE, True)
        self.calls = bind_host_socket(zctx, launch.domain, zmq.REP, endpoints.calls, max_frame + MAC_SIZE, False)
        self.control = bind_host_socket(zctx, launch.domain, zmq.REQ, endpoints.control, CONTROL_FRAME + MAC_SIZE,
                                        True)
        self._events_out = Sealer(secret)
        self._calls_out = Sealer(secret)
        self._control_out = Sealer(secret)
        self._openers: dict[Channel, Opener] = {
            "events": Opener(secret, EVENT_KINDS, max_frame),
            "calls": Opener(secret, CALL_KINDS, max_frame),
            "control": Opener(secret, CONTROL_KINDS, CONTROL_FRAME),
        }
        self._sockets: dict[zmq.Socket[bytes], Channel] = {self.events: "events", self.calls: "calls",
                                                           self.control: "control"}
        self._poller = zmq.Poller()
        for sock in self._sockets:
            self._poller.register(sock, zmq.POLLIN)
        self._ids = itertools.count(1)
        #: The last well-formed frame sent on ``events`` (to replay it).
        self.last_events_frame: bytes | None = None


    def next_id(self) -> int:
        """A fresh request id (shared by events and control, as the host's)."""
        return next(self._ids)

    # ------------------------------------------------------------------ sending

    @staticmethod
    def _send(sock: zmq.Socket[bytes], frame: bytes, wait_s: float) -> bool:
        """Send without blocking; with no connected peer yet, wait up to ``wait_s`` for one."""
        try:
            sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            if not sock.poll(max(1, int(wait_s * 1000)), zmq.POLLOUT):
                return False
            sock.send(frame, zmq.NOBLOCK)
            return True

    def send_events(self, kind: str, fields: dict[str, Any], wait_s: float) -> int | None:
        """Seal and send an events request with a fresh id; ``None`` if the extension is not connected."""
        req_id = self.next_id()
        frame = self._events_out.seal(kind, {"id": req_id, **fields})
        if not self._send(self.events, frame, wait_s):
            return None
        self.last_events_frame = frame
        return req_id

    def seal_events(self, kind: str, fields: dict[str, Any]) -> tuple[int, bytes]:
        """A sealed events request with a fresh id, not sent (to corrupt it first)."""
        req_id = self.next_id()
        return req_id, self._events_out.seal(kind, {"id": req_id, **fields})

    def send_events_raw(self, frame: bytes, wait_s: float) -> bool:
        """Send any bytes as one events frame."""
        return self._send(self.events, frame, wait_s)

    def send_control(self, kind: str, fields: dict[str, Any], wait_s: float) -> int | None:
        """Seal and send a control request (``ping``/``shutdown``) with a fresh id."""
        req_id = self.next_id()
        if not self._send(self.control, self._control_out.seal(kind, {"id": req_id, **fields}), wait_s):
            return None
        return req_id

    def send_control_raw(self, frame: bytes, wait_s: float) -> bool:
        """Send any bytes as one control frame."""
        return self._send(self.control, frame, wait_s)

    def answer(self, kind: str, fields: dict[str, Any]) -> None:
        """Answer the frame last read on ``calls`` (``welcome``/``reject``/``answer``)."""
        self.calls.send(self._calls_out.seal(kind, fields), zmq.NOBLOCK)

    # ------------------------------------------------------------------ receiving

    def receive(self, timeout_s: float, only: Channel | None = None) -> Incoming | None:
        """The next inbound frame on any channel (or on ``only``) within ``timeout_s``, or ``None``."""
        end = time.monotonic() + timeout_s
        while True:
            left_ms = (end - time.monotonic()) * 1000
            if only is not None:
                sock = {"events": self.events, "calls": self.calls, "control": self.control}[only]
                ready = [sock] if left_ms > 0 and sock.poll(max(1, int(left_ms))) else []
            else:
                ready = [s for s, _ in self._poller.poll(max(1, int(left_ms)))] if left_ms > 0 else []
            if not ready:
                return None
            for sock in ready:
                try:
                    # NOBLOCK: with REQ_CORRELATE, poll() reports a stale reply that recv() then drops.
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                channel = self._sockets[sock]
                try:
                    return Incoming(channel, time.monotonic(), self._openers[channel].open(frame), None)
                except FrameError as exc:
                    return Incoming(channel, time.monotonic(), None, exc)

    def close(self) -> None:
        """Close the three sockets (idempotent)."""
        for sock in self._sockets:
            if not sock.closed:
                sock.close(linger=0)
