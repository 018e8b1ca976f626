"""The host's own ZMTP ``REQ`` peer for the events channel (``host.exthost.events_link``), driven over real
``ipc://`` sockets: a libzmq ``REP`` (pyzmq), the SDK's pure-Python ``REP`` and raw sockets that misbehave."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ext_sdk.zmtp import GREETING, Refused, Reply, command_frame, frame_header, metadata_property
from host.exthost.events_link import POLLOUT, EventsLink, LinkCut

LIMIT = 64 * 1024


class Harness:
    """One link, its admission answers and releases, and a bounded way to drive it."""

    def __init__(self, path: Path) -> None:
        self.endpoint = f"ipc://{path}"
        self.addresses: list[str] = []
        self.released: list[int] = []
        self.admit = True
        self.link = EventsLink(self.endpoint, LIMIT, admit=self._admit, release=self.released.append)

    def _admit(self, address: str) -> bool:
        self.addresses.append(address)
        return self.admit

    def drive(self, seconds: float = 5.0, until_connected: bool = False) -> bytes | None:
        """Poll and service the link until a reply arrives (or a connection, with ``until_connected``)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until_connected and self.link.connected:
                return None
            poller = zmq.Poller()
            for item, flags in self.link.poll_items():
                poller.register(item, flags)
            for item, flags in poller.poll(50):
                reply = self.link.service(item, flags)
                if reply is not None:
                    return reply
        if until_connected:
            raise AssertionError("no connection")
        raise AssertionError("no reply")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "events.sock")
    yield h
    h.link.close()


@pytest.fixture
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _echo_rep(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, stop: threading.Event, prefix: bytes = b"re:"
              ) -> threading.Thread:
    def run() -> None:
        sock = ctx.socket(zmq.REP)
        sock.linger = 0
        sock.connect(endpoint)
        while not stop.is_set():
            if sock.poll(20):
                sock.send(prefix + sock.recv())
        sock.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _raw_peer(endpoint: str, socket_type: bytes = b"REP") -> socket.socket:
    """A raw connection that has sent a correct greeting and ``READY``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(endpoint.removeprefix("ipc://"))
    sock.sendall(GREETING + command_frame(b"READY", metadata_property(b"Socket-Type", socket_type)))
    return sock


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_a_libzmq_rep_gets_requests_and_its_replies_come_back(harness: Harness, zctx: zmq.Context[zmq.Socket[bytes]]
                                                              ) -> None:
    stop = threading.Event()
    thread = _echo_rep(zctx, harness.endpoint, stop)
    try:
        harness.drive(until_connected=True)
        # sent at once, before the peer's READY was read: held until it arrives (libzmq drops a connection on
        # which a message comes before its own handshake is done)
        harness.link.send(1, b"first")
        assert harness.drive() == b"re:first"
        for i in range(2, 50):
            harness.link.send(i, b"n%d" % i)
            assert harness.drive() == b"re:n%d" % i
        big = os.urandom(LIMIT - 10)
        harness.link.send(50, big)
        assert harness.drive() is not None
    finally:
        stop.set()
        thread.join(5)
    address = harness.addresses[0].split(":")
    assert address[0] == "localhost" and int(address[3]) == os.getpid()  # SO_PEERCRED, as ZAP reports it
    assert stat.S_IMODE(os.stat(harness.endpoint.removeprefix("ipc://")).st_mode) == 0o600


def test_the_sdks_pure_python_rep_is_served_too(harness: Harness) -> None:
    peer = Reply(harness.endpoint, LIMIT)
    thread = threading.Thread(target=peer.connect, daemon=True)
    thread.start()
    harness.drive(until_connected=True)  # the greeting and READY go out at accept: that ends connect()
    thread.join(5)
    assert peer.connected
    harness.link.send(7, b"ping")
    assert peer.recv() == b"ping"
    peer.send(b"pong")
    assert harness.drive() == b"pong"
    peer.close()


@pytest.mark.parametrize("one_write", [True, False], ids=["one-read", "read-by-read"])
def test_a_late_reply_is_dropped_and_the_last_request_answered(harness: Harness, one_write: bool) -> None:
    """Both ways a reply is read: several messages in one read (the frame walk), or one message per read
    (the fast path)."""
    peer = _raw_peer(harness.endpoint)
    harness.drive(until_connected=True)
    harness.link.send(1, b"one")
    harness.link.send(2, b"two")  # REQ_RELAXED: the first is given up
    _read_exactly(peer, 64)
    late = frame_header(4, 1) + (1).to_bytes(4, "big") + frame_header(0, 1) + frame_header(3, 0) + b"old"
    answer = frame_header(4, 1) + (2).to_bytes(4, "big") + frame_header(0, 1) + frame_header(3, 0) + b"new"
    if one_write:
        peer.sendall(late + answer)
    else:
        peer.sendall(late)
        with pytest.raises(AssertionError, match="no reply"):
            harness.drive(0.3)  # read and dropped
        peer.sendall(answer)
    assert harness.drive() == b"new"
    peer.close()


def test_a_frame_over_the_limit_cuts_the_connection_and_frees_the_slot(harness: Harness) -> None:
    peer = _raw_peer(harness.endpoint)
    harness.drive(until_connected=True)
    harness.link.send(1, b"req")
    peer.sendall(frame_header(LIMIT + 1, 0))  # a header is enough: nothing of the body is read
    with pytest.raises(LinkCut) as cut:
        harness.drive()
    assert cut.value.reason == "over_limit"
    assert not harness.link.connected and harness.released == [1]
    data = b""
    while chunk := peer.recv(65536):
        data += chunk
    assert data.startswith(GREETING)  # the host's greeting and READY, then the end of the stream
    peer.close()


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n" + b"x" * 60, GREETING[:10] + b"\x02" + b"\x00" * 53],
                         ids=["http", "zmtp-2"])
def test_a_peer_that_does_not_speak_zmtp_3_is_cut(harness: Harness, garbage: bytes) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(harness.endpoint.removeprefix("ipc://"))
    sock.sendall(garbage)
    harness.drive(until_connected=True)
    with pytest.raises(LinkCut) as cut:  # found by the send (input waiting is read first) or the wait
        harness.link.send(1, b"req")
        harness.drive()
    assert cut.value.reason == "protocol"
    sock.close()


def test_a_peer_of_the_wrong_socket_type_is_cut(harness: Harness) -> None:
    peer = _raw_peer(harness.endpoint, socket_type=b"PUB")
    harness.drive(until_connected=True)
    with pytest.raises(LinkCut) as cut:
        harness.link.send(1, b"req")
        harness.drive()
    assert cut.value.reason == "protocol" and "PUB" in str(cut.value)
    peer.close()


def test_a_refused_peer_gets_error_and_no_request(harness: Harness, zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    harness.admit = False
    peer = Reply(harness.endpoint, LIMIT)
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            peer.connect()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    end = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < end:
        poller = zmq.Poller()
        poller.register(harness.link.listen_fd, zmq.POLLIN)
        for item, flags in poller.poll(50):
            harness.link.service(item, flags)
    thread.join(1)
    assert len(errors) == 1 and isinstance(errors[0], Refused), errors
    assert "not admitted" in str(errors[0])
    assert not harness.link.connected and harness.addresses


def _waiting(link: EventsLink) -> bool:
    return any(flags & POLLOUT for _, flags in link.poll_items())


def test_output_the_socket_does_not_take_waits_without_blocking_up_to_a_limit(harness: Harness) -> None:
    peer = _raw_peer(harness.endpoint)
    harness.drive(until_connected=True)
    # the peer's READY must be read before a request is written
    poller = zmq.Poller()
    poller.register(harness.link.conn_fd, zmq.POLLIN)
    poller.poll(2000)
    harness.link.service(harness.link.conn_fd, zmq.POLLIN)
    body = os.urandom(LIMIT // 4)
    sent = 0
    while not _waiting(harness.link) and sent < 1000:  # fill the socket buffer; the peer reads nothing yet
        sent += 1
        harness.link.send(sent, body)
    assert _waiting(harness.link) and harness.link.connected  # the rest waits; nothing blocked
    received = 0
    peer.settimeout(0.05)
    end = time.monotonic() + 10
    while _waiting(harness.link) and time.monotonic() < end:
        try:
            received += len(peer.recv(1 << 20))
        except TimeoutError:
            pass
        poller = zmq.Poller()
        for item, flags in harness.link.poll_items():
            poller.register(item, flags)
        for item, flags in poller.poll(10):
            harness.link.service(item, flags)
    assert not _waiting(harness.link) and received > 0
    # a peer that never reads: the waiting output is bounded, then the connection is cut
    with pytest.raises(LinkCut) as cut:
        for i in range(sent + 1, sent + 1000):
            harness.link.send(i, body)
    assert cut.value.reason == "stalled" and not harness.link.connected
    assert (sent + 1000) * len(body) > harness.link.out_limit
    peer.close()


@pytest.mark.parametrize("attack", ["ping-flood", "endless-message"])
def test_a_peer_cannot_grow_the_hosts_memory_without_bound(harness: Harness, attack: bytes) -> None:
    """A PING flood from a peer that reads nothing (each would queue a PONG), or a message of ever more empty
    frames: the first is answered only while nothing waits, the second cut at its fourth frame."""
    peer = _raw_peer(harness.endpoint)
    harness.drive(until_connected=True)
    flood = (command_frame(b"PING", b"\x00\x10" + b"c" * 200) * 20_000 if attack == "ping-flood" else
             frame_header(4, 1) + b"\x00\x00\x00\x09" + frame_header(0, 1) * 10)

    def send() -> None:
        try:
            peer.sendall(flood)
        except OSError:
            pass  # cut, or the test ended

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    poller = zmq.Poller()
    poller.register(harness.link.conn_fd, zmq.POLLIN)
    end = time.monotonic() + 5
    try:
        while time.monotonic() < end and harness.link.connected:
            for item, flags in poller.poll(50):
                harness.link.service(item, flags)
            if attack == "ping-flood" and not sender.is_alive() and not poller.poll(0):
                break  # everything read
    except LinkCut as cut:
        assert attack == "endless-message" and cut.reason == "protocol"
    else:
        assert attack == "ping-flood" and not sender.is_alive()
        assert len(harness.link._out) <= 64  # at most one short PONG waits for a peer that reads nothing
    peer.close()
    sender.join(5)


def test_the_holders_reconnect_replaces_its_connection(harness: Harness) -> None:
    first = _raw_peer(harness.endpoint)
    harness.drive(until_connected=True)
    old_fd = harness.link.conn_fd
    harness.link.send(1, b"req")
    second = _raw_peer(harness.endpoint)
    with pytest.raises(LinkCut):  # the request in flight went with the old connection
        harness.drive()
    assert harness.link.connected and harness.link.conn_fd != -1
    first.settimeout(5)
    data = b""
    while chunk := first.recv(65536):
        data += chunk
    assert data.startswith(GREETING)  # the old connection got its greeting, then the end of the stream
    harness.link.send(2, b"again")
    envelope = frame_header(4, 1) + (2).to_bytes(4, "big") + frame_header(0, 1)
    second.sendall(envelope + frame_header(2, 0) + b"ok")
    assert harness.drive() == b"ok"
    assert old_fd != -1 and harness.released == []  # a replacement frees nothing: the holder is connected
    first.close()
    second.close()


def test_ping_is_answered_with_pong(harness: Harness) -> None:
    peer = _raw_peer(harness.endpoint)
    harness.drive(until_connected=True)
    peer.sendall(command_frame(b"PING", b"\x00\x10ctx"))
    poller = zmq.Poller()
    poller.register(harness.link.conn_fd, zmq.POLLIN)
    poller.poll(2000)
    harness.link.service(harness.link.conn_fd, zmq.POLLIN)
    expected = GREETING + command_frame(b"READY", metadata_property(b"Socket-Type", b"REQ")) + command_frame(
        b"PONG", b"ctx")
    assert _read_exactly(peer, len(expected)) == expected
    peer.close()


def test_a_socket_file_left_by_an_earlier_launch_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound and never listened on: what a killed launch leaves in its directory
    stale.close()
    h = Harness(path)
    try:
        peer = _raw_peer(h.endpoint)
        h.drive(until_connected=True)
        peer.close()
    finally:
        h.link.close()
