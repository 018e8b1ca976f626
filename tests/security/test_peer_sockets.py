"""Nobody but the extension the host started can connect to its sockets (attacked from another process).

Before: a process of the same user could connect a REP socket to an
extension's events endpoint, receive every other event in clear text, and make
that extension's handlers time out; one signed frame with a huge sequence
number made every later frame of the real extension a "replay". Now the host's
ZAP handler admits only the launched process tree (``host.exthost.peers``, by
the kernel's peer credentials), and only one process per socket: strangers
and a second peer inside the extension's own tree are refused at the handshake
and counted, and the real extension is not disturbed. Its own reconnect after
libzmq cut a connection (a frame over the size limit) is still let in.

The key-holding intruder (:data:`INTRUDER`) has the launch's real secret: it
signs a host call and every events reply it can with ``seq = 2**63 - 1``, the
largest sequence number, after which the host would drop every frame of the
real extension as a replay.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

from conftest import MakeExt, tool_call

from host import Deadlines, ExtensionHost, HostConfig, Limits
from host.exthost.extension import RunningExtension

COUNTER = """
from ext_sdk import Extension
ext = Extension("victim", permissions=["conversation"])
@ext.on("tool_call")
def seen(event, ctx):
    ctx.set_state("n", ctx.get_state("n", 0) + 1)
"""

# The attacker: three kinds of stranger on the victim's sockets, each listening for events for a while.
ATTACKER = textwrap.dedent("""
    import sys, zmq
    events, calls = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    socks = []
    plain = ctx.socket(zmq.REP); plain.connect(events); socks.append(plain)  # no CURVE at all
    server_key, _ = zmq.curve_keypair()
    pub, sec = zmq.curve_keypair()
    forged = ctx.socket(zmq.REP)  # another security mechanism (CURVE) altogether
    forged.curve_serverkey, forged.curve_publickey, forged.curve_secretkey = server_key, pub, sec
    forged.connect(events); socks.append(forged)
    caller = ctx.socket(zmq.REQ); caller.connect(calls); socks.append(caller)  # a stranger calling the host
    caller.send(b"garbage")
    import time; time.sleep(0.3)  # let the connections reach the host
    print("ready", flush=True)
    got = 0
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    for _ in range(20):
        got += len(poller.poll(100))
    print(got, flush=True)
    ctx.destroy(0)
""")


def emit_while(host: ExtensionHost, other: subprocess.Popen[str], stream: IO[str] | None, ready: str,
               count: int) -> tuple[str, str]:
    """Once ``other`` says ``ready`` on ``stream``, emit ``count`` gate events (each must succeed); then
    ``other``'s output (stdout, stderr). ``other`` never outlives this."""
    try:
        assert stream is not None and stream.readline().strip() == ready
        for i in range(count):
            out = host.emit("tool_call", tool_call("ls", call_id=f"c{i}"))
            assert out.failures == (), out.failures
        return other.communicate(timeout=30)
    finally:
        other.kill()
        other.wait()


def test_strangers_are_refused_counted_and_harmless(make_ext: MakeExt, new_host: Callable[..., ExtensionHost],
                                                    tmp_path: Path) -> None:
    host = new_host()
    ext = host.load(make_ext("victim", COUNTER, ["tool_call"]))
    assert ext.channel is not None
    endpoints = ext.channel.endpoints
    script = tmp_path / "attacker.py"
    script.write_text(ATTACKER)
    attacker = subprocess.Popen([sys.executable, str(script), endpoints.events, endpoints.calls],
                                stdout=subprocess.PIPE, text=True)
    # events keep flowing to the real extension while the strangers listen
    received, _ = emit_while(host, attacker, attacker.stdout, "ready", 30)
    assert received.strip() == "0", "a stranger received something"
    assert host.state.get("victim", "n") == 30
    ext.supervise()  # drains the calls/control monitors (the supervisor thread does this every tick)
    assert ext.channel.frame_errors["unauthenticated"] >= 3, dict(ext.channel.frame_errors)
    assert ext.info()["frame_errors"]["unauthenticated"] >= 3


#: ``intruder.py EVENTS CALLS KEY_HEX SECONDS``: a REQ on the host's calls socket sends one correctly signed
#: ``call`` with the largest sequence number; a REP on the events socket answers every request it gets the
#: same way. Prints ``intruder ready`` once connected (as far as it can tell), then what it got.
INTRUDER = textwrap.dedent("""
    import hashlib, hmac, sys, time
    import msgpack, zmq
    events, calls, key, seconds = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), float(sys.argv[4])
    TOP = 2**63 - 1

    def sealed(body):
        packed = msgpack.packb(body)
        return hmac.new(key, packed, hashlib.sha256).digest() + packed

    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP); rep.linger = 0; rep.connect(events)
    req = ctx.socket(zmq.REQ); req.linger = 0; req.connect(calls)
    req.send(sealed({"k": "call", "seq": TOP, "id": 1, "method": "get_state", "args": {"key": "n"}}))
    time.sleep(0.3)
    print("intruder ready", file=sys.stderr, flush=True)
    received = answered = 0
    poller = zmq.Poller()
    poller.register(rep, zmq.POLLIN)
    poller.register(req, zmq.POLLIN)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for sock, _ in poller.poll(int(left * 1000) + 1):
            frame = sock.recv()
            if sock is rep:
                received += 1
                request = msgpack.unpackb(frame[32:])
                rep.send(sealed({"k": "reply", "seq": TOP, "id": request.get("id", 0), "results": [{"ok": True}]}))
            else:
                answered += 1
    print(f"intruder done: received {received} answered {answered}", file=sys.stderr, flush=True)
    ctx.destroy(0)
""")

#: The victim of the key-holding intruder: counts every tool_call in its state (a host call per event); on
#: ``spawn KEY`` it starts the intruder as its own child (its [access] grants ``processes``).
SPAWNER = """
import os, subprocess, sys
from ext_sdk import Extension
ext = Extension("victim", permissions=["conversation"])
children = []
@ext.on("tool_call")
def seen(event, ctx):
    command = event["parsed_args"]["command"]
    if command.startswith("spawn "):
        children.append(subprocess.Popen([sys.executable, "intruder.py", os.environ["KITHOST_EVENTS"],
                                          os.environ["KITHOST_CALLS"], command.split()[1], "3"]))
    ctx.set_state("n", ctx.get_state("n", 0) + 1)
"""


def _secret(ext: RunningExtension) -> bytes:
    """The launch's real HMAC key, as the host holds it (what an intruder that stole it would have)."""
    current = ext._current()  # the test plays an attacker that has the key
    assert current is not None
    return current.launch.secret


def _wait_for_line(ext: RunningExtension, pattern: str, timeout_s: float = 15.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, ext.log.tail(200))
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in the extension's log:\n{ext.log.tail(40)}")


def _assert_unharmed(host: ExtensionHost, ext: RunningExtension, emitted: int) -> None:
    """The real extension answered every event, and every host call of it was answered (its count)."""
    assert host.state.get("victim", "n") == emitted
    assert ext.channel is not None
    assert ext.channel.frame_errors["replay"] == 0, dict(ext.channel.frame_errors)
    assert ext.stats.failures == {}, ext.stats.failures


def test_a_stranger_with_the_key_and_the_largest_seq_is_refused(make_ext: MakeExt,
                                                                new_host: Callable[..., ExtensionHost],
                                                                tmp_path: Path) -> None:
    host = new_host()
    ext = host.load(make_ext("victim", COUNTER, ["tool_call"]))
    assert ext.channel is not None
    assert host.emit("tool_call", tool_call("ls", call_id="before")).failures == ()
    script = tmp_path / "intruder.py"
    script.write_text(INTRUDER)
    endpoints = ext.channel.endpoints
    stranger = subprocess.Popen([sys.executable, str(script), endpoints.events, endpoints.calls,
                                 _secret(ext).hex(), "2"], stderr=subprocess.PIPE, text=True)
    _, report = emit_while(host, stranger, stranger.stderr, "intruder ready", 20)
    assert "intruder done: received 0 answered 0" in report, report
    _assert_unharmed(host, ext, 21)
    ext.supervise()
    assert ext.channel.frame_errors["unauthenticated"] >= 2, dict(ext.channel.frame_errors)


def test_a_second_peer_in_the_extensions_own_tree_is_refused_and_counted(make_ext: MakeExt,
                                                                         new_host: Callable[..., ExtensionHost]
                                                                         ) -> None:
    path = make_ext("victim", SPAWNER, ["tool_call"], files={"intruder.py": INTRUDER})
    with (path / "extension.toml").open("a") as fh:
        fh.write("[access]\nprocesses = true\n")
    host = new_host()
    ext = host.load(path)
    assert ext.channel is not None and ext.grant.access.processes
    assert host.emit("tool_call", tool_call("ls", call_id="before")).failures == ()
    # the child of the extension connects a second socket to its events and calls endpoints, with the key
    assert host.emit("tool_call", tool_call(f"spawn {_secret(ext).hex()}", call_id="spawn")).failures == ()
    _wait_for_line(ext, r"intruder ready")
    for i in range(20):  # events keep flowing to the first peer, its host calls keep being answered
        out = host.emit("tool_call", tool_call("ls", call_id=f"c{i}"))
        assert out.failures == (), out.failures
    report = _wait_for_line(ext, r"intruder done: received (\d+) answered (\d+)")
    assert report.groups() == ("0", "0"), report.group(0)
    _assert_unharmed(host, ext, 22)
    ext.supervise()
    assert ext.channel.frame_errors["unauthenticated"] >= 2, dict(ext.channel.frame_errors)


#: A raw-protocol extension whose connections get cut by the host's libzmq (frames over the limit), and which
#: must be let back in: one peer per socket still admits the extension's own reconnect once the socket's
#: monitor reported the cut. Event 1: a host call over the limit, then (resent until answered, bounded) a
#: ``set_state`` on the new calls connection. Event 2: an oversized reply after the deadline (the host is idle
#: when its events connection is cut). Then plain replies.
RECONNECTOR = textwrap.dedent("""
    import os, sys, time
    import zmq
    from ext_sdk.wire import ENV_CALLS, ENV_EVENTS, ENV_SECRET_FILE, Opener, Sealer
    secret = open(os.environ[ENV_SECRET_FILE], "rb").read()
    ctx = zmq.Context()
    events = ctx.socket(zmq.REP); events.connect(os.environ[ENV_EVENTS])
    calls = ctx.socket(zmq.REQ); calls.setsockopt(zmq.REQ_RELAXED, 1); calls.setsockopt(zmq.REQ_CORRELATE, 1)
    calls.connect(os.environ[ENV_CALLS])
    calls_out, events_out = Sealer(secret), Sealer(secret)
    answers = Opener(secret, frozenset({"welcome", "reject", "answer"}))
    calls.send(calls_out.seal("hello", {
        "versions": [1], "name": "victim", "version": "0.1.0", "sdk": "raw/test",
        "subscriptions": [{"event": "tool_call", "priority": 10, "policy": "open", "deadline_ms": 1000}],
        "tools": [], "commands": [], "permissions": ["conversation"]}))
    if answers.open(calls.recv())["k"] != "welcome":
        sys.exit(4)
    requests = Opener(secret, frozenset({"event", "batch", "invoke"}))

    def ok(msg):
        events.send(events_out.seal("reply", {"id": msg["id"], "results": [{"ok": True, "result": None}]}))

    msg = requests.open(events.recv())
    calls.send(calls_out.seal("call", {"id": 1, "event_id": msg["id"], "method": "print",
                                       "args": {"text": "x" * 200_000, "level": "plain"}}))
    end = time.monotonic() + 0.8
    while time.monotonic() < end:
        calls.send(calls_out.seal("call", {"id": 2, "event_id": msg["id"], "method": "set_state",
                                           "args": {"key": "after_cut", "value": "answered"}}))
        if calls.poll(150):
            print("call answered:", answers.open(calls.recv())["ok"], file=sys.stderr, flush=True)
            break
    ok(msg)
    msg = requests.open(events.recv())
    time.sleep(1.3)
    events.send(events_out.seal("reply", {"id": msg["id"], "results": [{"ok": False, "error": "x" * 300_000}]}))
    print("late reply sent", file=sys.stderr, flush=True)
    while True:
        ok(requests.open(events.recv()))
""")


def test_the_extensions_own_reconnect_is_admitted_once_the_cut_is_reported(make_ext: MakeExt,
                                                                           new_host: Callable[..., ExtensionHost]
                                                                           ) -> None:
    path = make_ext("victim", "", ["tool_call"], runtime="command", command=[sys.executable, "reconnector.py"],
                    files={"reconnector.py": RECONNECTOR})
    host = new_host(HostConfig(limits=replace(Limits(), max_frame=64 * 1024),
                               deadlines=replace(Deadlines(), shutdown_ms=400)))
    ext = host.load(path)
    assert ext.channel is not None
    # 1: its calls connection is cut; the call it sends again on the new one is answered
    assert host.emit("tool_call", tool_call("ls", call_id="cut-calls")).failures == ()
    assert host.state.get("victim", "after_cut") == "answered", ext.log.tail(20)
    # 2: it answers too late and too big; its events connection is cut while the host is idle
    assert [f.kind for f in host.emit("tool_call", tool_call("ls", call_id="late")).failures] == ["timeout"]
    _wait_for_line(ext, r"late reply sent")
    time.sleep(0.3)  # the host's libzmq cuts the connection; the extension is reconnecting
    # 3: the next events are delivered on its new connection
    for i in range(3):
        assert host.emit("tool_call", tool_call("ls", call_id=f"c{i}")).failures == (), ext.log.tail(20)
    ext.supervise()
    assert ext.channel.frame_errors["dropped"] >= 1, dict(ext.channel.frame_errors)
    assert ext.channel.frame_errors["unauthenticated"] == 0, dict(ext.channel.frame_errors)
