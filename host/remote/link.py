"""The link between a host and a worker: one CURVE-secured request/reply socket pair, msgpack messages.

The worker binds a ROUTER (CURVE server; its ZAP domain admits only the host keys on its allow-list, every
refusal counted); each host connects a DEALER (CURVE client knowing the worker's public key). CURVE
authenticates both ends and encrypts every message; the link carries no extension traffic (that goes through
the worker's :class:`~host.remote.relay.Relay`, sealed end to end with the launch secret).

Messages are msgpack maps, unpacked with size and depth limits (:func:`unpack`). Requests carry ``op`` and
``id``; every reply echoes ``id`` and has ``ok`` (and ``error``, one line, when ``ok`` is false):

============  ===============================  ===================================================
``op``        request fields                   reply fields
============  ===============================  ===================================================
``describe``  —                                ``extensions`` {name: manifest summary}, ``sandbox``
``launch``    ``name``                         ``launch`` id, ``pid``, ``secret`` (bytes),
                                               ``endpoints`` {events, calls, control} (``tcp://``)
``stop``      ``launch``, ``kill`` (bool)      ``exit`` (status or ``None``)
``status``    ``mine`` (launch ids still used)  ``launches`` {id: {alive, exit, reason}}
============  ===============================  ===================================================

:class:`LinkClient` is the host's end: thread-safe (one request at a time), every wait bounded, a stale reply
(an earlier request that timed out) skipped by its id. A link that gets no reply raises :class:`LinkDown`.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Final

import msgpack
import zmq

from ..errors import HostError
from .keys import KeyPair

__all__ = ["LINK_MAX", "LinkClient", "LinkDown", "LinkError", "pack", "unpack"]

#: Largest link message (either way); a manifest summary list is far smaller.
LINK_MAX: Final = 1 << 20


class LinkError(HostError):
    """The worker answered a link request with an error (the message is its one-line reason)."""


class LinkDown(HostError):
    """The worker did not answer in time (down, unreachable, or it refused this host's key)."""


def pack(message: dict[str, Any]) -> bytes:
    """One link message as msgpack bytes."""
    return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(frame: bytes) -> dict[str, Any]:
    """A link message; raises ``ValueError`` (one line) for anything but a bounded msgpack map."""
    if len(frame) > LINK_MAX:
        raise ValueError(f"link message of {len(frame)} bytes is over the {LINK_MAX}-byte limit")
    try:
        value = msgpack.unpackb(frame, raw=False, max_array_len=10_000,
                                max_map_len=10_000, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(f"not a msgpack link message ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("a link message is a map")
    return value


def curve_client(sock: zmq.Socket[bytes], host_keys: KeyPair, worker_public: bytes) -> None:
    """Make ``sock`` a CURVE client of the worker whose public key is ``worker_public``."""
    if host_keys.secret is None:
        raise ValueError("the host's secret key is needed to connect to a worker")
    sock.curve_serverkey = worker_public
    sock.curve_publickey = host_keys.public
    sock.curve_secretkey = host_keys.secret  # type: ignore[assignment]


class LinkClient:
    """The host's end of the link to one worker at ``address`` (``tcp://HOST:PORT``).

    ``request`` sends one message and returns the reply map (``ok`` true), raises :class:`LinkError` (the
    worker refused) or :class:`LinkDown` (no reply within ``timeout_s``). A timed-out request leaves the
    socket usable: its late reply is skipped by id. TCP heartbeats (``ZMQ_HEARTBEAT_*``) keep a dead
    connection from looking alive; libzmq reconnects by itself (``reconnect_ivl`` .. ``reconnect_ivl_max``:
    its own exponential backoff) when the worker comes back.
    """

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], address: str, host_keys: KeyPair,
                 worker_public: bytes, *, heartbeat_ms: int, backoff_initial_ms: int,
                 backoff_max_ms: int) -> None:
        self.address = address
        self.worker_public = worker_public
        self.host_keys = host_keys
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        sock = self._sock = zctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.maxmsgsize = LINK_MAX
        sock.immediate = True  # queue only on a finished handshake: no stale launch reaches a worker later
        curve_client(sock, host_keys, worker_public)
        sock.heartbeat_ivl = heartbeat_ms
        sock.heartbeat_timeout = heartbeat_ms * 3
        sock.reconnect_ivl = backoff_initial_ms
        sock.reconnect_ivl_max = backoff_max_ms
        sock.connect(address)
        #: Round-trip time of the last answered request (seconds), ``None`` before the first.
        self.last_rtt: float | None = None
        #: ``time.monotonic()`` of the last answered request.
        self.last_answer: float | None = None

    def request(self, op: str, timeout_s: float, **fields: Any) -> dict[str, Any]:
        """One request/reply (see the module doc); bounded by ``timeout_s``."""
        with self._lock:
            if self._sock.closed:
                raise LinkDown(f"link to {self.address} is closed")
            req_id = next(self._ids)
            start = time.monotonic()
            end = start + timeout_s
            frame = pack({"op": op, "id": req_id, **fields})
            try:
                self._sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:  # no finished handshake (yet): wait for one, bounded
                if not self._sock.poll(max(1, int(timeout_s * 1000)), zmq.POLLOUT):
                    raise LinkDown(f"worker {self.address} is not connected (unreachable, down, or it refuses "
                                   "this host's key)") from None
                self._sock.send(frame, zmq.NOBLOCK)
            while (left := end - time.monotonic()) > 0:
                if not self._sock.poll(max(1, int(left * 1000))):
                    break
                try:
                    reply = unpack(self._sock.recv(zmq.NOBLOCK))
                except (zmq.Again, ValueError):
                    continue
                if reply.get("id") != req_id:
                    continue  # the late answer to an earlier request that timed out
                now = time.monotonic()
                self.last_rtt, self.last_answer = now - start, now
                if not reply.get("ok"):
                    raise LinkError(f"worker {self.address}: {reply.get('error') or 'refused'}")
                return reply
            raise LinkDown(f"worker {self.address} did not answer {op!r} within {timeout_s * 1000:.0f} ms")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        with self._lock:
            if not self._sock.closed:
                self._sock.close(linger=0)
