"""The host end of a remote extension's events channel: a libzmq ``REQ`` socket and its monitor.

A remote launch's sockets connect over TCP as CURVE clients to the worker's relay (see :mod:`.channel`), so
its ``events`` stays a libzmq socket (a local launch's is :mod:`.events_link`, with the same interface:
:meth:`ZmqEvents.poll_items`, :meth:`ZmqEvents.service`, :meth:`ZmqEvents.send`).

Contract: ``REQ_RELAXED`` + ``REQ_CORRELATE`` (set by the caller): a new request may be sent at any time and
libzmq drops a late reply. The monitor tells when the last open connection went away: :meth:`ZmqEvents.service`
then raises :class:`~.events_link.LinkCut` (``closed``) at once instead of the wait running to its deadline —
unless the extension had connected again already (a cut of an earlier connection). A stranger's connection,
refused at its handshake, goes away while the extension's stays open, so it changes nothing; connections that
break the ZMTP handshake are counted as ``unauthenticated``.
"""

from __future__ import annotations

from collections import Counter

import zmq
from zmq.utils.monitor import parse_monitor_message

from .events_link import LinkCut
from .monitors import MONITORED, REFUSED, OpenConnections
from .peers import UNAUTHENTICATED

__all__ = ["ZmqEvents"]


class ZmqEvents:
    """A libzmq events socket with its monitor (``frame_errors``: where refused handshakes are counted)."""

    #: :meth:`poll_items` never changes.
    version = 0

    def __init__(self, sock: zmq.Socket[bytes], frame_errors: Counter[str]) -> None:
        self.sock = sock
        self.monitor = sock.get_monitor_socket(MONITORED)
        self._peers = OpenConnections(None, "")
        self._frame_errors = frame_errors

    @property
    def connected(self) -> bool:
        """Whether a request can be handed to libzmq now (it has a connection to send on)."""
        return bool(int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLOUT)

    def poll_items(self) -> list[tuple[zmq.Socket[bytes], int]]:
        """The socket (replies) and its monitor (connections)."""
        return [(self.sock, zmq.POLLIN), (self.monitor, zmq.POLLIN)]

    def peer_items(self) -> list[tuple[zmq.Socket[bytes], int]]:
        """What to wait on for a connection: the socket becoming writable, and its monitor."""
        return [(self.sock, zmq.POLLOUT), (self.monitor, zmq.POLLIN)]

    def send(self, routing_id: int, body: bytes) -> None:
        """Hand one request to libzmq (it correlates by itself); :class:`LinkCut` when not connected."""
        try:
            self.sock.send(body, zmq.NOBLOCK)
        except zmq.Again:
            raise LinkCut("closed", "the extension is not connected") from None

    def forget_request(self) -> None:
        """Nothing to do: libzmq drops the late reply itself."""

    def service(self, item: object, flags: int) -> bytes | None:
        """A reply frame, or ``None``; :class:`LinkCut` when the monitor reports the extension's connection
        gone (and no newer one)."""
        if item is self.monitor:
            if not self._monitor_event():
                return None  # e.g. a refused stranger's connection went away; the extension's is still open
            while self.monitor.poll(0):  # rare path: read what the monitor reported after that
                self._monitor_event()
            if self._peers.connected:
                return None  # it had reconnected already: that cut was of an earlier connection (a late reply)
            raise LinkCut("closed", "the extension dropped its connection (it exited, or sent a frame over the "
                                    "size limit)")
        if not flags & zmq.POLLIN:
            return None
        try:
            # NOBLOCK: with REQ_CORRELATE, poll() reports a stale reply as readable, then
            # recv() discards it and would block waiting for the real one.
            return self.sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None

    def _monitor_event(self) -> bool:
        """Read one monitor event; whether it closed the extension's connection (the last open one)."""
        event = parse_monitor_message(self.monitor.recv_multipart())
        kind = event["event"]
        if kind & REFUSED:
            self._frame_errors[UNAUTHENTICATED] += 1
            return False
        return self._peers.note(kind, event["value"])

    def close(self) -> None:
        """Disable the monitor, then close it and the socket (see :meth:`.channel.Channel.close` for why)."""
        if not self.sock.closed:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
