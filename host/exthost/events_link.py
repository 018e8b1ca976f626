"""The host end of a local extension's events channel: a ZMTP 3.0 ``REQ`` peer in pure Python.

The extension still sees a ZeroMQ ``REQ`` socket bound on ``ipc://`` (any libzmq ``REP`` connects to it, and
so does the Python SDK's :mod:`ext_sdk.zmtp`); what changed is that the host no longer hands each frame to
libzmq's I/O thread. Measured (issue 10): on a gate round trip with both ends on one CPU, libzmq's thread
hand-offs were ~20 µs of the host's ~30 µs of transport CPU; here a request is one ``send`` and its reply one
``recv`` on the thread that waits for it. The ``calls`` and ``control`` sockets, remote extensions (CURVE
over TCP) and the operator socket keep libzmq: they are not on the per-event path.

Contract:

* **Listening**: an ``AF_UNIX`` stream socket at the endpoint's path, mode 0600 (inside the extension's
  private 0700 directory), non-blocking. Nothing happens until the owner polls :meth:`EventsLink.poll_items`
  (zmq poll flags; the items are file descriptors) and hands what is ready to :meth:`EventsLink.service`.
* **Accepting** happens when the owner services the listener: while it waits for a reply, for the
  ``hello`` or for a connection, and — for the extension's reconnect after a cut while the host sends
  nothing — at the supervisor's tick (:meth:`.channel.Channel.accept_waiting`), so the peer gets its
  greeting within a tick instead of timing out its handshake (the SDK after 10 s, libzmq after 30 s).
* **Admission**, at ``accept`` (at most 16 connections per call, so a full backlog cannot hold the waiting
  thread): the connection's kernel credentials (``SO_PEERCRED``) go to ``admit`` as a
  ZAP-style address ``localhost:<uid>:<gid>:<pid>`` — :meth:`.peers.PeerGate.decide`, the same rule as for
  every libzmq socket of the launch: the launched process tree only, one peer at a time (the holder's own
  reconnect admitted), every refusal counted there. A refused connection gets this side's greeting and an
  ``ERROR`` command (a libzmq peer then gives up on that connect, as after a ZAP refusal; the SDK raises
  ``Refused``) and is held open a moment, so the peer reads the ``ERROR`` before the end of the stream: at
  most :data:`REFUSED_KEPT` at a time, each closed at the first refusal or request after
  :data:`REFUSED_HOLD_S`, and all with the link. An admitted one gets
  the greeting and ``READY`` (``Socket-Type`` ``REQ``) at once and replaces any earlier connection (only the
  holder's reconnect can arrive while one is open: its old connection is gone).
* **The peer's handshake**: its 64-byte greeting (ZMTP 3, ``NULL``), then ``READY`` with ``Socket-Type``
  ``REP`` or ``ROUTER``; anything else cuts the connection (``protocol``). A request sent before that ``READY``
  is held and written when it arrives, as libzmq does: libzmq 4.3.5 drops a connection on which a message
  arrives before its own side of the handshake is done.
* **Requests**: ``[routing id (4 bytes), empty, body]`` — libzmq's ``REQ_CORRELATE`` envelope, with
  ``REQ_RELAXED``: a new request may be sent at any time, and the reply awaited is the last request's.
  Output the socket buffer does not take at once is kept and written as the peer drains it (``POLLOUT`` is
  then among the poll items), so a send never blocks the host; at most :attr:`EventsLink.out_limit` bytes
  (two frames of the limit) are kept for a peer that does not read (libzmq's send high-water mark), and
  more cuts the connection (``stalled``). Before each send, input already waiting is read
  (:meth:`EventsLink.send`): a cut that happened while the host was idle is found then, not in the middle
  of the next request.
* **Replies**: a message ``[routing id, empty, body]`` whose id is the last request's; any other message of
  at most three frames is dropped, as libzmq drops a stale reply, and a longer one cuts (``protocol``). The
  walk stops at the awaited reply: what follows it in the same read is taken at the next read, so a bad
  frame after a good reply fails the next request, not this one (libzmq, too, delivers the messages it
  decoded before an error). Commands: ``PING`` is answered with ``PONG`` (its context cut to ZMTP 3.1's
  16 bytes; none while output waits), ``ERROR`` cuts, the rest are ignored.
* **Cuts** (:class:`LinkCut`, with a reason): the end of the stream or a socket error (``closed``), a frame
  over ``limit`` (``over_limit``, as libzmq's ``ZMQ_MAXMSGSIZE`` cuts), a protocol violation
  (``protocol``) or requests the peer does not read (``stalled``). A cut closes the connection and frees the
  socket's slot at the gate (``release(admitted)``, with the number of connections admitted so far); the
  extension reconnects (the SDK every 100 ms, libzmq likewise).

Thread-safety: one thread at a time (the holder of the extension's lock, or the notify pump for a batch).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import NoReturn

import zmq

from ext_sdk.zmtp import (
    COMMAND,
    GREETING,
    GREETING_SIZE,
    LONG,
    MORE,
    command_frame,
    correlated_body,
    frame_header,
    greeting_problem,
    ipc_path,
    metadata_property,
    split_command,
)

__all__ = ["POLLERR", "POLLIN", "POLLOUT", "REFUSED_HOLD_S", "REFUSED_KEPT", "EventsLink", "LinkCut"]

#: Refused connections held open at most (the oldest is closed first), so a refused peer can read its ``ERROR``.
REFUSED_KEPT = 8
#: How long a refused connection is held open at most.
REFUSED_HOLD_S = 1.0
#: The peer socket types a ``REQ`` may talk to (RFC 28).
_PEER_TYPES = frozenset({b"REP", b"ROUTER"})
_READY = command_frame(b"READY", metadata_property(b"Socket-Type", b"REQ"))
_REFUSAL = GREETING + command_frame(b"ERROR", bytes((12,)) + b"not admitted")
_CREDENTIALS = struct.Struct("3i")
_FLAGS = MORE | LONG | COMMAND
_READ_SIZE = 65536
#: Connections taken from the backlog per call at most (strangers filling it cannot hold the waiting thread).
_ACCEPTS_PER_CALL = 16
_EMPTY_FRAME = frame_header(0, MORE)
_ID_FRAME = frame_header(4, MORE)  # the header of a 4-byte routing id frame
#: zmq's poll flags as plain ints (``zmq.POLLIN`` is an ``IntFlag``: every ``&`` on it builds an enum member).
POLLIN, POLLOUT, POLLERR = int(zmq.POLLIN), int(zmq.POLLOUT), int(zmq.POLLERR)


class LinkCut(Exception):
    """The events connection is gone; ``reason``: ``closed`` | ``over_limit`` | ``protocol`` | ``stalled``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class EventsLink:
    """The listening socket and the one admitted connection of an extension's events channel."""

    def __init__(self, endpoint: str, limit: int, admit: Callable[[str], bool],
                 release: Callable[[int], object]) -> None:
        self.endpoint = endpoint
        #: The largest frame taken (a larger one cuts the connection).
        self.limit = limit
        self._admit = admit
        self._release = release
        path = ipc_path(endpoint)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if not path.startswith("\0"):  # a file left by an earlier launch in this private directory (as libzmq)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            listener.bind(path)
            if not path.startswith("\0"):
                os.chmod(path, 0o600)
            listener.listen(16)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        #: The listening socket's descriptor (a poll item).
        self.listen_fd = listener.fileno()
        self._conn: socket.socket | None = None
        #: The admitted connection's descriptor, ``-1`` when there is none.
        self.conn_fd = -1
        self._probe = select.poll()
        self._listen_probe = select.poll()
        self._listen_probe.register(self.listen_fd, select.POLLIN)
        self._in = bytearray()
        self._pos = 0
        self._out = bytearray()  # written to the socket as it takes it; at most ``out_limit`` bytes
        #: Output waiting for the extension to read, at most (more: the connection is cut as ``stalled``).
        self.out_limit = 2 * limit + _READ_SIZE
        self._held = b""  # a request sent before the peer's READY
        self._frames: list[bytes] = []
        self._greeted = False  # the peer's greeting was read
        self._ready = False  # ... and its READY
        self._expect = b""  # the routing id of the reply awaited (empty: none)
        self._admitted = 0
        self._refused: list[tuple[socket.socket, float]] = []
        #: Bumped whenever :meth:`poll_items` would change (a connection came or went, output queued or drained).
        self.version = 0

    @property
    def connected(self) -> bool:
        """Whether an admitted connection is open (as far as has been read)."""
        return self._conn is not None

    def poll_items(self) -> list[tuple[int, int]]:
        """``(fd, zmq poll flags)`` to wait on: the listener, and the connection (``POLLOUT`` while output waits)."""
        items: list[tuple[int, int]] = [(self.listen_fd, POLLIN)]
        if self._conn is not None:
            items.append((self.conn_fd, POLLIN | (POLLOUT if self._out else 0)))
        return items

    def connection_waiting(self) -> bool:
        """Whether a connection waits in the listener's backlog (a non-blocking look)."""
        return bool(self._listen_probe.poll(0))

    def peer_items(self) -> list[tuple[int, int]]:
        """What to wait on for a connection: the listener (and an open connection, which may turn out cut)."""
        return self.poll_items()

    # ------------------------------------------------------------------ sending

    def send(self, routing_id: int, body: bytes) -> None:
        """Queue one request (``routing_id``: its 32-bit correlation id) and write what the socket takes.

        Reads waiting input first; raises :class:`LinkCut` if the connection turns out to be gone (then there
        is none: the caller waits for the reconnect with :meth:`service` and sends again).
        """
        if self._refused:
            self._close_refused(time.monotonic())
        if self._conn is None:
            raise LinkCut("closed", "the extension is not connected")
        if self._probe.poll(0):
            self._receive()
        elif self._in:  # input left after an earlier reply, not read yet
            self._parse()
        routing = routing_id.to_bytes(4, "big")
        self._expect = routing
        size = len(body)
        head = _ID_FRAME + routing + _EMPTY_FRAME + (bytes((0, size)) if size < 256 else frame_header(size, 0))
        if self._ready:
            self._write(head + body)
        else:
            self._held = head + body  # only the last request is awaited (REQ_RELAXED)

    def forget_request(self) -> None:
        """The awaited reply is no longer wanted (a deadline passed): it will be dropped like a stale one."""
        self._expect = b""

    def _write(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None
        if self._out:
            if len(self._out) + len(data) > self.out_limit:
                self._cut("stalled", f"the extension has not read {len(self._out)} bytes of requests written to it")
            self._out += data
            return
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._cut("closed", f"cannot write to the extension: {exc}")
        if sent < len(data):
            self._out += memoryview(data)[sent:]
            self.version += 1

    def _flush(self) -> None:
        conn = self._conn
        if conn is None or not self._out:
            return
        try:
            sent = conn.send(self._out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._cut("closed", f"cannot write to the extension: {exc}")
        del self._out[:sent]
        if not self._out:
            self.version += 1

    # ------------------------------------------------------------------ what poll reported

    def service(self, fd: object, flags: int) -> bytes | None:
        """Handle what a poll reported on ``fd``: the awaited reply's body, or ``None`` (a connection accepted,
        output written, part of a message read, a stale reply dropped); raises :class:`LinkCut`.

        A :class:`LinkCut` from an accepted reconnect means the request in flight went with the old connection.
        """
        if fd == self.listen_fd:
            self._accept()
            return None
        if fd != self.conn_fd or self._conn is None:
            return None  # a descriptor of a connection closed meanwhile
        if flags & POLLOUT:
            self._flush()
        if flags & (POLLIN | POLLERR):
            return self._receive()
        return None

    def _accept(self) -> None:
        lost = False
        for _ in range(_ACCEPTS_PER_CALL):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # e.g. out of descriptors: the peer retries
            conn.setblocking(False)
            try:
                pid, uid, gid = _CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                    _CREDENTIALS.size))
                admitted = self._admit(f"localhost:{uid}:{gid}:{pid}")
            except OSError:
                admitted = False
            if not admitted:
                self._refuse(conn)
                continue
            self._admitted += 1
            if self._conn is not None:
                lost = lost or bool(self._expect)
                self._close_conn()
            self._conn, self.conn_fd = conn, conn.fileno()
            self._probe.register(conn.fileno(), select.POLLIN)
            self.version += 1
            self._write(GREETING + _READY)
        if lost:
            self._expect = b""
            raise LinkCut("closed", "the extension connected again; the request went with its old connection")

    def _refuse(self, conn: socket.socket) -> None:
        now = time.monotonic()
        try:
            conn.send(_REFUSAL)
        except OSError:
            pass
        self._refused.append((conn, now + REFUSED_HOLD_S))
        self._close_refused(now)

    def _close_refused(self, now: float) -> None:
        """Close the refused connections held past :data:`REFUSED_HOLD_S`, and the oldest over
        :data:`REFUSED_KEPT` (checked at each refusal and each request)."""
        while self._refused and (len(self._refused) > REFUSED_KEPT or self._refused[0][1] <= now):
            self._refused.pop(0)[0].close()

    def _receive(self) -> bytes | None:
        conn = self._conn
        assert conn is not None
        try:
            data = conn.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._cut("closed", f"the extension's connection failed: {exc}")
        if not data:
            self._cut("closed", "the extension closed its connection (it exited, or closed its socket)")
        if not self._in and self._ready and not self._frames:
            # The fast path: nothing buffered and one read that is exactly one reply (what every reply is)
            start = correlated_body(data, self.limit)
            if start:
                if data[2:6] != self._expect or not self._expect:
                    return None  # a late reply: dropped
                self._expect = b""
                return data[start:]
        self._in += data
        return self._parse()

    # ------------------------------------------------------------------ frames

    def _parse(self) -> bytes | None:
        """Take every whole frame buffered; the awaited reply's body if one of them completed it."""
        buf, pos, reply = self._in, self._pos, None
        if not self._greeted:
            if len(buf) < GREETING_SIZE:
                return None
            problem = greeting_problem(bytes(buf[:GREETING_SIZE]))
            if problem is not None:
                self._cut("protocol", f"bad greeting from the extension: {problem}")
            self._greeted, pos = True, GREETING_SIZE
        end = len(buf)
        while end - pos >= 2:
            flags = buf[pos]
            if flags & LONG:
                if end - pos < 9:
                    break
                size, start = int.from_bytes(buf[pos + 1:pos + 9], "big"), pos + 9
            else:
                size, start = buf[pos + 1], pos + 2
            if flags & ~_FLAGS:
                self._cut("protocol", f"a frame with unknown flags {flags:#x} from the extension")
            if size > self.limit:
                self._cut("over_limit", f"a frame of {size} bytes from the extension is over the limit of "
                                        f"{self.limit}")
            if end - start < size:
                break
            body = bytes(buf[start:start + size])
            pos = start + size
            if flags & COMMAND:
                self._on_command(body)
                continue
            if not self._ready:
                self._cut("protocol", "the extension sent a message before its READY")
            self._frames.append(body)
            if len(self._frames) > 3:
                self._cut("protocol", "a message of more than three frames from the extension (a reply is "
                                      "[id, empty, body])")
            if not flags & MORE:
                frames, self._frames = self._frames, []
                if len(frames) == 3 and frames[0] == self._expect and not frames[1] and self._expect:
                    reply, self._expect = frames[2], b""
                    break  # what follows is read later (a bad frame after it then fails no reply)
        if pos == end:
            buf.clear()
            pos = 0
        elif pos > _READ_SIZE:
            del buf[:pos]
            pos = 0
        self._pos = pos
        return reply

    def _on_command(self, body: bytes) -> None:
        name, data = split_command(body)
        if name == b"READY":
            kind = _socket_type(data)
            if kind not in _PEER_TYPES:
                self._cut("protocol", f"the extension's socket type {kind!r} cannot answer a REQ")
            self._ready = True
            if self._held:
                held, self._held = self._held, b""
                self._write(held)
        elif name == b"ERROR":
            self._cut("closed", "the extension sent ERROR")
        elif name == b"PING" and not self._out:  # a PONG only to a peer that reads (one PING per read)
            self._write(command_frame(b"PONG", bytes(data[2:18])))

    # ------------------------------------------------------------------ closing

    def _cut(self, reason: str, detail: str) -> NoReturn:
        """Close the connection, free the slot, raise :class:`LinkCut`."""
        self._close_conn()
        self._release(self._admitted)
        self._expect = b""
        raise LinkCut(reason, detail)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._probe.unregister(self.conn_fd)
            self._conn.close()
            self._conn, self.conn_fd = None, -1
            self.version += 1
        self._in.clear()
        self._pos = 0
        self._out.clear()
        self._held = b""
        self._frames = []
        self._greeted = self._ready = False

    def close(self) -> None:
        """Close the connection, the refused ones held and the listener (idempotent)."""
        self._close_conn()
        for conn, _ in self._refused:
            conn.close()
        self._refused.clear()
        self._listener.close()


def _socket_type(metadata: bytes) -> bytes:
    """The ``Socket-Type`` property of a ``READY`` command's metadata (``b""`` if absent or malformed)."""
    pos = 0
    while pos < len(metadata):
        size = metadata[pos]
        name = metadata[pos + 1:pos + 1 + size]
        pos += 1 + size
        if pos + 4 > len(metadata):
            break
        length = int.from_bytes(metadata[pos:pos + 4], "big")
        value = metadata[pos + 4:pos + 4 + length]
        pos += 4 + length
        if name.lower() == b"socket-type":
            return value
    return b""
