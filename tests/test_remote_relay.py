"""The remote worker's relay and the CURVE allow-list, on loopback TCP (issue 14, foundations).

The worker binds the TCP leg on ``tcp://127.0.0.1`` as a CURVE server whose ZAP domain is checked by a
:class:`~host.exthost.peers.PeerGate` holding the allowed host keys; the "host" is the host's own socket
layout (events/control REQ with ``REQ_RELAXED`` + ``REQ_CORRELATE``, calls REP) connecting as a CURVE client
that knows the worker's public key; the "extension" is the extension's socket layout on the worker's
``ipc://`` side. Frames are sealed with :mod:`ext_sdk.wire` at one end and opened at the other: the
relay passes them byte for byte, so the HMAC and sequence numbers hold end to end.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ext_sdk.wire import Opener, Sealer
from host.exthost.peers import UNAUTHENTICATED, PeerGate
from host.remote.keys import KeyFileError, allow_list, load_keypair, new_keypair
from host.remote.relay import Endpoints, Relay

KEY = os.urandom(32)
WAIT_MS = 5000
MAX_FRAME = 1 << 20


class FakeHost:
    """The host's three sockets for one extension, connecting as a CURVE client to the worker's relay."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], secret_file: Path, worker_public: bytes,
                 remote: Endpoints) -> None:
        pair = load_keypair(secret_file)
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        for name, kind in (("events", zmq.REQ), ("calls", zmq.REP), ("control", zmq.REQ)):
            sock = zctx.socket(kind)
            sock.linger = 0
            if kind == zmq.REQ:
                sock.setsockopt(zmq.REQ_RELAXED, 1)
                sock.setsockopt(zmq.REQ_CORRELATE, 1)
            sock.curve_serverkey = worker_public
            sock.curve_publickey = pair.public
            sock.curve_secretkey = pair.secret  # type: ignore[assignment]
            sock.connect(getattr(remote, name))
            self.sockets[name] = sock

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)


class Worker:
    """The worker's side: its PeerGate with the allowed host keys, and one relay."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, secret_file: Path,
                 allowed: frozenset[bytes]) -> None:
        self.keys = load_keypair(secret_file)
        self.gate = PeerGate(zctx)
        self.refusals: Counter[str] = Counter()
        self.gate.admit_keys("remote-x", "x@worker", allowed, self.refusals)
        self.local = _local(tmp_path)
        self.relay = Relay(zctx, self.local, "tcp://127.0.0.1", self.keys, remote_domain="remote-x",
                           max_frame=MAX_FRAME)

    def close(self) -> None:
        self.relay.close()
        self.gate.close()


class FakeExtension:
    """The extension's side: REP on events/control, REQ on calls, connected to the worker's ipc sockets."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], local: Endpoints) -> None:
        self.events = zctx.socket(zmq.REP)
        self.calls = zctx.socket(zmq.REQ)
        self.control = zctx.socket(zmq.REP)
        for sock, endpoint in ((self.events, local.events), (self.calls, local.calls),
                               (self.control, local.control)):
            sock.linger = 0
            sock.connect(endpoint)

    def close(self) -> None:
        for sock in (self.events, self.calls, self.control):
            sock.close(linger=0)


@pytest.fixture
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.term()


def _local(tmp_path: Path) -> Endpoints:
    base = tmp_path / "w"
    base.mkdir(mode=0o700, exist_ok=True)
    return Endpoints(f"ipc://{base}/e", f"ipc://{base}/c", f"ipc://{base}/k")


def _setup(zctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path,
           allowed: str) -> tuple[Worker, FakeHost, FakeExtension]:
    keys = tmp_path / "keys"
    for name in ("host", "worker", "someone-else"):
        new_keypair(keys, name)
    worker = Worker(zctx, tmp_path, keys / "worker.key_secret", allow_list([str(keys / f"{allowed}.key")]))
    host = FakeHost(zctx, keys / "host.key_secret", worker.keys.public, worker.relay.remote)
    return worker, host, FakeExtension(zctx, worker.local)


def _recv(sock: zmq.Socket[bytes]) -> bytes | None:
    return sock.recv() if sock.poll(WAIT_MS) else None


def test_frames_cross_the_relay_unchanged_in_all_three_channels(zctx: zmq.Context[zmq.Socket[bytes]],
                                                                tmp_path: Path) -> None:
    worker, host, ext = _setup(zctx, tmp_path, allowed="host")
    try:
        to_ext, from_host = Sealer(KEY), Opener(KEY, frozenset({"ping"}), validate=False)
        to_host, from_ext = Sealer(KEY), Opener(KEY, frozenset({"pong"}), validate=False)
        for n in range(3):  # events and control: host REQ → extension REP and back
            for channel in ("events", "control"):
                frame = to_ext.seal("ping", {"id": n, "channel": channel})
                host.sockets[channel].send(frame)
                ext_sock = getattr(ext, channel)
                got = _recv(ext_sock)
                assert got == frame and from_host.open(got)["id"] == n
                ext_sock.send(to_host.seal("pong", {"id": n}))
                reply = _recv(host.sockets[channel])
                assert reply is not None and from_ext.open(reply)["id"] == n
        ext.calls.send(b"hello from the extension")  # calls: extension REQ → host REP and back
        assert _recv(host.sockets["calls"]) == b"hello from the extension"
        host.sockets["calls"].send(b"welcome")
        assert _recv(ext.calls) == b"welcome"
        assert worker.refusals[UNAUTHENTICATED] == 0
    finally:
        ext.close()
        host.close()
        worker.close()


def test_a_stale_reply_through_the_relay_is_dropped_by_the_host(zctx: zmq.Context[zmq.Socket[bytes]],
                                                               tmp_path: Path) -> None:
    worker, host, ext = _setup(zctx, tmp_path, allowed="host")
    try:
        events = host.sockets["events"]
        events.send(b"first")
        assert _recv(ext.events) == b"first"  # the extension is slow: the host gives up and asks again
        events.send(b"second")
        ext.events.send(b"late answer to first")
        assert _recv(ext.events) == b"second"
        ext.events.send(b"answer to second")
        assert _recv(events) == b"answer to second"  # REQ_CORRELATE dropped the late one, end to end
    finally:
        ext.close()
        host.close()
        worker.close()


def test_a_host_whose_key_is_not_allowed_is_refused_and_counted(zctx: zmq.Context[zmq.Socket[bytes]],
                                                                  tmp_path: Path) -> None:
    worker, host, ext = _setup(zctx, tmp_path, allowed="someone-else")
    try:
        try:  # a REQ with no admitted peer has nowhere to send
            host.sockets["events"].send(b"secret event", zmq.NOBLOCK)
        except zmq.Again:
            pass
        assert not ext.events.poll(500)  # nothing reaches a stranger's extension
        for _ in range(50):  # the refusal is counted (bounded wait for the handshake to be tried)
            if worker.refusals[UNAUTHENTICATED]:
                break
            ext.events.poll(100)
        assert worker.refusals[UNAUTHENTICATED] >= 1
    finally:
        ext.close()
        host.close()
        worker.close()


def test_keys_are_created_private_and_bad_key_files_are_refused_in_words(tmp_path: Path) -> None:
    public, secret = new_keypair(tmp_path / "keys", "w1")
    assert (secret.stat().st_mode & 0o777) == 0o600 and (tmp_path / "keys").stat().st_mode & 0o077 == 0
    pair = load_keypair(secret)
    assert len(pair.public) == 40 and pair.secret is not None
    assert allow_list([str(public)]) == {pair.public} == allow_list([pair.public.decode()])
    assert allow_list([str(tmp_path / "keys")]) == {pair.public}
    with pytest.raises(KeyFileError, match="already exists"):
        new_keypair(tmp_path / "keys", "w1")
    os.chmod(secret, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_keypair(secret)
    with pytest.raises(KeyFileError, match="no secret key"):
        os.chmod(public, 0o600)
        load_keypair(public)
    with pytest.raises(KeyFileError, match="neither"):
        allow_list(["not-a-key"])
    with pytest.raises(KeyFileError, match="no such key file"):
        load_keypair(tmp_path / "missing.key_secret")


def test_a_worker_without_the_configured_key_gets_nothing(zctx: zmq.Context[zmq.Socket[bytes]],
                                                          tmp_path: Path) -> None:
    """An impostor listening where the worker should be: the host's CURVE handshake fails, no frame leaves."""
    keys = tmp_path / "keys"
    for name in ("host", "worker", "impostor"):
        new_keypair(keys, name)
    impostor = Worker(zctx, tmp_path, keys / "impostor.key_secret", allow_list([str(keys / "host.key")]))
    expected = load_keypair(keys / "worker.key_secret").public
    host = FakeHost(zctx, keys / "host.key_secret", expected, impostor.relay.remote)
    ext = FakeExtension(zctx, impostor.local)
    try:
        try:
            host.sockets["events"].send(b"secret event", zmq.NOBLOCK)
        except zmq.Again:
            pass
        assert not ext.events.poll(1000)
    finally:
        ext.close()
        host.close()
        impostor.close()
