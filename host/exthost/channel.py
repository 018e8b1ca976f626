"""The host end of one extension's three channels (see :mod:`ext_sdk.wire`).

Sockets, all bound by the host inside the extension's private 0700 directory,
each in a ZAP domain of its own within the launch's (:func:`.peers.socket_domain`):
only the launched process tree may connect, and only one process at a time
per socket (:mod:`.peers`, which counts every refusal). Each socket's monitor
tells the gate when the admitted connection has closed
(:meth:`.peers.PeerGate.released`): only then may another process connect
(the holder's own reconnect is admitted at once).

* ``events``  — REQ with ``REQ_RELAXED`` + ``REQ_CORRELATE``: after a deadline
  the next request can be sent at once and libzmq drops the late reply;
  the envelope ``id`` is checked as well, so a stale reply can never be read
  as the answer to a newer request.
* ``calls``   — REP: the extension's ``hello`` and its ``ctx`` calls. Calls are
  answered *while* the host waits for that extension's event reply.
* ``control`` — REQ (relaxed, correlated): ``ping``/``shutdown``, used by the
  supervisor from its own thread (guarded by ``control_lock``).
* a monitor on ``events``: when the last open connection goes away (the
  extension exited, or libzmq cut it for a frame over ``ZMQ_MAXMSGSIZE``),
  a wait ends at once instead of at the deadline. A stranger's connection,
  refused at its handshake, goes away while the extension's stays open, so it
  changes nothing (libzmq's handshake events carry no file descriptor to tell
  connections apart; while a stranger keeps connecting at the very moment the
  extension dies, that death is noticed at the deadline instead).
* monitors on ``calls`` and ``control`` (drained by the supervisor,
  :meth:`Channel.drain_monitors`): together with the events monitor, every
  connection that breaks the ZMTP handshake is counted as
  ``frame_errors["unauthenticated"]``, like the ZAP refusals; the extension's
  ``calls`` connection cut for a frame over the limit counts as ``dropped``.
  The events monitor is read during a request (a cut reported there fails the
  request only if no newer connection of the extension is reported after it:
  a cut while idle, e.g. after a late reply, is not that request's), and while
  a send waits for the extension to connect; the others at each supervisor tick.

Failure contract: :meth:`Channel.request` returns the verified reply envelope
or raises :class:`ChannelFailure` with a ``kind`` (``timeout``,
``disconnected``, ``bad_frame``). Every rejected inbound
frame is counted in :attr:`Channel.frame_errors` by reason: the
:data:`ext_sdk.wire.FRAME_ERRORS` of the codec, plus ``wrong_id`` (a valid
reply to another request) and ``dropped`` (the connection was cut while a
request was in flight — the extension exited, closed its socket, or sent a
frame over ``max_frame``, which libzmq refuses by disconnecting). Nothing else
escapes: a misbehaving extension can make its own events fail, never the host.

Remote extensions (:mod:`host.remote`): given :class:`RemoteEndpoints`, the
same three sockets *connect* over TCP as CURVE clients to the worker's relay
instead of binding ``ipc://`` (the worker's relay admits only allowed host
keys; frames, HMAC and sequence numbers are unchanged end to end). A TCP
connection that breaks counts like the extension's ipc connection going away.

Thread-safety: ``events``/``calls`` are used only by the holder of the owning
extension's lock; ``control`` only under ``control_lock``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ext_sdk.combine import FailureKind
from ext_sdk.wire import CONTROL_FRAME, MAC_SIZE, FrameError, Opener, Sealer

from .launch import Launch
from .peers import UNAUTHENTICATED, PeerGate, secure_server_socket, socket_domain

__all__ = ["CALL_KINDS", "CONTROL_KINDS", "EVENT_KINDS", "CallHandler", "Channel", "ChannelFailure",
           "RemoteEndpoints", "bind_host_socket", "connect_remote_socket"]

#: ``handler(method, args, event_id) -> value``; raises ``HostCallRefused`` (see hostcalls).
CallHandler = Callable[[str, dict[str, Any], "int | None"], Any]

EVENT_KINDS = frozenset({"reply"})
#: Monitor events of a connection that broke the ZMTP handshake (a ZAP refusal is counted by :mod:`.peers`).
_REFUSED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
#: A connection opened: by the extension (ipc, accepted) or to the worker's relay (tcp, connected).
_OPENED = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED
#: What every socket's monitor reports: connections opening, closing, and their handshake's outcome.
_MONITORED = _OPENED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | _REFUSED
CALL_KINDS = frozenset({"hello", "call"})
CONTROL_KINDS = frozenset({"pong", "bye"})


def bind_host_socket(zctx: zmq.Context[zmq.Socket[bytes]], domain: str, kind: int, endpoint: str, limit: int,
                     relaxed: bool = False) -> zmq.Socket[bytes]:
    """One host socket of an extension's launch: in its ZAP domain, frame limit ``limit`` (MAC included),
    ``REQ_RELAXED`` + ``REQ_CORRELATE`` when ``relaxed``, bound, mode 0600."""
    sock = zctx.socket(kind)
    sock.linger = 0
    secure_server_socket(sock, domain)
    sock.setsockopt(zmq.MAXMSGSIZE, limit)
    if relaxed:
        sock.setsockopt(zmq.REQ_RELAXED, 1)
        sock.setsockopt(zmq.REQ_CORRELATE, 1)
    sock.bind(endpoint)
    os.chmod(endpoint.removeprefix("ipc://"), 0o600)
    return sock


class _Peers:
    """The open connections of one host socket as its monitor reports them (read by one thread at a time).

    ``gate``/``domain``: the socket's slot at the gate; it is released when the last open connection closes
    and the handshakes seen to succeed are every one the gate admitted (so a refused stranger's connection
    closing, or one admitted but not yet reported, never frees it early). ``None``: no slot (remote).
    """

    __slots__ = ("_domain", "_gate", "_open", "_succeeded")

    def __init__(self, gate: PeerGate | None, domain: str) -> None:
        self._gate = gate
        self._domain = domain
        self._open: set[int] = set()
        self._succeeded = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open (as far as the events read so far tell)."""
        return bool(self._open)

    def note(self, kind: int, value: int) -> bool:
        """Record one monitor event (``value``: its file descriptor or code); whether it closed the last open
        connection."""
        if kind & _OPENED:
            self._open.add(value)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._succeeded += 1
        elif kind == zmq.EVENT_DISCONNECTED and value in self._open:
            self._open.discard(value)
            if not self._open:
                if self._gate is not None:
                    self._gate.released(self._domain, self._succeeded)
                return True
        return False


@dataclass(frozen=True, slots=True)
class RemoteEndpoints:
    """Where a remote extension's relay listens (``tcp://``) and how to secure a socket connecting there."""

    events: str
    calls: str
    control: str
    #: Makes a socket a CURVE client of the worker (sets its keys); see :func:`host.remote.link.curve_client`.
    secure: Callable[[zmq.Socket[bytes]], None]


def connect_remote_socket(zctx: zmq.Context[zmq.Socket[bytes]], remote: RemoteEndpoints, kind: int, endpoint: str,
                          limit: int, relaxed: bool = False) -> zmq.Socket[bytes]:
    """One host socket of a remote launch: CURVE client (``remote.secure``), frame limit ``limit``,
    ``REQ_RELAXED`` + ``REQ_CORRELATE`` when ``relaxed``, connected to ``endpoint``."""
    sock = zctx.socket(kind)
    sock.linger = 0
    remote.secure(sock)
    sock.setsockopt(zmq.MAXMSGSIZE, limit)
    if relaxed:
        sock.setsockopt(zmq.REQ_RELAXED, 1)
        sock.setsockopt(zmq.REQ_CORRELATE, 1)
    sock.connect(endpoint)
    return sock


class ChannelFailure(Exception):
    """A request got no valid reply. ``kind`` says why."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        #: ``timeout`` | ``disconnected`` | ``bad_frame`` | ``cancelled``.
        self.kind = kind
        self.detail = detail


class Channel:
    """Sockets, codecs and counters for one extension launch (``remote``: connect to a worker's relay)."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], launch: Launch, max_frame: int,
                 remote: RemoteEndpoints | None = None) -> None:
        endpoints = launch.endpoints
        secret = launch.secret
        self.endpoints = endpoints
        #: The worker's relay endpoints of a remote launch (``None``: a local one).
        self.remote = remote
        self.max_frame = max_frame
        #: Rejected inbound frames by reason (see ``ext_sdk.wire.FRAME_ERRORS``).
        self.frame_errors: Counter[str] = Counter()
        #: Host calls answered with an error (refused, stale, malformed).
        self.call_errors = 0
        #: Host calls answered successfully.
        self.calls_answered = 0
        limit = max_frame + MAC_SIZE
        gate = PeerGate.of(zctx) if remote is None else None

        def open_socket(kind: int, name: str, size: int, relaxed: bool = False) -> zmq.Socket[bytes]:
            if remote is None:
                return bind_host_socket(zctx, socket_domain(launch.domain, name), kind, getattr(endpoints, name),
                                        size, relaxed)
            return connect_remote_socket(zctx, remote, kind, getattr(remote, name), size, relaxed)

        self.events = open_socket(zmq.REQ, "events", limit, relaxed=True)
        self.calls = open_socket(zmq.REP, "calls", limit)
        self.control = open_socket(zmq.REQ, "control", CONTROL_FRAME + MAC_SIZE, relaxed=True)
        self.monitor = self.events.get_monitor_socket(_MONITORED)
        self._side_monitors = [self.calls.get_monitor_socket(_MONITORED), self.control.get_monitor_socket(_MONITORED)]
        #: The open connections of each socket (the extension's, and strangers' being refused), by socket.
        self._events_peers, calls_peers, control_peers = (_Peers(gate, socket_domain(launch.domain, name))
                                                          for name in ("events", "calls", "control"))
        #: With each side monitor: its socket's connections, and whether the extension's closing counts as dropped.
        self._side_peers = [(calls_peers, True), (control_peers, False)]
        self._events_out = Sealer(secret)
        self._events_in = Opener(secret, EVENT_KINDS, max_frame)
        self._calls_out = Sealer(secret)
        self._calls_in = Opener(secret, CALL_KINDS, max_frame)
        self._control_out = Sealer(secret)
        self._control_in = Opener(secret, CONTROL_KINDS, CONTROL_FRAME)
        self._ids = itertools.count(1)
        self._poller = zmq.Poller()
        for sock in (self.events, self.calls, self.monitor):
            self._poller.register(sock, zmq.POLLIN)
        #: Id of the request in flight on ``events`` (``None`` when idle).
        self.in_flight: int | None = None
        #: ``perf_counter_ns()`` when the last events request was handed to libzmq, and when the last events
        #: frame arrived (before it was opened): the transit part of the latency split (see :mod:`.exchange`).
        self.sent_ns = 0
        self.received_ns = 0
        #: Guards ``control`` (supervisor pings vs. the shutdown ladder).
        self.control_lock = threading.Lock()


    def close(self) -> None:
        """Close every socket (idempotent).

        Order matters: the monitor is disabled *before* its socket closes. The other
        way round, libzmq's I/O thread can block forever delivering a disconnect
        event to the closed monitor while holding the lock ``disable_monitor`` needs
        (pyzmq#1020, libzmq#3575) — and pyzmq holds the GIL there, freezing the host.
        """
        for sock in (self.events, self.calls, self.control):
            if not sock.closed:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
        for sock in (self.monitor, *self._side_monitors, self.events, self.calls):
            if not sock.closed:
                sock.close(linger=0)
        with self.control_lock:  # a shutdown request may be polling it from another thread (bounded wait)
            if not self.control.closed:
                self.control.close(linger=0)

    def drain_monitors(self) -> None:
        """Count connections refused on ``calls`` and ``control``, and the extension's ``calls`` connection
        cut by libzmq (a host call over the frame limit) as ``dropped``; free each socket's slot at the gate
        once its connection closed. Non-blocking; the supervisor calls it only while the process is alive,
        so a connection closed by an exit is not counted."""
        for monitor, (peers, counts_drop) in zip(self._side_monitors, self._side_peers, strict=True):
            while not monitor.closed and monitor.poll(0):
                event = parse_monitor_message(monitor.recv_multipart())
                kind = event["event"]
                if kind & _REFUSED:
                    self.frame_errors[UNAUTHENTICATED] += 1
                elif peers.note(kind, event["value"]) and counts_drop:
                    self.frame_errors["dropped"] += 1  # the extension's own (a stranger's leaves it open)

    # ------------------------------------------------------------------ handshake

    def wait_hello(self, timeout_s: float, alive: Callable[[], bool]) -> dict[str, Any]:
        """The extension's verified ``hello``; raises :class:`ChannelFailure`.

        Polls in short slices so an extension that exits early is noticed at once.
        """
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise ChannelFailure(FailureKind.TIMEOUT, f"no handshake within {timeout_s:.1f} s")
            if not alive():
                raise ChannelFailure(FailureKind.DISCONNECTED, "exited before the handshake")
            if self.calls.poll(min(50, max(1, int(left * 1000)))):
                frame = self.calls.recv()
                try:
                    msg = self._calls_in.open(frame)
                except FrameError as exc:
                    self.frame_errors[exc.reason] += 1
                    self.calls.send(self._calls_out.seal("reject", {"reason": f"bad handshake frame: {exc}"}))
                    raise ChannelFailure(FailureKind.BAD_FRAME, f"bad handshake frame: {exc}") from exc
                if msg["k"] != "hello":
                    self.calls.send(self._calls_out.seal("reject", {"reason": "expected hello first"}))
                    raise ChannelFailure(FailureKind.BAD_FRAME, f"expected hello, got {msg['k']!r}")
                return msg

    def answer_hello(self, kind: str, fields: dict[str, Any]) -> None:
        """Send ``welcome`` or ``reject``."""
        self.calls.send(self._calls_out.seal(kind, fields))

    # ------------------------------------------------------------------ events

    def send_request(self, kind: str, fields: dict[str, Any], timeout_s: float) -> int:
        """Seal and send one events-channel request; returns its id."""
        req_id = next(self._ids)
        frame = self._events_out.seal(kind, {"id": req_id, **fields})
        try:
            self.events.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            # No pipe yet (the extension is still connecting, or reconnecting): wait for one, bounded.
            if not self._wait_for_peer(timeout_s):
                raise ChannelFailure(FailureKind.DISCONNECTED, "extension is not connected") from None
            self.events.send(frame, zmq.NOBLOCK)
        self.sent_ns = perf_counter_ns()
        self.in_flight = req_id
        return req_id

    def _wait_for_peer(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until ``events`` can send (the extension connected, or reconnected after
        a cut), reading its monitor meanwhile: the cut it reports frees the socket's slot at the gate."""
        end = time.monotonic() + timeout_s
        poller = zmq.Poller()
        poller.register(self.events, zmq.POLLOUT)
        poller.register(self.monitor, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(max(1, int((end - time.monotonic()) * 1000))))
            if ready.get(self.events, 0) & zmq.POLLOUT:
                return True
            while self.monitor.poll(0):
                self._events_monitor_event()
            if time.monotonic() >= end:
                return False

    def _events_monitor_event(self) -> bool:
        """Read one events-monitor event; whether it closed the extension's connection (the last open one)."""
        event = parse_monitor_message(self.monitor.recv_multipart())
        kind = event["event"]
        if kind & _REFUSED:
            self.frame_errors[UNAUTHENTICATED] += 1
            return False
        return self._events_peers.note(kind, event["value"])

    def service(self, sock: zmq.Socket[bytes], on_call: CallHandler) -> dict[str, Any] | None:
        """Handle one readable socket of this channel.

        Returns the reply envelope when it is the awaited reply; ``None`` for a
        host call answered or a monitor event; raises :class:`ChannelFailure`
        for a bad reply or a dropped connection.
        """
        if sock is self.calls:
            self._serve_call(on_call)
            return None
        if sock is self.monitor:
            if not self._events_monitor_event():
                return None  # e.g. a refused stranger's connection went away; the extension's is still open
            while self.monitor.poll(0):  # rare path: read what the monitor reported after that
                self._events_monitor_event()
            if self._events_peers.connected:
                return None  # it had reconnected already: that cut was of an earlier connection (a late reply)
            if self.in_flight is not None:
                self.in_flight = None
                self.frame_errors["dropped"] += 1
                raise ChannelFailure(FailureKind.DISCONNECTED, "the extension dropped its connection "
                                     "(it exited, or sent a frame over the size limit)")
            return None
        try:
            # NOBLOCK: with REQ_CORRELATE, poll() reports a stale reply as readable, then
            # recv() discards it and would block waiting for the real one.
            frame = self.events.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        self.received_ns = perf_counter_ns()
        try:
            msg = self._events_in.open(frame)
        except FrameError as exc:
            self.frame_errors[exc.reason] += 1
            self.in_flight = None
            raise ChannelFailure(FailureKind.BAD_FRAME, f"rejected reply ({exc})") from exc
        if msg["id"] != self.in_flight:
            self.frame_errors["wrong_id"] += 1
            expected, self.in_flight = self.in_flight, None
            raise ChannelFailure(FailureKind.BAD_FRAME, f"reply id {msg['id']} does not match request {expected}")
        self.in_flight = None
        return msg

    def request(self, kind: str, fields: dict[str, Any], timeout_s: float, on_call: CallHandler,
                cancel: threading.Event | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply, answering host calls meanwhile.

        ``cancel`` (checked every 50 ms) abandons the wait with kind ``cancelled``;
        the late reply is then dropped like any stale one.
        """
        end = time.monotonic() + timeout_s
        self.send_request(kind, fields, timeout_s)
        poll = self._poller.poll
        while True:
            left_ms = (end - time.monotonic()) * 1000
            if cancel is not None:
                if cancel.is_set():
                    self.in_flight = None
                    raise ChannelFailure(FailureKind.CANCELLED, "cancelled while waiting for the extension")
                left_ms = min(left_ms, 50.0) if left_ms > 0 else left_ms
            # zmq_poll counts whole milliseconds: wait the whole ones, then the last fraction in naps of at
            # most 0.2 ms, each followed by a look: a hung handler gives control back at its deadline, not up
            # to 1 ms after it, and a reply in that last millisecond is seen within 0.2 ms.
            if left_ms >= 1:
                ready = poll(int(left_ms))
            elif left_ms > 0:
                time.sleep(min(left_ms, 0.2) / 1000)
                ready = poll(0)
            else:
                ready = []
            if not ready:
                if time.monotonic() < end:
                    continue  # a whole-ms wait or a 50 ms cancel slice ended before the deadline
                self.in_flight = None
                raise ChannelFailure(FailureKind.TIMEOUT, f"no reply within {timeout_s * 1000:.0f} ms")
            for sock, _ in ready:
                reply = self.service(sock, on_call)
                if reply is not None:
                    return reply

    def drain_calls(self, on_call: CallHandler) -> None:
        """Answer every host call already queued (non-blocking)."""
        while self.calls.poll(0):
            self._serve_call(on_call)

    def _serve_call(self, on_call: CallHandler) -> None:
        frame = self.calls.recv()
        try:
            msg = self._calls_in.open(frame)
        except FrameError as exc:
            self.frame_errors[exc.reason] += 1
            self.call_errors += 1
            self.calls.send(self._calls_out.seal("answer", {"id": 0, "ok": False, "error": f"rejected: {exc}"}))
            return
        if msg["k"] != "call":
            self.call_errors += 1
            self.calls.send(self._calls_out.seal("answer", {"id": 0, "ok": False, "error": "already greeted"}))
            return
        try:
            value = on_call(str(msg["method"]), dict(msg["args"]), msg.get("event_id"))  # type: ignore[call-overload, arg-type]
        except Exception as exc:  # noqa: BLE001 - every refusal becomes an error answer
            self.call_errors += 1
            self.calls.send(self._calls_out.seal("answer", {"id": msg["id"], "ok": False, "error": str(exc)}))
            return
        self.calls_answered += 1
        self.calls.send(self._calls_out.seal("answer", {"id": msg["id"], "ok": True, "value": value}))

    # ------------------------------------------------------------------ control

    def send_ping(self) -> None:
        """Send a heartbeat without waiting (supervisor thread); answers arrive via :meth:`poll_pong`."""
        with self.control_lock:
            try:
                self.control.send(self._control_out.seal("ping", {"id": next(self._ids)}), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def poll_pong(self) -> dict[str, Any] | None:
        """The newest valid ``pong`` already received, if any (non-blocking)."""
        newest = None
        with self.control_lock:
            while True:  # a NOBLOCK recv is the poll: one call per frame, and one to find none left
                try:
                    frame = self.control.recv(zmq.NOBLOCK)
                except zmq.ZMQError:  # Again: nothing waiting; EFSM: no ping outstanding (REQ state)
                    break
                try:
                    msg = self._control_in.open(frame)
                except FrameError as exc:
                    self.frame_errors[exc.reason] += 1
                    continue
                if msg["k"] == "pong":
                    newest = msg
        return newest

    def control_request(self, kind: str, fields: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """One ``ping``/``shutdown`` round trip; ``None`` if no valid answer in time."""
        with self.control_lock:
            return self._control_request(kind, fields, timeout_s)

    def _control_request(self, kind: str, fields: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        if self.control.closed:  # the launch was cleaned up meanwhile (its process is gone)
            return None
        req_id = next(self._ids)
        end = time.monotonic() + timeout_s
        frame = self._control_out.seal(kind, {"id": req_id, **fields})
        try:
            self.control.send(frame, zmq.NOBLOCK)
        except zmq.Again:  # not connected (yet): wait for the peer, bounded
            if not self.control.poll(max(1, int(timeout_s * 1000)), zmq.POLLOUT):
                return None
            self.control.send(frame, zmq.NOBLOCK)
        while (left := end - time.monotonic()) > 0:
            if not self.control.poll(max(1, int(left * 1000))):
                return None
            try:
                frame = self.control.recv(zmq.NOBLOCK)  # see service(): stale replies are dropped in recv
            except zmq.Again:
                continue
            try:
                msg = self._control_in.open(frame)
            except FrameError as exc:
                self.frame_errors[exc.reason] += 1
                continue
            if msg.get("id") == req_id:
                return msg
        return None
