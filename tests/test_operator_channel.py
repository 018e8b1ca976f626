"""The operator channel refuses what the extension channels refuse: forged, replayed and garbage frames.

Attacked the way another local process would: frames sent straight to the
host's ``ops`` socket with a raw REQ socket, one of them a captured, validly
signed request sent a second time.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable

import zmq

from ext_sdk.wire import Sealer
from host import ExtensionHost
from host.exthost.host import runtime_base
from host.exthost.ops import OpsClient, RunningHost, find_hosts


def this_host(new_host: Callable[..., ExtensionHost]) -> RunningHost:
    new_host()
    (found,) = [h for h in find_hosts(runtime_base()) if h.pid == os.getpid()]
    return found


def raw_request(host: RunningHost, frame: bytes) -> bytes:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(f"ipc://{host.directory}/ops")
        sock.send(frame)
        assert sock.poll(3000), "the host must answer a bad frame too (REP lockstep)"
        return sock.recv()
    finally:
        sock.close()


def test_ops_socket_is_private_and_answers_status(new_host: Callable[..., ExtensionHost]) -> None:
    host = this_host(new_host)
    mode = stat.S_IMODE(os.stat(host.directory / "ops").st_mode)
    assert mode == 0o600 and host.checkout.endswith("host")
    assert stat.S_IMODE(os.stat(host.directory / "host.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(host.directory / "ops.key").st_mode) == 0o600
    status = OpsClient(host).call("status")
    assert status["pid"] == os.getpid() and status["ops_rejected"] == {}


def test_replayed_and_forged_requests_are_refused_and_counted(new_host: Callable[..., ExtensionHost]) -> None:
    host = this_host(new_host)
    key = (host.directory / "ops.key").read_bytes()
    frame = Sealer(key, first_seq=time.time_ns()).seal("op", {"op": "restart", "args": {"name": "x"}})
    raw_request(host, frame)  # the first time it is a valid request (for an unknown extension)
    raw_request(host, frame)  # the same bytes again: a replay
    raw_request(host, b"\x00" * 40)  # garbage
    raw_request(host, Sealer(b"wrong key" * 4, first_seq=time.time_ns()).seal("op", {"op": "status", "args": {}}))
    rejected = OpsClient(host).call("status")["ops_rejected"]
    assert rejected == {"replay": 1, "bad_mac": 2}


def test_garbage_below_the_frame_level_is_counted_and_the_host_keeps_serving(
        new_host: Callable[..., ExtensionHost]) -> None:
    host = this_host(new_host)
    # raw bytes on the unix socket: not even a ZMTP greeting (counted from the socket's monitor)
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(host.directory / "ops"))
    raw.sendall(b"GET / HTTP/1.0\r\n\r\n" * 8)
    raw.settimeout(3)
    try:
        while raw.recv(4096):  # the host drops the connection after the broken greeting
            pass
    except OSError:
        pass
    raw.close()
    # a request of two frames: answered once (REP lockstep), counted once, nothing raised in the host
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(f"ipc://{host.directory}/ops")
        sock.send_multipart([b"a" * 40, b"b" * 40])
        assert sock.poll(3000)
        sock.recv()
    finally:
        sock.close()
    deadline = time.monotonic() + 5
    rejected: dict[str, int] = {}
    while time.monotonic() < deadline:
        rejected = OpsClient(host).call("status")["ops_rejected"]
        if rejected.get("unauthenticated"):
            break
        time.sleep(0.05)
    assert rejected == {"unauthenticated": 1, "multipart": 1}
