"""ZeroMQ's wire protocol in pure Python, for the extension process: REQ and REP peers over ``ipc://``.

The host binds ZeroMQ sockets (libzmq for ``calls`` and ``control``; for ``events``, its own ZMTP peer
``host.exthost.events_link``, which uses this module's framing helpers); the Python SDK connects to them
with this module instead of pyzmq. It speaks ZMTP 3.0 (RFC 23, https://rfc.zeromq.org/spec/23/) with
the NULL mechanism, exactly what a libzmq ``REQ``/``REP`` socket sends on ``ipc://``, so the host cannot
tell the difference and every other SDK keeps using its own libzmq binding (the JS SDK: the npm ``zeromq`` package).

Why not pyzmq here (measured, issue 10): ``import zmq`` costs more than a whole bare interpreter start
(~40 ms CPU against ~30 ms on the project's 2-core machine) and ~2.5 MiB of the process's own memory,
and libzmq hands every message to and from an I/O thread of its own — two thread wake-ups per frame
on each side of a round trip. Here a frame is one ``sendmsg``/``recv`` on the calling thread. This
module needs only the interpreter's ``_socket`` (``socket.py`` adds ~6 ms of enum building at import).

What is implemented, and the contract:

* **Connect** (:meth:`Peer.connect`): an ``AF_UNIX`` stream connection to the path of an ``ipc://``
  endpoint, then the greeting (signature ``FF 00*8 7F``, version 3.0, mechanism ``NULL``, as-server 0,
  filler) and a ``READY`` command with ``Socket-Type`` (and an empty ``Identity`` for a ``REQ``). The
  greeting and ``READY`` go out in one write; :meth:`Peer.finish` then reads the host's greeting and
  its ``READY``. The host's ZAP handler (``host.exthost.peers``) decides between the two: it answers
  ``ERROR`` to a refused peer, which raises :class:`Refused`. Announcing 3.0 (not 3.1) means libzmq
  sends no heartbeat ``PING``; one that arrives anyway is answered with ``PONG``.
* **Frames**: flags ``MORE`` 0x01, ``LONG`` 0x02 (8-byte big-endian size, else 1 byte), ``COMMAND``
  0x04. A message is the frames up to one without ``MORE``. A frame over ``max_frame`` (the host's own
  limit plus the envelope) ends the connection, as libzmq's ``ZMQ_MAXMSGSIZE`` does.
* **REP** (:class:`Reply`): :meth:`Reply.recv` returns the body of the next request and keeps its
  envelope (every frame up to and including the empty delimiter: with the host's ``REQ_CORRELATE``,
  a 4-byte request id); :meth:`Reply.send` puts that envelope in front of the reply. Strictly
  alternating, as libzmq's REP. A request without a delimiter is dropped, as libzmq drops it; one
  whose body is not exactly one frame is returned as ``b""`` (the caller's frame check rejects it and
  still answers). A lost connection is reconnected by ``recv`` every :data:`RECONNECT_S` (libzmq's
  default ``ZMQ_RECONNECT_IVL``), for as long as the process lives — the process dies with the host;
  a reply whose connection is gone is dropped, as libzmq drops it.
* **REQ** (:class:`Request`), with libzmq's ``REQ_RELAXED`` + ``REQ_CORRELATE`` semantics: every
  request is ``[id (4 bytes), empty, body]``; :meth:`Request.recv` skips any reply whose id is not the
  last request's (a late answer to a request that timed out). A new request may be sent at any time.
  A lost connection raises :class:`ConnectionLost` from ``recv``; the next ``send`` connects again.

Each peer is used by one thread at a time (the runtime gives each channel to one thread).
"""

from __future__ import annotations

import _socket
import time

__all__ = ["COMMAND", "GREETING", "GREETING_SIZE", "HANDSHAKE_TIMEOUT_S", "LONG", "MORE", "RECONNECT_S",
           "ConnectionLost", "Peer", "Refused", "Reply", "Request", "command_frame", "correlated_body", "frame_header",
           "greeting_problem", "ipc_path", "metadata_property", "split_command"]

#: Between two connection attempts of a REP that lost its connection (libzmq's ``ZMQ_RECONNECT_IVL``).
RECONNECT_S = 0.1
#: How long the host may take to answer the greeting and ``READY`` (its ZAP check included).
HANDSHAKE_TIMEOUT_S = 10.0

#: Frame flags (RFC 23): more frames follow, an 8-byte size, a command.
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
#: This side's whole greeting: signature, version 3.0, mechanism ``NULL``, as-server 0, filler.
SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
GREETING = SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
GREETING_SIZE = 64
_READ_SIZE = 65536
#: Bodies below this size are copied behind their frame header and written with one ``sendall``.
_COPY_BELOW = 4096


class ConnectionLost(OSError):
    """The connection to the host ended (or was never made) while a message was due."""


class Refused(ConnectionLost):
    """The host refused this peer at the handshake (a ZMTP ``ERROR`` command; the reason is its text)."""


def command_frame(name: bytes, data: bytes) -> bytes:
    """A command frame: ``name`` (short string) then ``data``."""
    body = bytes((len(name),)) + name + data
    return frame_header(len(body), COMMAND) + body


def split_command(body: bytes) -> tuple[bytes, bytes]:
    """A command frame's body as ``(name, data)`` (``(b"", b"")`` for an empty one)."""
    name = bytes(body[1:1 + body[0]]) if body else b""
    return name, body[1 + len(name):]


def frame_header(size: int, flags: int) -> bytes:
    """The flags and size of a frame of ``size`` bytes (``LONG`` added when it needs 8 bytes)."""
    if size < 256:
        return bytes((flags, size))
    return bytes((flags | LONG,)) + size.to_bytes(8, "big")


def metadata_property(name: bytes, value: bytes) -> bytes:
    """One ``READY`` metadata property."""
    return bytes((len(name),)) + name + len(value).to_bytes(4, "big") + value


def greeting_problem(greeting: bytes) -> str | None:
    """What is wrong with a peer's 64-byte greeting for this NULL-mechanism peer, or ``None``."""
    if greeting[0] != 0xFF or not greeting[9] & 1 or greeting[10] < 3:
        return "the peer does not speak ZMTP 3"
    mechanism = greeting[12:32].rstrip(b"\x00")
    if mechanism != b"NULL":
        return f"the peer wants security mechanism {mechanism.decode(errors='replace')!r}, not NULL"
    return None


def correlated_body(data: bytes, max_frame: int) -> int:
    """Where the body starts if ``data`` is exactly one message ``[4-byte id, empty, body]`` (the envelope of
    ``REQ_CORRELATE``: every request of the host's and every reply to it) with a body of at most ``max_frame``
    bytes; else 0. The id is ``data[2:6]`` and the framed envelope ``data[:8]``. The fast path of a read that
    holds one whole message: no frame-by-frame walk."""
    size = len(data)
    if size < 10 or data[0] != MORE or data[1] != 4 or data[6] != MORE or data[7] != 0:
        return 0
    flags = data[8]
    if flags == 0:
        start, length = 10, data[9]
    elif flags == LONG and size >= 17:
        start, length = 17, int.from_bytes(data[9:17], "big")
    else:
        return 0
    return start if start + length == size and length <= max_frame else 0


def ipc_path(endpoint: str) -> str:
    """The socket path of an ``ipc://`` endpoint (``ipc://@name``: the abstract namespace)."""
    if not endpoint.startswith("ipc://"):
        raise ValueError(f"only ipc:// endpoints are supported, not {endpoint!r}")
    path = endpoint[len("ipc://"):]
    return "\0" + path[1:] if path.startswith("@") else path  # ``ipc://@name``: the abstract namespace


class Peer:
    """One ZMTP connection to a host socket; see the module docstring for the contract."""

    #: ``Socket-Type`` this peer announces.
    socket_type = b""

    def __init__(self, endpoint: str, max_frame: int) -> None:
        self.endpoint = endpoint
        self.max_frame = max_frame
        self._sock: _socket.socket | None = None
        self._buf = bytearray()
        self._pos = 0
        self._handshaking = False

    # -- connection

    def start(self) -> None:
        """Open the connection and send the greeting and ``READY`` (the answer is read by :meth:`finish`)."""
        self.close()
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            sock.connect(ipc_path(self.endpoint))
            ready = metadata_property(b"Socket-Type", self.socket_type)
            if self.socket_type == b"REQ":
                ready += metadata_property(b"Identity", b"")
            sock.sendall(GREETING + command_frame(b"READY", ready))
        except OSError as exc:
            sock.close()
            raise ConnectionLost(f"cannot connect to {self.endpoint}: {exc}") from exc
        self._sock = sock
        self._handshaking = True

    def finish(self) -> None:
        """Read the host's greeting and ``READY``; raises :class:`Refused` on ``ERROR``, else ``ConnectionLost``."""
        if self._sock is None:
            raise ConnectionLost(f"not connected to {self.endpoint}")
        try:
            problem = greeting_problem(self._take(GREETING_SIZE))
            if problem is not None:
                raise ConnectionLost(f"{self.endpoint}: {problem}")
            while self._handshaking:  # ``READY`` (or ``ERROR``) is the only thing due now
                self._read_message()
            self._sock.settimeout(None)
        except BaseException:
            self.close()
            raise

    def connect(self) -> None:
        """:meth:`start` then :meth:`finish`."""
        self.start()
        self.finish()

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still have been closed by the host unseen)."""
        return self._sock is not None

    def close(self) -> None:
        """Close the connection (unread input is dropped)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()
        self._pos = 0
        self._handshaking = False

    # -- frames

    def _fill(self, need: int) -> None:
        """Read until ``need`` unread bytes are buffered; ``ConnectionLost`` at end of stream."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"not connected to {self.endpoint}")
        buf = self._buf
        need += self._pos
        while len(buf) < need:
            try:
                chunk = sock.recv(max(_READ_SIZE, need - len(buf)))
            except TimeoutError:
                raise
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"{self.endpoint}: {exc}") from exc
            if not chunk:
                self.close()
                raise ConnectionLost(f"{self.endpoint}: the host closed the connection")
            buf += chunk

    def _take(self, size: int) -> bytes:
        if len(self._buf) - self._pos < size:
            self._fill(size)
        start = self._pos
        self._pos = start + size
        return bytes(self._buf[start:start + size])

    def _read_message(self) -> list[bytes]:
        """The next message's frames; commands in between are handled here (``[]`` after one).

        A timeout leaves the stream where it was: the message is read again whole by the next call.
        """
        buf = self._buf
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        elif self._pos > _READ_SIZE:
            del buf[:self._pos]
            self._pos = 0
        start = self._pos
        try:
            return self._read_frames()
        except TimeoutError:
            self._pos = start
            raise

    def _read_frames(self) -> list[bytes]:
        frames: list[bytes] = []
        while True:
            head = self._take(2)
            flags = head[0]
            size = head[1] if not flags & LONG else int.from_bytes(head[1:] + self._take(7), "big")
            if size > self.max_frame:
                self.close()
                raise ConnectionLost(f"{self.endpoint}: a frame of {size} bytes is over the limit of {self.max_frame}")
            body = self._take(size)
            if flags & COMMAND:
                self._on_command(body)
                return []
            frames.append(body)
            if not flags & MORE:
                return frames

    def _on_command(self, body: bytes) -> None:
        name, data = split_command(body)
        if name == b"READY":
            self._handshaking = False
        elif name == b"ERROR":
            reason = data[1:1 + data[0]].decode(errors="replace") if data else ""
            self.close()
            raise Refused(f"{self.endpoint}: the host refused this connection ({reason or 'no reason given'})")
        elif name == b"PING" and self._sock is not None:  # ZMTP 3.1 heartbeat: PONG echoes the context
            context = data[2:] if len(data) >= 2 else b""
            self._write(command_frame(b"PONG", context))

    def _write(self, head: bytes, body: bytes = b"") -> None:
        """Write ``head`` then ``body``; ``ConnectionLost`` (and the connection closed) when that fails.

        A body of :data:`_COPY_BELOW` bytes or more goes out with ``sendmsg`` instead of being copied behind
        its head (then the rest of a partial write); a smaller one is copied, which is cheaper than ``sendmsg``.
        """
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"not connected to {self.endpoint}")
        try:
            if len(body) < _COPY_BELOW:
                sock.sendall(head + body)
            else:
                sent = sock.sendmsg((head, body))
                if sent < len(head) + len(body):
                    sock.sendall((head + body)[sent:])
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"{self.endpoint}: {exc}") from exc

    def _send_frames(self, envelope: bytes, body: bytes) -> None:
        """Send ``envelope`` (already framed, each frame with ``MORE``) then ``body`` as the last frame."""
        self._write(envelope + frame_header(len(body), 0), body)


def _split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]] | None:
    """``(envelope up to and including the empty delimiter, body frames)``; ``None`` without a delimiter."""
    for i, frame in enumerate(frames):
        if not frame:
            return frames[:i + 1], frames[i + 1:]
    return None


class Reply(Peer):
    """The extension's side of a host ``REQ`` socket (events, control)."""

    socket_type = b"REP"

    def __init__(self, endpoint: str, max_frame: int) -> None:
        super().__init__(endpoint, max_frame)
        self._envelope = b""

    def recv(self) -> bytes:
        """The next request's body; waits for as long as it takes, reconnecting a lost connection."""
        while True:
            sock = self._sock
            if sock is None:
                self._reconnect()
                continue
            if self._pos == len(self._buf):
                whole = self._recv_whole(sock)
                if whole is not None:
                    return whole
            try:
                frames = self._read_message()
            except Refused:
                raise
            except ConnectionLost:
                continue
            parts = _split_envelope(frames) if frames else None
            if parts is None:
                continue
            envelope, body = parts
            self._envelope = b"".join(frame_header(len(f), MORE) + f for f in envelope)
            return body[0] if len(body) == 1 else b""

    def _recv_whole(self, sock: _socket.socket) -> bytes | None:
        """The fast path of :meth:`recv` (nothing buffered): one read that is exactly one request with the
        host's envelope — ``[4-byte id, empty, body]``, what every event is — returns its body without the
        frame-by-frame walk. Anything else is buffered for the general path (``None``); so is a lost
        connection, which that path then finds."""
        try:
            data = sock.recv(_READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self.close()  # the general path reconnects
            return None
        start = correlated_body(data, self.max_frame)
        if start:
            self._envelope = data[:8]
            return data[start:]
        buf = self._buf
        buf.clear()
        buf += data
        self._pos = 0
        return None

    def send(self, body: bytes) -> None:
        """Answer the request :meth:`recv` returned; dropped if its connection is gone."""
        envelope, self._envelope = self._envelope, b""
        if self._sock is None:
            return
        try:
            self._send_frames(envelope, body)
        except ConnectionLost:
            return

    def _reconnect(self) -> None:
        try:
            self.connect()
        except Refused:
            raise
        except (ConnectionLost, TimeoutError):
            self.close()
            time.sleep(RECONNECT_S)


class Request(Peer):
    """The extension's side of a host ``REP`` socket (host calls), relaxed and correlated."""

    socket_type = b"REQ"

    def __init__(self, endpoint: str, max_frame: int) -> None:
        super().__init__(endpoint, max_frame)
        self._id = 0

    def send(self, body: bytes) -> None:
        """Send a request (connecting first if needed); raises :class:`ConnectionLost`."""
        if self._sock is None:
            self.connect()
        self._id = (self._id + 1) & 0xFFFFFFFF
        envelope = frame_header(4, MORE) + self._id.to_bytes(4, "little") + frame_header(0, MORE)
        self._send_frames(envelope, body)

    def recv(self, timeout_s: float) -> bytes:
        """The answer to the last request; raises ``TimeoutError`` after ``timeout_s`` or ``ConnectionLost``."""
        deadline = time.monotonic() + timeout_s
        expected = self._id.to_bytes(4, "little")
        while True:
            left = deadline - time.monotonic()
            sock = self._sock
            if sock is None:
                raise ConnectionLost(f"not connected to {self.endpoint}")
            if left <= 0:
                raise TimeoutError(f"no answer from {self.endpoint} within {timeout_s:g} s")
            sock.settimeout(left)
            try:
                frames = self._read_message()
            finally:
                if self._sock is not None:
                    self._sock.settimeout(None)
            if len(frames) == 3 and frames[0] == expected and not frames[1]:
                return frames[2]

