"""The worker's relay: one extension's local ``ipc://`` sockets ↔ TCP sockets the host connects to.

The extension speaks the unchanged protocol to sockets the *worker* binds beside it (its private directory,
admitted by the worker's own peer check); the worker forwards every frame, byte for byte, to the host, which
connects to TCP sockets the worker binds for that extension. So the per-frame HMAC, the sequence numbers and
the ids stay end to end between the host and the extension: the relay never opens, re-signs or re-orders a
frame, and a frame altered or injected on the way is refused by the receiver as it would be locally (the
launch secret is known to the host, the extension and the worker that started it — the worker is inside the
extension's trust boundary, the network is not; CURVE also encrypts the TCP leg).

Only the worker listens — on the interface the operator names — and every TCP socket is a CURVE server whose
ZAP domain admits only the host keys on the worker's allow-list (:meth:`PeerGate.admit_keys
<host.exthost.peers.PeerGate.admit_keys>`, refusals counted). The host, a CURVE client, knows the worker's
public key from its config, so a machine without the worker's secret key cannot pose as the worker.

Socket layout (the host's sockets as in :mod:`host.exthost.channel`, but connecting)::

    host events  REQ  ──tcp──▶ ROUTER binds ═ proxy ═ DEALER binds ipc ◀── extension REP
    host control REQ  ──tcp──▶ ROUTER binds ═ proxy ═ DEALER binds ipc ◀── extension REP
    host calls   REP  ──tcp──▶ DEALER binds ═ proxy ═ ROUTER binds ipc ◀── extension REQ

A ROUTER/DEALER pair is ZeroMQ's transparent request-reply queue: the envelope (routing id, the REQ's
correlation id, the empty delimiter) passes through untouched, so ``REQ_CORRELATE`` on the host still drops a
stale reply. Each pair runs in :func:`zmq.proxy_steerable` on a thread of its own; :meth:`Relay.close`
terminates all three through their control sockets. TCP heartbeats (``ZMQ_HEARTBEAT_*``) notice a dead link
within ``heartbeat_timeout_ms`` even when no request is in flight. Every send is bounded by ``send_timeout_ms``: a
frame that cannot be handed on in that time (its receiver is not connected) ends that channel's proxy — the
host's deadlines and heartbeat then treat the extension as unreachable, and :meth:`Relay.close` never waits on
a blocked send.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import zmq

from ..exthost.peers import socket_domain
from .keys import KeyPair

__all__ = ["Endpoints", "Relay"]

_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The three endpoints of one extension (``ipc://`` locally, ``tcp://`` on the host)."""

    events: str
    calls: str
    control: str


class Relay:
    """Forward one extension's three channels between ``local`` (ipc, bound here) and TCP sockets bound on
    ``listen`` (e.g. ``tcp://127.0.0.1`` or the interface the operator configured; ports chosen by the kernel,
    see :attr:`remote`).

    ``keys``: the worker's pair (CURVE server). ``remote_domain``: ZAP domain of the TCP sockets, registered
    by the caller with :meth:`PeerGate.admit_keys` (the host keys allowed). ``local_domain``: ZAP domain of
    the local sockets (the worker's peer check admits only the launched process tree); ``None`` leaves them
    to the directory's permissions (tests). ``max_frame`` bounds every inbound frame on both legs.
    """

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], local: Endpoints, listen: str, keys: KeyPair, *,
                 remote_domain: str, max_frame: int, local_domain: str | None = None,
                 heartbeat_ms: int = 1000, heartbeat_timeout_ms: int = 3000, send_timeout_ms: int = 5000) -> None:
        if keys.secret is None:
            raise ValueError("the relay needs the worker's secret key")
        self._zctx = zctx
        self._send_timeout_s = send_timeout_ms / 1000
        self._threads: list[threading.Thread] = []
        self._controls: list[zmq.Socket[bytes]] = []
        self._sockets: list[zmq.Socket[bytes]] = []
        secret = keys.secret

        def socket(kind: int) -> zmq.Socket[bytes]:
            sock = zctx.socket(kind)
            sock.linger = 0
            sock.maxmsgsize = max_frame
            # A DEALER with no peer (the host not connected yet, the extension gone) blocks the proxy's send,
            # and a proxy blocked in a send never reads its TERMINATE: bounded, the proxy ends instead.
            sock.sndtimeo = send_timeout_ms
            self._sockets.append(sock)
            return sock

        def local_socket(kind: int, endpoint: str, name: str) -> zmq.Socket[bytes]:
            sock = socket(kind)
            if local_domain is not None:
                sock.zap_domain = socket_domain(local_domain, name).encode()  # one process per socket
                sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            sock.bind(endpoint)
            return sock

        def remote_socket(kind: int) -> tuple[zmq.Socket[bytes], str]:
            sock = socket(kind)
            sock.curve_server = True
            sock.curve_secretkey = secret  # type: ignore[assignment]
            sock.zap_domain = remote_domain.encode()
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            sock.heartbeat_ivl = heartbeat_ms
            sock.heartbeat_timeout = heartbeat_timeout_ms
            port = sock.bind_to_random_port(listen)
            return sock, f"{listen}:{port}"

        try:
            events, events_at = remote_socket(zmq.ROUTER)
            control, control_at = remote_socket(zmq.ROUTER)
            calls, calls_at = remote_socket(zmq.DEALER)
            pairs = [("events", events, local_socket(zmq.DEALER, local.events, "events")),
                     ("control", control, local_socket(zmq.DEALER, local.control, "control")),
                     ("calls", local_socket(zmq.ROUTER, local.calls, "calls"), calls)]
        except zmq.ZMQError:
            self.close()
            raise
        #: Where the host connects (the worker tells it).
        self.remote = Endpoints(events_at, calls_at, control_at)
        for name, front, back in pairs:
            address = f"inproc://kithost-relay-{next(_ids)}"
            steer = zctx.socket(zmq.PAIR)
            steer.linger = 0
            steer.bind(address)
            self._controls.append(steer)
            self._threads.append(threading.Thread(target=self._proxy, args=(front, back, address),
                                                  name=f"kithost-relay-{name}", daemon=True))
        for thread in self._threads:
            thread.start()

    def _proxy(self, front: zmq.Socket[bytes], back: zmq.Socket[bytes], address: str) -> None:
        control = self._zctx.socket(zmq.PAIR)
        control.linger = 0
        control.connect(address)
        try:
            zmq.proxy_steerable(front, back, None, control)
        except zmq.ZMQError:
            pass  # the context is going away
        finally:
            control.close()

    def close(self) -> None:
        """Stop forwarding and close every socket (idempotent; bounded)."""
        for steer in self._controls:
            if not steer.closed:
                try:
                    steer.send(b"TERMINATE", zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
        for thread in self._threads:
            thread.join(timeout=self._send_timeout_s + 2)
        for sock in (*self._controls, *self._sockets):
            if not sock.closed:
                sock.close(linger=0)
