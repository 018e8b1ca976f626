"""Nobody but the extension the host started can connect to its sockets (attacked from another process).

Before: a process of the same user could connect a REP socket to an
extension's events endpoint, receive every other event in clear text, and make
that extension's handlers time out. Now the host's ZAP handler admits only the
launched process tree (``host.exthost.peers``, by the kernel's peer
credentials): strangers are refused at the handshake and counted, and the real
extension is not disturbed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from conftest import MakeExt, tool_call

from host import ExtensionHost

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
    try:
        assert attacker.stdout is not None and attacker.stdout.readline().strip() == "ready"
        for i in range(30):  # events keep flowing to the real extension while the strangers listen
            out = host.emit("tool_call", tool_call("ls", call_id=f"c{i}"))
            assert out.failures == (), out.failures
        received, _ = attacker.communicate(timeout=30)
    finally:
        attacker.kill()
        attacker.wait()
    assert received.strip() == "0", "a stranger received something"
    assert host.state.get("victim", "n") == 30
    ext.supervise()  # drains the calls/control monitors (the supervisor thread does this every tick)
    assert ext.channel.frame_errors["unauthenticated"] >= 3, dict(ext.channel.frame_errors)
    assert ext.info()["frame_errors"]["unauthenticated"] >= 3
