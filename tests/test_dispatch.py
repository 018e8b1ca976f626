"""Dispatch through real extension processes: order, gate, chain, notify FIFO, custom events, hooks."""

from __future__ import annotations

from collections.abc import Callable

from conftest import MakeExt, extension_pids, tool_call, tool_result

from ext_sdk import Block, PatchResult
from host import HIGH, LOW, ExtensionHost

TAGGER = """
from ext_sdk import Extension, PatchResult
ext = Extension("{name}", permissions=["conversation"])
for prio in {prios}:
    def tag(event, ctx, prio=prio):
        return PatchResult(content=event.content + " {name}" + str(prio))
    ext.on("tool_result", tag, priority=prio)
"""


def test_chain_order_is_priority_then_load_then_registration(make_ext: MakeExt,
                                                             new_host: Callable[..., ExtensionHost]) -> None:
    a = make_ext("a", TAGGER.format(name="a", prios=[30, 10, 50]), ["tool_result"])
    b = make_ext("b", TAGGER.format(name="b", prios=[20, 30]), ["tool_result"])
    host = new_host()
    host.load_many([a, b])
    host.on("tool_result", lambda ev: PatchResult(content=ev.content + " host0"), priority=HIGH)
    host.on("tool_result", lambda ev: PatchResult(content=ev.content + " host100"), priority=LOW)
    out = host.emit("tool_result", tool_result("out:"))
    assert out.payload["content"] == "out: host0 a10 b20 a30 b30 a50 host100"
    assert out.failures == () and not out.stopped and out.handlers == 7


GATE = """
from ext_sdk import Block, Extension
ext = Extension("{name}", permissions=["conversation"])
@ext.on("tool_call", priority={prio})
def gate(event, ctx):
    ctx.set_state("seen", ctx.get_state("seen", 0) + 1)
    if "{word}" in event.input:
        return Block("{name} says no")
"""


def test_gate_first_block_wins_and_stops_the_chain(make_ext: MakeExt,
                                                   new_host: Callable[..., ExtensionHost]) -> None:
    first = make_ext("first", GATE.format(name="first", prio=10, word="rm"), ["tool_call"])
    second = make_ext("second", GATE.format(name="second", prio=20, word="ls"), ["tool_call"])
    host = new_host()
    host.load_many([second, first])  # load order must not beat priority
    out = host.emit("tool_call", tool_call("rm -rf x; ls"))
    assert out.stopped and out.stop is not None
    assert out.stop.by == "first" and out.reason == "first says no" and not out.stop.failed
    assert host.state.get("second", "seen") is None  # never asked
    out = host.emit("tool_call", tool_call("ls"))
    assert out.stop is not None and out.stop.by == "second"
    assert host.state.get("first", "seen") == 2 and host.state.get("second", "seen") == 1
    assert host.extension("first").stats.stopped == 1


def test_in_process_hooks_gate_in_the_same_loop(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("first", GATE.format(name="first", prio=50, word="rm"), ["tool_call"])
    host = new_host()
    host.load(ext)
    unregister = host.on("tool_call", lambda ev: Block("host policy") if "sudo" in ev.input else None,
                         priority=HIGH)
    out = host.emit("tool_call", tool_call("sudo rm x"))
    assert out.stop is not None and out.stop.by.startswith("host:") and out.reason == "host policy"
    assert host.state.get("first", "seen") is None
    unregister()
    out = host.emit("tool_call", tool_call("sudo rm x"))
    assert out.stop is not None and out.stop.by == "first"


RECORDER = """
from ext_sdk import Extension
ext = Extension("{name}", permissions=["conversation"])
seen = []
@ext.on("message_update")
def update(event, ctx):
    seen.append(event.chunk)
@ext.on("tool_call")
def gate(event, ctx):
    seen.append("GATE:" + event.tool_call_id)
@ext.on("agent_end")
def end(event, ctx):
    ctx.set_state("seen", seen)
"""

AGENT_END = {"response": "", "stop_reason": "completed", "tool_call_count": 0, "tool_names": [],
             "llm_call_count": 0, "input_tokens_delta": 0, "output_tokens_delta": 0, "cache_read_tokens_delta": 0,
             "cache_write_tokens_delta": 0, "cost_delta": None, "duration_ms": 0}


def test_notify_events_keep_fifo_order_per_extension_across_modes(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    exts = [make_ext(n, RECORDER.format(name=n), ["message_update", "tool_call", "agent_end"]) for n in ("r1", "r2")]
    host = new_host()
    host.load_many(exts)
    expected = []
    for i in range(300):
        out = host.emit("message_update", {"chunk": str(i)})
        assert out.handlers == 2 and not out.stopped
        expected.append(str(i))
        if i % 100 == 50:  # a gate event in the middle must come after the queued notifies
            host.emit("tool_call", tool_call("ls", call_id=f"g{i}"))
            expected.append(f"GATE:g{i}")
    host.emit("agent_end", AGENT_END)
    assert host.flush(20)
    for name in ("r1", "r2"):
        assert host.state.get(name, "seen") == expected
        stats = host.extension(name).stats
        assert stats.failures == {} and stats.notified >= 301


def test_custom_events_between_extensions(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    sender = make_ext("sender", """
from ext_sdk import Extension
ext = Extension("sender", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    ctx.set_state("queued_for", ctx.emit("audit.tool", {"tool": event.tool_name, "id": event.tool_call_id}))
@ext.on_custom("audit.tool")
def own(event, ctx):
    ctx.set_state("echo", True)  # must not happen: an extension does not receive its own emit
""", ["tool_call", "custom:audit.tool"])
    receiver = make_ext("receiver", """
from ext_sdk import Extension
ext = Extension("receiver")
@ext.on_custom("audit.tool")
def got(event, ctx):
    ctx.set_state("got", [event.name, event.source, event.data])
""", ["custom:audit.tool"])
    host = new_host()
    host.load_many([sender, receiver])
    host.emit("tool_call", tool_call("ls", call_id="x9"))
    assert host.flush(10)
    assert host.state.get("sender", "queued_for") == 1
    assert host.state.get("receiver", "got") == ["audit.tool", "sender", {"tool": "bash", "id": "x9"}]
    assert host.state.get("sender", "echo") is None
    host.emit_custom("audit.tool", {"tool": "host"})
    assert host.flush(10)
    assert host.state.get("receiver", "got")[1] == "host"


def test_unsubscribed_events_cost_no_ipc(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("gate", GATE.format(name="gate", prio=10, word="rm"), ["tool_call"])
    host = new_host()
    host.load(ext)
    before = host.extension("gate").channel
    assert before is not None
    sent_before = before.calls_answered
    out = host.emit("step_start", {"step_number": 1})
    assert out.handlers == 0 and out.payload == {"step_number": 1}
    assert not host.subscribed("step_start") and host.subscribed("tool_call")
    assert host.extension("gate").stats.handled == 0 and before.calls_answered == sent_before


def test_extension_tools_and_commands_run_inside_the_extension(make_ext: MakeExt,
                                                               new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("toolbox", """
import os
from ext_sdk import Extension
ext = Extension("toolbox")
@ext.tool("shout", "Upper-case a text.", {"type": "object", "properties": {"text": {"type": "string"}}})
def shout(args, ctx):
    ctx.set_state("pid", os.getpid())
    return args["text"].upper()
@ext.tool("fail", "Always fails.")
def fail(args, ctx):
    raise ValueError("nope")
@ext.command("hello", "Say hello.")
def hello(args, ctx):
    return "hello " + args
""", ["agent_start"])
    host = new_host()
    host.load(ext)
    assert [(t.name, t.extension) for t in host.tools()] == [("shout", "toolbox"), ("fail", "toolbox")]
    assert host.invoke_tool("toolbox", "shout", {"text": "hi"}) == ("HI", False)
    proc = host.extension("toolbox").process
    # ran in the extension's process (whose own pid may be a pid namespace's number)
    assert proc is not None and host.state.get("toolbox", "pid") in extension_pids(host.extension("toolbox"))
    content, is_error = host.invoke_tool("toolbox", "fail", {})
    assert is_error and "ValueError: nope" in content
    assert host.run_command("toolbox", "hello", "world") == ("hello world", False)
    content, is_error = host.invoke_tool("toolbox", "missing", {})
    assert is_error and "no tool 'missing'" in content


def test_a_slow_extension_tool_can_be_cancelled(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    import threading
    import time

    ext = make_ext("sleeper", """
import time
from ext_sdk import Extension
ext = Extension("sleeper")
@ext.tool("nap", "Sleeps.")
def nap(args, ctx):
    time.sleep(float(args.get("s", 0)))
    return "woke"
""", ["agent_start"])
    host = new_host()
    host.load(ext)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    content, is_error = host.invoke_tool("sleeper", "nap", {"s": 1.0}, cancel=cancel)
    assert is_error and "cancelled" in content and time.monotonic() - start < 0.8
    # The stale result of the cancelled call is dropped; the next call gets its own answer.
    assert host.invoke_tool("sleeper", "nap", {"s": 0}) == ("woke", False)


def test_failing_notify_handlers_are_counted_and_named_in_a_warning(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    import logging

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    ext = make_ext("grumpy", """
from ext_sdk import Extension
ext = Extension("grumpy", permissions=["conversation"])
@ext.on("message_update")
def update(event, ctx):
    raise ValueError("chunk " + event.chunk + " is not to my taste")
""", ["message_update"])
    host = new_host()
    host.load(ext)
    collect = Collect()
    logging.getLogger("kithost").addHandler(collect)
    try:
        for i in range(5):
            host.emit("message_update", {"chunk": str(i)})
        assert host.flush(10)
    finally:
        logging.getLogger("kithost").removeHandler(collect)
    assert host.extension("grumpy").stats.failures["error"] == 5
    warnings = [m for m in collect.messages if "notify handler error" in m]
    assert len(warnings) == 1 and "grumpy" in warnings[0] and "is not to my taste" in warnings[0]
