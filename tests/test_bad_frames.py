"""A misbehaving extension (raw protocol) can fail only its own handlers — every bad frame is counted."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from conftest import EXTENSIONS, FIXTURES, MakeExt, tool_call

from host import Deadlines, ExtensionHost, HostConfig, Limits

#: The raw-protocol rogue, copied into each rogue extension's own directory (the sandbox shows it nothing else).
ROGUE = {"rogue_ext.py": (FIXTURES / "rogue_ext.py").read_text()}


@pytest.mark.parametrize(
    ("script", "failure", "counter"),
    [
        ("garbage", "bad_frame", "bad_mac"),
        ("bad_mac", "bad_frame", "bad_mac"),
        ("ok,replay", "bad_frame", "replay"),
        ("oversized", "disconnected", "dropped"),
        ("deep", "bad_frame", "too_deep"),
        ("deep_stack", "bad_frame", "too_deep"),
        ("wrong_shape", "bad_result", None),
        ("wrong_id", "bad_frame", "wrong_id"),
    ],
)
def test_bad_reply_is_rejected_counted_and_contained(script: str, failure: str, counter: str | None,
                                                     make_ext: MakeExt,
                                                     new_host: Callable[..., ExtensionHost]) -> None:
    rogue = make_ext("rogue", "", ["tool_call"], runtime="command",
                     command=[sys.executable, "rogue_ext.py", "--script", script + ",ok"], files=ROGUE)
    # The raw rogue does not serve the control channel: keep its shutdown ladder short.
    host = new_host(HostConfig(limits=replace(Limits(), max_frame=64 * 1024),
                               deadlines=replace(Deadlines(), shutdown_ms=400)))
    report = host.load_many([rogue, EXTENSIONS / "permission_gate"])
    assert not report.failed, report.failed
    if script.startswith("ok,"):
        assert host.emit("tool_call", tool_call("ls", call_id="warmup")).failures == ()
    # The rogue runs first (priority 10, policy open); the gate after it still decides.
    out = host.emit("tool_call", tool_call("rm -rf /"))
    assert [f.kind for f in out.failures] == [failure]
    assert out.failures[0].handler == "rogue" and out.failures[0].policy == "open"
    assert out.stop is not None and out.stop.by == "permission-gate" and not out.stop.failed
    rogue_ext = host.extension("rogue")
    assert rogue_ext.stats.failures[failure] == 1
    if counter is not None:
        assert rogue_ext.channel is not None and rogue_ext.channel.frame_errors[counter] >= 1
    # The host keeps serving everyone, including the rogue once it behaves again: the next
    # reply is read as the answer to the next request, never confused with the bad one.
    out = host.emit("tool_call", tool_call("ls", call_id="after"))
    assert out.failures == () and out.stop is None
    assert rogue_ext.stats.handled >= 1
    assert host.extension("permission-gate").stats.failures == {}


def test_garbage_host_call_gets_an_error_answer_and_is_counted(make_ext: MakeExt,
                                                               new_host: Callable[..., ExtensionHost]) -> None:
    rogue = make_ext("rogue", "", ["tool_call"], runtime="command",
                     command=[sys.executable, "rogue_ext.py", "--script", "call_garbage,ok"], files=ROGUE)
    host = new_host()
    host.load(rogue)
    out = host.emit("tool_call", tool_call("ls"))
    assert out.failures == ()
    channel = host.extension("rogue").channel
    assert channel is not None and channel.call_errors == 1 and channel.frame_errors["short"] == 1


def test_host_call_over_the_frame_limit_is_counted_as_dropped(make_ext: MakeExt,
                                                              new_host: Callable[..., ExtensionHost]) -> None:
    # Before: libzmq cut the connection and nothing counted it (the call just never got an answer).
    rogue = make_ext("rogue", "", ["tool_call"], runtime="command",
                     command=[sys.executable, "rogue_ext.py", "--script", "call_huge,ok"], files=ROGUE)
    host = new_host(HostConfig(limits=replace(Limits(), max_frame=64 * 1024),
                               deadlines=replace(Deadlines(), shutdown_ms=400)))
    ext = host.load(rogue)
    assert host.emit("tool_call", tool_call("ls")).failures == ()  # the event itself is still answered
    assert ext.channel is not None
    deadline = time.monotonic() + 5
    while ext.channel.frame_errors["dropped"] < 1 and time.monotonic() < deadline:  # the supervisor drains it
        time.sleep(0.05)
    assert ext.channel.frame_errors["dropped"] == 1 and ext.info()["frame_errors"]["dropped"] == 1


def test_the_reconnect_after_a_cut_is_greeted_while_the_host_sends_nothing(make_ext: MakeExt,
                                                                          new_host: Callable[..., ExtensionHost]
                                                                          ) -> None:
    """The host's events socket is its own ZMTP peer, which accepts only when it is serviced: after it cut a
    connection (a reply over the limit), the extension's reconnect is accepted and greeted by the supervisor's
    tick, not left to time out its handshake until the next event."""
    rogue = make_ext("rogue", "", ["tool_call"], runtime="command",
                     command=[sys.executable, "rogue_ext.py", "--script", "oversized,ok"], files=ROGUE)
    host = new_host(HostConfig(limits=replace(Limits(), max_frame=64 * 1024),
                               deadlines=replace(Deadlines(), shutdown_ms=400)))
    ext = host.load(rogue)
    assert [f.kind for f in host.emit("tool_call", tool_call("ls")).failures] == ["disconnected"]
    assert ext.channel is not None and not ext.channel.events.connected
    deadline = time.monotonic() + 5
    while not ext.channel.events.connected and time.monotonic() < deadline:  # no event sent meanwhile
        time.sleep(0.02)
    assert ext.channel.events.connected, "the reconnect was not accepted while the host was idle"
    assert host.emit("tool_call", tool_call("ls", call_id="after")).failures == ()
    assert ext.channel.frame_errors["dropped"] == 1 and ext.channel.frame_errors["unauthenticated"] == 0
