"""Deadlines, failure policy and budgets: a slow handler never holds the event past its deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from conftest import MakeExt, tool_call

from host import Deadlines, ExtensionHost, HostConfig

SLOW = """
import time
from ext_sdk import Block, Extension
ext = Extension("{name}", permissions=["conversation"])
@ext.on("tool_call", deadline_ms={deadline}, policy="{policy}")
def gate(event, ctx):
    if event.tool_call_id.startswith("slow"):
        time.sleep({sleep})
    return Block("answer to " + event.tool_call_id)
"""


def test_timeout_applies_closed_policy_and_next_reply_is_its_own(make_ext: MakeExt,
                                                                 new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("slowpoke", SLOW.format(name="slowpoke", deadline=150, policy="closed", sleep=0.6),
                   ["tool_call"])
    host = new_host()
    host.load(ext)
    start = time.monotonic()
    out = host.emit("tool_call", tool_call("ls", call_id="slow-1"))
    waited = time.monotonic() - start
    assert 0.14 < waited < 0.6  # returned at the deadline, not when the handler finished
    assert out.stop is not None and out.stop.failed and out.stop.by == "slowpoke"
    assert "slowpoke" in out.reason and "timeout" in out.reason
    assert out.failures[0].kind == "timeout" and out.failures[0].policy == "closed"
    # The next event is answered with its own reply (the stale one is dropped), once the handler is free.
    out = host.emit("tool_call", tool_call("ls", call_id="fast-2"))
    if out.failures:  # still sleeping: a second timeout, never the stale answer
        assert out.failures[0].kind == "timeout"
        time.sleep(0.6)
        out = host.emit("tool_call", tool_call("ls", call_id="fast-3"))
    assert out.stop is not None and not out.stop.failed
    assert out.reason.startswith("answer to fast-")
    stats = host.extension("slowpoke").stats
    assert stats.failures["timeout"] >= 1 and stats.fail_closed >= 1


def test_open_policy_skips_the_slow_handler(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("lenient", SLOW.format(name="lenient", deadline=100, policy="open", sleep=0.3), ["tool_call"])
    host = new_host()
    host.load(ext)
    out = host.emit("tool_call", tool_call("ls", call_id="slow-1"))
    assert not out.stopped and out.failures[0].kind == "timeout" and out.failures[0].policy == "open"
    assert host.extension("lenient").stats.fail_open == 1


def test_operator_policy_override_beats_the_handler(make_ext: MakeExt,
                                                    new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("strict", SLOW.format(name="strict", deadline=100, policy="closed", sleep=0.3), ["tool_call"])
    host = new_host(HostConfig(policy={"strict:tool_call": "open"}))
    host.load(ext)
    info = host.extension("strict").info()
    assert info["subscriptions"][0]["policy"] == "open"
    out = host.emit("tool_call", tool_call("ls", call_id="slow-1"))
    assert not out.stopped and out.failures[0].policy == "open"


def test_event_budget_bounds_many_slow_handlers(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    exts = [make_ext(f"s{i}", SLOW.format(name=f"s{i}", deadline=400, policy="open", sleep=1.0), ["tool_call"])
            for i in range(3)]
    config = HostConfig(deadlines=replace(Deadlines(), event_budget_ms=500))
    host = new_host(config)
    host.load_many(exts)
    start = time.monotonic()
    out = host.emit("tool_call", tool_call("ls", call_id="slow-all"))
    waited = time.monotonic() - start
    assert waited < 0.9  # 3 × 400 ms would be 1.2 s
    kinds = [f.kind for f in out.failures]
    assert kinds[0] == "timeout" and "budget" in kinds[1:] and len(kinds) == 3


def test_deadline_is_clamped_to_operator_bounds(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    ext = make_ext("greedy", SLOW.format(name="greedy", deadline=999_999, policy="open", sleep=0), ["tool_call"])
    host = new_host(HostConfig(deadlines=replace(Deadlines(), max_ms=2000)))
    host.load(ext)
    assert host.extension("greedy").info()["subscriptions"][0]["deadline_ms"] == 2000


def test_stale_reply_then_crash_does_not_hang_the_host(make_ext: MakeExt,
                                                        new_host: Callable[..., ExtensionHost]) -> None:
    """Regression: with REQ_CORRELATE, poll() reported the stale reply as readable, recv() dropped it
    and then blocked forever because the extension had crashed meanwhile (found by the demo)."""
    ext = make_ext("flaky", """
import os, time
from ext_sdk import Extension
ext = Extension("flaky", permissions=["conversation"])
@ext.on("tool_call", deadline_ms=100, policy="open")
def slow(event, ctx):
    time.sleep(0.4)
@ext.on("tool_result", deadline_ms=3000)
def crash(event, ctx):
    os._exit(1)
""", ["tool_call", "tool_result"])
    host = new_host()
    host.load(ext)
    assert host.emit("tool_call", tool_call("ls")).failures[0].kind == "timeout"
    payload = {"tool_call_id": "c1", "tool_name": "bash", "tool_kind": "execute", "input": "{}",
               "content": "x", "is_error": False, "metadata": "{}"}
    start = time.monotonic()
    out = host.emit("tool_result", payload)
    assert time.monotonic() - start < 2.5
    assert [f.kind for f in out.failures] == ["disconnected"]
    flaky = host.extension("flaky")
    assert "exited with status 1" in flaky.last_exit
    assert flaky.transitions[-1].new in ("restarting", "starting", "ready")  # supervised: it comes back
