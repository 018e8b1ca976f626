"""The host end of one extension's three channels (see :mod:`ext_sdk.wire`).

Sockets, all bound by the host inside the extension's private 0700 directory,
each in a ZAP domain of its own within the launch's (:func:`.peers.socket_domain`):
only the launched process tree may connect, and only one process at a time
per socket (:mod:`.peers`, which counts every refusal). The gate's slot of a
socket is freed when its admitted connection has closed
(:meth:`.peers.PeerGate.released`): only then may another process connect
(the holder's own reconnect is admitted at once).

* ``events``  — REQ with libzmq's ``REQ_RELAXED`` + ``REQ_CORRELATE`` semantics:
  after a deadline the next request can be sent at once and the late reply is
  dropped; the envelope ``id`` is checked as well, so a stale reply can never be
  read as the answer to a newer request. Locally it is not a libzmq socket but
  :class:`.events_link.EventsLink`, ZMTP in pure Python on the waiting thread
  (no I/O-thread hand-off per frame, issue 10), which admits connections by the
  same gate at ``accept`` and sees a closed or cut connection directly; remotely
  :class:`.events_zmq.ZmqEvents`, a libzmq socket and its monitor. Either way a
  wait ends at once when the extension's connection goes away (it exited, or
  sent a frame over the limit, which is cut as libzmq's ``ZMQ_MAXMSGSIZE``
  cuts) instead of at the deadline; a cut while idle (e.g. after a late reply)
  fails no request, and is found before the next one is sent.
* ``calls``   — REP: the extension's ``hello`` and its ``ctx`` calls. Calls are
  answered *while* the host waits for that extension's event reply.
* ``control`` — REQ (relaxed, correlated): ``ping``/``shutdown``, used by the
  supervisor from its own thread (guarded by ``control_lock``).
* monitors on ``calls`` and ``control`` (drained by the supervisor at each tick,
  :meth:`Channel.drain_monitors`, :mod:`.monitors`): every connection that breaks
  the ZMTP handshake is counted as ``frame_errors["unauthenticated"]``, like the
  gate's refusals; the extension's ``calls`` connection cut for a frame over the
  limit counts as ``dropped``.

Failure contract: :meth:`Channel.request` returns the verified reply envelope
or raises :class:`ChannelFailure` with a ``kind`` (``timeout``,
``disconnected``, ``bad_frame``). Every rejected inbound
frame is counted in :attr:`Channel.frame_errors` by reason: the
:data:`ext_sdk.wire.FRAME_ERRORS` of the codec, plus ``wrong_id`` (a valid
reply to another request) and ``dropped`` (a connection the host cut — a
frame over ``max_frame``, a ZMTP violation — or one that closed while a
request was in flight: the extension exited or closed its socket). Nothing else
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

from .events_link import POLLIN, EventsLink, LinkCut
from .events_zmq import ZmqEvents
from .launch import Launch
from .monitors import MONITORED, REFUSED, OpenConnections
from .peers import UNAUTHENTICATED, PeerGate, secure_server_socket, socket_domain

__all__ = ["CALL_KINDS", "CONTROL_KINDS", "EVENT_KINDS", "CallHandler", "Channel", "ChannelFailure",
           "RemoteEndpoints", "bind_host_socket", "connect_remote_socket"]

#: ``handler(method, args, event_id) -> value``; raises ``HostCallRefused`` (see hostcalls).
CallHandler = Callable[[str, dict[str, Any], "int | None"], Any]

EVENT_KINDS = frozenset({"reply"})
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


def _local_events(gate: PeerGate | None, domain: str, endpoint: str, limit: int) -> EventsLink:
    """A local launch's events listener, admitting by ``gate`` in ``domain`` (no gate: nobody, fail closed)."""
    if gate is None:
        return EventsLink(endpoint, limit, admit=lambda address: False, release=lambda seen: None)
    return EventsLink(endpoint, limit, admit=lambda address: gate.decide(domain, address),
                      release=lambda seen: gate.released(domain, seen))


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
        #: The frame limit of ``events`` and ``calls``, MAC included (``control``: :data:`CONTROL_FRAME` + MAC).
        self.limit = limit = max_frame + MAC_SIZE
        gate = PeerGate.of(zctx) if remote is None else None

        def open_socket(kind: int, name: str, size: int, relaxed: bool = False) -> zmq.Socket[bytes]:
            if remote is None:
                return bind_host_socket(zctx, socket_domain(launch.domain, name), kind, getattr(endpoints, name),
                                        size, relaxed)
            return connect_remote_socket(zctx, remote, kind, getattr(remote, name), size, relaxed)

        #: The events channel: a pure-Python ZMTP ``REQ`` on ``ipc://`` (local), a libzmq one (remote).
        self.events: EventsLink | ZmqEvents
        if remote is None:
            self.events = _local_events(gate, socket_domain(launch.domain, "events"), endpoints.events, limit)
        else:
            self.events = ZmqEvents(open_socket(zmq.REQ, "events", limit, relaxed=True), self.frame_errors)
        self.calls = open_socket(zmq.REP, "calls", limit)
        self.control = open_socket(zmq.REQ, "control", CONTROL_FRAME + MAC_SIZE, relaxed=True)
        self._side_monitors = [self.calls.get_monitor_socket(MONITORED), self.control.get_monitor_socket(MONITORED)]
        #: With each side monitor: its socket's connections, and whether the extension's closing counts as dropped.
        self._side_peers = [(OpenConnections(gate, socket_domain(launch.domain, name)), name == "calls")
                            for name in ("calls", "control")]
        self._events_out = Sealer(secret)
        self._events_in = Opener(secret, EVENT_KINDS, max_frame)
        self._calls_out = Sealer(secret)
        self._calls_in = Opener(secret, CALL_KINDS, max_frame)
        self._control_out = Sealer(secret)
        self._control_in = Opener(secret, CONTROL_KINDS, CONTROL_FRAME)
        self._ids = itertools.count(1)
        self._poller = zmq.Poller()
        self._polled = -1  # the events' poll items version the poller holds
        #: Id of the request in flight on ``events`` (``None`` when idle).
        self.in_flight: int | None = None
        #: ``perf_counter_ns()`` when the last events request was written, and when the last events
        #: frame arrived (before it was opened): the transit part of the latency split (see :mod:`.exchange`).
        self.sent_ns = 0
        self.received_ns = 0
        #: Guards ``control`` (supervisor pings vs. the shutdown ladder).
        self.control_lock = threading.Lock()

    def close(self) -> None:
        """Close every socket (idempotent).

        Order matters: a monitor is disabled *before* its socket closes. The other
        way round, libzmq's I/O thread can block forever delivering a disconnect
        event to the closed monitor while holding the lock ``disable_monitor`` needs
        (pyzmq#1020, libzmq#3575) — and pyzmq holds the GIL there, freezing the host.
        """
        self.events.close()
        for sock in (self.calls, self.control):
            if not sock.closed:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
        for sock in (*self._side_monitors, self.calls):
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
                if kind & REFUSED:
                    self.frame_errors[UNAUTHENTICATED] += 1
                elif peers.note(kind, event["value"]) and counts_drop:
                    self.frame_errors["dropped"] += 1  # the extension's own (a stranger's leaves it open)

    # ------------------------------------------------------------------ handshake

    def wait_hello(self, timeout_s: float, alive: Callable[[], bool]) -> dict[str, Any]:
        """The extension's verified ``hello``; raises :class:`ChannelFailure`.

        Waits in short slices so an extension that exits early is noticed at once. The events connection
        is accepted meanwhile (the SDK waits for its greeting before it says ``hello``).
        """
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise ChannelFailure(FailureKind.TIMEOUT, f"no handshake within {timeout_s:.1f} s")
            if not alive():
                raise ChannelFailure(FailureKind.DISCONNECTED, "exited before the handshake")
            if self._wait(min(50, max(1, int(left * 1000))), self.calls):
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

    def _wait(self, timeout_ms: int, sock: zmq.Socket[bytes]) -> bool:
        """Wait up to ``timeout_ms`` for ``sock`` to be readable, serving the events connection meanwhile."""
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        for item, flags in self.events.poll_items():
            poller.register(item, flags)
        ready = False
        for item, flags in poller.poll(timeout_ms):
            if item is sock:
                ready = True
            else:
                self._tend_events(item, flags)
        return ready

    def _tend_events(self, item: object, flags: int) -> None:
        """Connection work on ``events`` outside a request (accepting, greeting, reading a cut): a cut the
        host made is counted, none fails a request."""
        try:
            self.events.service(item, flags)
        except LinkCut as exc:
            self._note_cut(exc)

    def awaits_connection(self) -> bool:
        """Whether the local events socket has no connection and one waits to be accepted (the extension's
        reconnect after a cut). A plain attribute read unless it has none: no system call on a healthy
        channel (the supervisor asks at every tick)."""
        events = self.events
        return isinstance(events, EventsLink) and not events.connected and events.connection_waiting()

    def accept_waiting(self) -> None:
        """Accept and greet what waits on the local events socket. The caller holds the extension's
        exchange lock (no request is in flight)."""
        if isinstance(self.events, EventsLink):
            self._tend_events(self.events.listen_fd, POLLIN)

    def answer_hello(self, kind: str, fields: dict[str, Any]) -> None:
        """Send ``welcome`` or ``reject``."""
        self.calls.send(self._calls_out.seal(kind, fields))

    # ------------------------------------------------------------------ events

    def poll_items(self) -> list[tuple[zmq.Socket[bytes] | int, int]]:
        """What to poll (zmq flags) while a request is in flight: the events connection and ``calls``."""
        return [*self.events.poll_items(), (self.calls, zmq.POLLIN)]

    def send_request(self, kind: str, fields: dict[str, Any], timeout_s: float) -> int:
        """Seal and send one events-channel request; returns its id."""
        req_id = next(self._ids)
        frame = self._events_out.seal(kind, {"id": req_id, **fields})
        routing_id = req_id & 0xFFFFFFFF
        try:
            self.events.send(routing_id, frame)
        except LinkCut as exc:
            # Not connected (yet), or the connection was found cut: wait for the extension, bounded.
            self._note_cut(exc)
            if not self._wait_for_peer(timeout_s):
                raise ChannelFailure(FailureKind.DISCONNECTED, "extension is not connected") from None
            try:
                self.events.send(routing_id, frame)
            except LinkCut as again:
                self._note_cut(again)
                raise ChannelFailure(FailureKind.DISCONNECTED, str(again)) from None
        self.sent_ns = perf_counter_ns()
        self.in_flight = req_id
        return req_id

    def _note_cut(self, cut: LinkCut) -> None:
        """Count a cut the host made (a frame over the limit, a protocol violation) as ``dropped``."""
        if cut.reason != "closed":
            self.frame_errors["dropped"] += 1

    def _wait_for_peer(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until the extension is connected to ``events`` (it is connecting, or
        reconnecting after a cut), accepting and admitting connections meanwhile."""
        end = time.monotonic() + timeout_s
        events = self.events
        while not events.connected:
            left_ms = int((end - time.monotonic()) * 1000)
            if left_ms <= 0:
                return False
            poller = zmq.Poller()
            for item, flags in events.peer_items():
                poller.register(item, flags)
            for item, flags in poller.poll(left_ms):
                self._tend_events(item, flags)
        return True

    def service(self, item: zmq.Socket[bytes] | int, flags: int, on_call: CallHandler) -> dict[str, Any] | None:
        """Handle one ready poll item of this channel (see :meth:`poll_items`).

        Returns the reply envelope when it is the awaited reply; ``None`` for a
        host call answered or connection work; raises :class:`ChannelFailure`
        for a bad reply or a dropped connection.
        """
        if item is self.calls:
            self._serve_call(on_call)
            return None
        try:
            frame = self.events.service(item, flags)
        except LinkCut as exc:
            self._note_cut(exc)
            if self.in_flight is None:
                return None  # a cut while idle (e.g. after a late reply): no request of the host's is lost
            self.in_flight = None
            if exc.reason == "closed":
                self.frame_errors["dropped"] += 1
            raise ChannelFailure(FailureKind.DISCONNECTED, str(exc)) from None
        if frame is None:
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

    def abandon(self) -> None:
        """The request in flight is given up (deadline, cancel): its late reply is dropped like a stale one."""
        self.in_flight = None
        self.events.forget_request()

    def request(self, kind: str, fields: dict[str, Any], timeout_s: float, on_call: CallHandler,
                cancel: threading.Event | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply, answering host calls meanwhile.

        ``cancel`` (checked every 50 ms) abandons the wait with kind ``cancelled``;
        the late reply is then dropped like any stale one.
        """
        end = time.monotonic() + timeout_s
        self.send_request(kind, fields, timeout_s)
        while True:
            if self._polled != self.events.version:  # a connection came or went, or output waits
                self._poller = zmq.Poller()
                for item, flags in self.poll_items():
                    self._poller.register(item, flags)
                self._polled = self.events.version
            left_ms = (end - time.monotonic()) * 1000
            if cancel is not None:
                if cancel.is_set():
                    self.abandon()
                    raise ChannelFailure(FailureKind.CANCELLED, "cancelled while waiting for the extension")
                left_ms = min(left_ms, 50.0) if left_ms > 0 else left_ms
            # zmq_poll counts whole milliseconds: wait the whole ones, then the last fraction in naps of at
            # most 0.2 ms, each followed by a look: a hung handler gives control back at its deadline, not up
            # to 1 ms after it, and a reply in that last millisecond is seen within 0.2 ms.
            if left_ms >= 1:
                ready = self._poller.poll(int(left_ms))
            elif left_ms > 0:
                time.sleep(min(left_ms, 0.2) / 1000)
                ready = self._poller.poll(0)
            else:
                ready = []
            if not ready:
                if time.monotonic() < end:
                    continue  # a whole-ms wait or a 50 ms cancel slice ended before the deadline
                self.abandon()
                raise ChannelFailure(FailureKind.TIMEOUT, f"no reply within {timeout_s * 1000:.0f} ms")
            for item, flags in ready:
                reply = self.service(item, flags, on_call)
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
