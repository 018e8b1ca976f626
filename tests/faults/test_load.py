"""Load with injected kills and hangs: every event gets exactly one outcome, memory stays flat,
nothing is left running. Prints the counts."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import replace

import psutil
import pytest
from conftest import MakeExt, tool_call, tool_result

from host import ExtensionHost, HostConfig
from host.config import Supervision

pytestmark = pytest.mark.slow

GATE = """
import time
from ext_sdk import Extension
ext = Extension("{name}", permissions=["conversation"])
@ext.on("tool_call", deadline_ms=150, policy="open")
def gate(event, ctx):
    if event.tool_call_id == "hang":
        time.sleep(0.4)
"""
CHAIN = """
from ext_sdk import Extension, PatchResult
ext = Extension("chain", permissions=["conversation"])
@ext.on("tool_result", deadline_ms=150)
def patch(event, ctx):
    return PatchResult(content=event.content + "!")
"""
OBSERVER = """
from ext_sdk import Extension
ext = Extension("observer", permissions=["conversation"])
seen = 0
@ext.on("message_update")
def update(event, ctx):
    global seen
    seen += 1
@ext.on("llm_usage")
def usage(event, ctx):
    pass
"""
USAGE = {"input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost": None,
         "model": "m", "provider": "p", "request_id": "", "step_number": 1, "finish_reason": "stop"}


def test_load_with_random_kills_and_hangs(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    total_events = int(os.environ.get("KITHOST_LOAD_EVENTS", "20000"))
    rng = random.Random(7)
    exts = [make_ext("gate-a", GATE.format(name="gate-a"), ["tool_call"]),
            make_ext("gate-b", GATE.format(name="gate-b"), ["tool_call"]),
            make_ext("chain", CHAIN, ["tool_result"]),
            make_ext("observer", OBSERVER, ["message_update", "llm_usage"])]
    supervision = replace(Supervision(), backoff_initial_ms=20, backoff_max_ms=200, crash_limit=1000)
    host = new_host(HostConfig(supervision=supervision))
    assert not host.load_many(exts).failed
    me = psutil.Process()
    expected = kills = hangs = 0
    rss_warm = 0
    start = time.monotonic()
    for i in range(total_events):
        if i == total_events // 10:
            host.flush(30)
            rss_warm = me.memory_info().rss
        if i and i % 2500 == 0:
            victim = rng.choice(host.extensions())
            if victim.process is not None and victim.alive():
                os.kill(victim.process.pid, signal.SIGKILL)
                kills += 1
        roll = rng.random()
        if roll < 0.4:
            out = host.emit("message_update", {"chunk": str(i)})
        elif roll < 0.7:
            hang = i % 3000 == 1
            hangs += hang
            out = host.emit("tool_call", tool_call("ls", call_id="hang" if hang else f"c{i}"))
        elif roll < 0.9:
            out = host.emit("tool_result", tool_result("x"))
        else:
            out = host.emit("llm_usage", USAGE)
        expected += out.handlers
        assert not out.stopped
    assert host.flush(60)
    elapsed = time.monotonic() - start
    accounted = 0
    for ext in host.extensions():
        s = ext.stats
        accounted += s.handled + s.notified + sum(s.failures.values()) + s.notify_dropped
    rss_end = me.memory_info().rss
    restarts = sum(e.restarts for e in host.extensions())
    failures: dict[str, int] = {}
    for ext in host.extensions():
        for kind, n in ext.stats.failures.items():
            failures[kind] = failures.get(kind, 0) + n
    print(f"\nload: {total_events} events in {elapsed:.1f} s, {expected} handler outcomes expected, "
          f"{accounted} accounted; kills {kills}, hangs {hangs}, restarts {restarts}; failures {failures}; "
          f"host rss {rss_warm / 2**20:.0f} → {rss_end / 2**20:.0f} MiB")
    assert accounted == expected  # exactly one outcome per handler per event
    assert kills >= 5 and restarts >= 3 and failures.get("timeout", 0) >= 1
    assert rss_end - rss_warm < 40 * 2**20  # flat: bounded queues, rings and logs
    assert {e.state.value for e in host.extensions()} <= {"ready", "degraded", "restarting", "starting"}
