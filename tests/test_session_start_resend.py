"""A replaced process gets ``session_start`` again, first, and only that extension gets it.

An extension that sets itself up on ``session_start`` (kit's idiom) would
otherwise come back from a crash or a reload with nothing set up: here the
gate blocks every tool call until it has seen ``session_start`` in *this*
process, so an event that reached the new process first would be blocked.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from conftest import MakeExt, tool_call, wait_for

from host import ExtensionHost

SETUP = """
from ext_sdk import Extension, Block
ext = Extension("{name}", permissions=["conversation"])
SESSION = None

@ext.on("session_start")
def start(event, ctx):
    global SESSION
    SESSION = event.session_id
    ctx.set_state("starts", (ctx.get_state("starts") or 0) + 1)

@ext.on("tool_call")
def gate(event, ctx):
    if SESSION is None:
        return Block(reason="not set up")
    return Block(reason="session " + SESSION)
"""




def test_session_start_is_sent_again_after_kill_9_and_after_reload(make_ext: MakeExt,
                                                                  new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    setup = host.load(make_ext("setup", SETUP.format(name="setup"), ["session_start", "tool_call"]))
    other = host.load(make_ext("other", SETUP.format(name="other"), ["session_start", "tool_call"]))
    host.emit("session_start", {"session_id": "s1"})
    assert host.flush(5)
    assert host.state.get("setup", "starts") == 1 and host.state.get("other", "starts") == 1

    # kill -9: the restarted process is set up before the next event reaches it
    assert setup.process is not None
    old_pid = setup.process.pid
    os.kill(old_pid, signal.SIGKILL)
    assert wait_for(lambda: setup.restarts == 1 and setup.state.running)
    assert host.emit("tool_call", tool_call("ls")).reason == "session s1"
    assert host.state.get("setup", "starts") == 2 and setup.process is not None and setup.process.pid != old_pid

    # reload: the same, and the new process has it before it serves
    result = host.reload("setup")
    assert result.ok, result.reason
    assert host.state.get("setup", "starts") == 3 and setup.process is not None and setup.process.pid == result.pid
    assert host.emit("tool_call", tool_call("ls")).reason == "session s1"

    # a later session is the one sent; the other extension got each session_start once
    host.emit("session_start", {"session_id": "s2"})
    assert host.flush(5)
    assert host.reload("setup").ok
    assert host.emit("tool_call", tool_call("ls")).reason == "session s2"
    assert host.state.get("setup", "starts") == 5 and host.state.get("other", "starts") == 2
    assert other.restarts == 0 and other.reloads == 0

    # after session_shutdown there is no session to set up again
    host.emit("session_shutdown", {"reason": "close"})
    assert host.reload("setup").ok
    assert host.emit("tool_call", tool_call("ls")).reason == "not set up"
    assert host.state.get("setup", "starts") == 5


def test_an_extension_without_a_session_start_handler_gets_nothing(make_ext: MakeExt,
                                                                   new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    source = SETUP.format(name="plain").replace('@ext.on("session_start")\n', "")
    ext = host.load(make_ext("plain", source, ["tool_call"]))
    host.emit("session_start", {"session_id": "s1"})
    assert host.reload("plain").ok
    assert host.emit("tool_call", tool_call("ls")).reason == "not set up"
    assert ext.stats.notified == 0
