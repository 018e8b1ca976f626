"""``ext_sdk.zmtp`` against real libzmq sockets (pyzmq, as the host binds them) and against a raw peer
that misbehaves on purpose: framing at both size classes, REQ correlation, timeouts that keep the
stream intact, ZAP refusal, reconnection, the frame limit, heartbeats, the wrong mechanism.
"""

from __future__ import annotations

import _socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ext_sdk.zmtp import ConnectionLost, Refused, Reply, Request

LIMIT = 1 << 20
WAIT_MS = 5000


@pytest.fixture
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _host_req(zctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sock = zctx.socket(zmq.REQ)
    sock.setsockopt(zmq.REQ_RELAXED, 1)
    sock.setsockopt(zmq.REQ_CORRELATE, 1)
    sock.rcvtimeo = sock.sndtimeo = WAIT_MS
    sock.bind(endpoint)
    return sock


def _host_rep(zctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sock = zctx.socket(zmq.REP)
    sock.rcvtimeo = sock.sndtimeo = WAIT_MS
    sock.bind(endpoint)
    return sock


def _serve(peer: Reply, count: int) -> threading.Thread:
    def run() -> None:
        for _ in range(count):
            body = peer.recv()
            peer.send(b"re:" + body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 200_000])
def test_a_reply_peer_answers_libzmq_req_with_relaxed_correlated_envelopes(
        zctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, size: int) -> None:
    endpoint = f"ipc://{tmp_path}/e"
    host = _host_req(zctx, endpoint)
    peer = Reply(endpoint, LIMIT)
    peer.connect()
    thread = _serve(peer, 2)
    for n in (size, size + 1):  # two requests: the envelope of the first is not reused for the second
        body = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
        host.send(body)
        assert host.recv() == b"re:" + body
    thread.join(WAIT_MS / 1000)
    assert not thread.is_alive()
    peer.close()


def test_a_request_peer_gets_its_answer_and_skips_a_stale_one(zctx: zmq.Context[zmq.Socket[bytes]],
                                                              tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/c"
    host = zctx.socket(zmq.ROUTER)  # a ROUTER can send a stale answer; a REP cannot
    host.rcvtimeo = WAIT_MS
    host.bind(endpoint)
    peer = Request(endpoint, LIMIT)
    peer.send(b"first")
    routing, first_id, delimiter, body = host.recv_multipart()
    assert (len(first_id), delimiter, body) == (4, b"", b"first")
    with pytest.raises(TimeoutError):  # not answered in time: the caller gives up on it
        peer.recv(0.05)
    peer.send(b"second")
    _, second_id, _, body = host.recv_multipart()
    assert body == b"second" and second_id != first_id
    host.send_multipart([routing, first_id, b"", b"late answer to first"])
    host.send_multipart([routing, second_id, b"", b"answer to second"])
    assert peer.recv(WAIT_MS / 1000) == b"answer to second"
    peer.close()


def test_a_request_peer_round_trips_through_libzmq_rep(zctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/c"
    host = _host_rep(zctx, endpoint)
    peer = Request(endpoint, LIMIT)
    for body in (b"hello", b"y" * 100_000):
        peer.send(body)
        host.send(host.recv()[::-1])
        assert peer.recv(WAIT_MS / 1000) == body[::-1]
    peer.close()


def _zap_handler(zctx: zmq.Context[zmq.Socket[bytes]], status: bytes, answers: int) -> threading.Thread:
    zap = zctx.socket(zmq.REP)
    zap.rcvtimeo = WAIT_MS
    zap.bind("inproc://zeromq.zap.01")

    def run() -> None:
        try:
            for _ in range(answers):
                version, request_id, *_ = zap.recv_multipart()
                zap.send_multipart([version, request_id, status, b"no" if status != b"200" else b"OK", b"", b""])
        except zmq.Again:
            pass
        finally:
            zap.close(linger=0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_peer_refused_by_the_hosts_zap_handler_raises_refused(zctx: zmq.Context[zmq.Socket[bytes]],
                                                                tmp_path: Path) -> None:
    handler = _zap_handler(zctx, b"400", answers=2)
    endpoint = f"ipc://{tmp_path}/e"
    host = zctx.socket(zmq.REQ)
    host.zap_domain = b"test"
    host.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    host.bind(endpoint)
    peer = Reply(endpoint, LIMIT)
    with pytest.raises(Refused, match="refused"):
        peer.connect()
    assert not peer.connected
    with pytest.raises(Refused):  # recv does not retry a refusal for ever: it reports it
        peer.recv()
    handler.join(WAIT_MS / 1000)


def test_a_reply_peer_reconnects_after_the_host_socket_is_replaced(zctx: zmq.Context[zmq.Socket[bytes]],
                                                                    tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/e"
    first = _host_req(zctx, endpoint)
    peer = Reply(endpoint, LIMIT)
    peer.connect()
    thread = _serve(peer, 2)
    first.send(b"one")
    assert first.recv() == b"re:one"
    first.close(linger=0)  # the connection ends under the waiting peer
    second = _host_req(zctx, endpoint)
    second.send(b"two")
    assert second.recv() == b"re:two"
    thread.join(WAIT_MS / 1000)
    assert not thread.is_alive()
    peer.close()


def test_a_request_peer_reports_a_lost_connection_and_connects_again_on_send(
        zctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/c"
    host = _host_rep(zctx, endpoint)
    peer = Request(endpoint, LIMIT)
    peer.send(b"q")
    assert host.recv() == b"q"
    host.close(linger=0)
    with pytest.raises(ConnectionLost):
        peer.recv(WAIT_MS / 1000)
    again = _host_rep(zctx, endpoint)
    peer.send(b"q2")
    again.send(again.recv() + b"!")
    assert peer.recv(WAIT_MS / 1000) == b"q2!"
    peer.close()


def test_a_frame_over_the_limit_ends_the_connection(zctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/c"
    host = _host_rep(zctx, endpoint)
    peer = Request(endpoint, 1000)
    peer.send(b"q")
    host.send(host.recv() * 2000)
    with pytest.raises(ConnectionLost, match="over the limit"):
        peer.recv(WAIT_MS / 1000)
    assert not peer.connected


def test_a_peer_that_wants_another_mechanism_is_not_spoken_to(zctx: zmq.Context[zmq.Socket[bytes]],
                                                              tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/c"
    host = zctx.socket(zmq.REP)
    host.plain_server = True
    host.bind(endpoint)
    peer = Request(endpoint, LIMIT)
    with pytest.raises(ConnectionLost):  # libzmq resets the connection, or its greeting names PLAIN
        peer.connect()
    assert not peer.connected


class _RawHost:
    """A hand-driven ZMTP listener: the test writes exactly the bytes it wants the peer to see."""

    def __init__(self, path: Path) -> None:
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(WAIT_MS / 1000)
        self.conn: _socket.socket | None = None

    def accept_and_greet(self) -> _socket.socket:
        fd, _ = self.listener._accept()  # type: ignore[attr-defined]
        conn = _socket.socket(fileno=fd)
        conn.settimeout(WAIT_MS / 1000)
        self.conn = conn
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x01" + b"\x00" * 31
        body = b"\x05READY" + b"\x0bSocket-Type" + (3).to_bytes(4, "big") + b"REQ"
        conn.sendall(greeting + bytes((0x04, len(body))) + body)
        return conn

    def read(self, size: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            assert chunk, "the peer closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def raw_host(tmp_path: Path) -> Iterator[_RawHost]:
    host = _RawHost(tmp_path / "raw")
    yield host
    host.close()


def _finish_in_thread(peer: Reply) -> threading.Thread:
    thread = threading.Thread(target=peer.connect, daemon=True)
    thread.start()
    return thread


def test_a_timeout_in_the_middle_of_a_message_keeps_the_stream_whole(raw_host: _RawHost, tmp_path: Path) -> None:
    peer = Request(f"ipc://{tmp_path}/raw", LIMIT)
    connecting = threading.Thread(target=peer.connect, daemon=True)
    connecting.start()
    conn = raw_host.accept_and_greet()
    raw_host.read(64)  # the peer's greeting
    connecting.join(WAIT_MS / 1000)
    assert peer.connected
    peer.send(b"ask")
    answer = b"\x01\x04" + (1).to_bytes(4, "little") + b"\x01\x00" + b"\x00\x06" + b"answer"
    conn.sendall(answer[:7])  # the id frame and half of the delimiter's header
    with pytest.raises(TimeoutError):
        peer.recv(0.05)
    conn.sendall(answer[7:])
    assert peer.recv(WAIT_MS / 1000) == b"answer"
    peer.close()


def test_a_heartbeat_ping_is_answered_with_pong(raw_host: _RawHost, tmp_path: Path) -> None:
    peer = Reply(f"ipc://{tmp_path}/raw", LIMIT)
    connecting = _finish_in_thread(peer)
    conn = raw_host.accept_and_greet()
    greeting = raw_host.read(64)
    assert greeting[10:12] == b"\x03\x00" and greeting[12:16] == b"NULL"
    ready_size = raw_host.read(2)[1]
    assert b"Socket-Type" in raw_host.read(ready_size)
    connecting.join(WAIT_MS / 1000)
    ping = b"\x04PING" + (100).to_bytes(2, "big") + b"ctx"
    request = b"\x01\x00" + b"\x00\x02hi"
    conn.sendall(bytes((0x04, len(ping))) + ping + request)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(peer.recv()), daemon=True)
    reader.start()
    reader.join(WAIT_MS / 1000)
    assert got == [b"hi"]
    pong_size = raw_host.read(2)
    assert pong_size[0] == 0x04 and raw_host.read(pong_size[1]) == b"\x04PONGctx"
    peer.close()
