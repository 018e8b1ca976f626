"""Hot reload with real processes: no downtime, exactly once, state kept, failures leave the old one serving.

kit's reload (notes/kit-extension-api.md §6.2) tears every extension down and
loads them again, and a handler for an event type no extension handled at
startup never fires after it. Here a reload replaces one extension's process
between two events while the agent keeps emitting; these tests drive it
through ``ExtensionHost.reload`` (the operator's ``reload`` op and the watcher
call the same method: tests/test_reload_watch.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
from conftest import MakeExt, tool_call, tool_result

from host import ExtensionHost, HostConfig
from host.config import Deadlines, Sandbox, TrustMode
from host.exthost.manifest import load_manifest
from host.exthost.trust import Request

COUNTING = """
from ext_sdk import Extension
VERSION = {version}
ext = Extension("counting", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    key = "t:" + event.tool_call_id
    ctx.set_state(key, (ctx.get_state(key) or 0) + 1)
    ctx.set_state("v:" + event.tool_call_id, VERSION)

@ext.on("step_start")
def seen(event, ctx):
    key = "s:" + str(event.step_number)
    ctx.set_state(key, (ctx.get_state(key) or 0) + 1)
"""


def test_reload_under_load_handles_every_event_exactly_once(make_ext: MakeExt,
                                                           new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("counting", COUNTING.format(version=0), ["tool_call", "step_start"])
    host = new_host()
    ext = host.load(directory)
    host.state.set("counting", "kept", "from before")
    stop = threading.Event()
    sent: list[int] = []
    failures: list[object] = []

    def agent() -> None:  # a gate event and a notify event, back to back, until the reloads are done
        i = 0
        while not stop.is_set():
            out = host.emit("tool_call", tool_call("ls", call_id=str(i)))
            failures.extend(out.failures)
            host.emit("step_start", {"step_number": i})
            sent.append(i)
            i += 1

    thread = threading.Thread(target=agent)
    thread.start()
    pids = {ext.process.pid if ext.process else 0}
    try:
        for n in range(1, 21):
            (directory / "main.py").write_text(COUNTING.format(version=n))
            result = host.reload("counting")
            assert result.ok, result.reason
            assert result.pid is not None
            pids.add(result.pid)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert host.flush(10)
    assert failures == []
    assert ext.restarts == 0 and ext.reloads == 20 and len(pids) == 21
    assert [p for p in pids if psutil.pid_exists(p) and p != (ext.process.pid if ext.process else 0)
            and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
    state = host.state.snapshot()["counting"]
    assert state["kept"] == "from before"
    assert len(sent) > 40  # events really flowed while it reloaded
    assert {k for k, v in state.items() if k.startswith("t:") and v != 1} == set()
    assert {k for k, v in state.items() if k.startswith("s:") and v != 1} == set()
    assert sorted(int(k[2:]) for k in state if k.startswith("t:")) == sent
    assert sorted(int(k[2:]) for k in state if k.startswith("s:")) == sent
    versions = [state[f"v:{i}"] for i in sent]
    assert versions == sorted(versions) and versions[-1] == 20  # each event on one version, in order


GATE = """
from ext_sdk import Extension, Block
ext = Extension("gate", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    return Block(reason="{text}")
"""


def test_a_broken_new_version_keeps_the_old_one_serving_and_a_fixed_one_loads(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("gate", GATE.format(text="v1"), ["tool_call"])
    notices: list[tuple[str, dict[str, object]]] = []
    host = new_host(notice=lambda kind, data: notices.append((kind, data)))
    ext = host.load(directory)
    pid = ext.process.pid if ext.process else None

    (directory / "main.py").write_text("import nowhere_to_be_found\n")  # an import error
    result = host.reload("gate")
    assert not result.ok and "did not start" in result.reason and "exit" in result.reason
    assert "nowhere_to_be_found" in result.log_tail
    assert host.emit("tool_call", tool_call("ls")).reason == "v1"
    assert ext.process is not None and ext.process.pid == pid and ext.state.running

    (directory / "main.py").write_text(GATE.format(text="v2").replace('"tool_call"', '"tool_result"', 1))
    result = host.reload("gate")  # a handshake the host refuses: an event its manifest does not list
    assert not result.ok and "handshake refused" in result.reason and "tool_result" in result.reason
    assert host.emit("tool_call", tool_call("ls")).reason == "v1"

    (directory / "extension.toml").write_text("name = 'gate'\nruntime = 'python'\n")  # no main
    result = host.reload("gate")
    assert not result.ok and "extension.toml" in result.reason
    make_ext("gate", GATE.format(text="v3"), ["tool_call"])  # fixed: manifest and code

    result = host.reload("gate")
    assert result.ok, result.reason
    assert host.emit("tool_call", tool_call("ls")).reason == "v3"
    assert ext.restarts == 0 and ext.reloads == 1 and ext.process is not None and ext.process.pid != pid
    assert [d["ok"] for kind, d in notices if kind == "reload"] == [False, False, False, True]
    assert host.last_reloads["gate"].ok


V1 = """
from ext_sdk import Extension, Block
ext = Extension("grows", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    return Block(reason="v1 blocks")

@ext.command("old", "an old command")
def old(args, ctx):
    return "old"
"""

V2 = """
from ext_sdk import Extension, PatchResult
ext = Extension("grows", permissions=["conversation"])

@ext.on("tool_result")
def tag(event, ctx):
    return PatchResult(content=event.content + " [v2]")

@ext.tool("shout", "Upper-case a text.", {"type": "object", "properties": {"text": {"type": "string"}}})
def shout(args, ctx):
    return args["text"].upper()
"""


def test_new_event_types_and_tools_work_at_once_and_dropped_ones_stop(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("grows", V1, ["tool_call"])
    host = new_host()
    host.load(directory)
    assert not host.subscribed("tool_result") and host.emit("tool_call", tool_call("ls")).stopped
    assert [c.name for c in host.commands()] == ["old"] and host.tools() == []

    make_ext("grows", V2, ["tool_result"])
    result = host.reload("grows")
    assert result.ok, result.reason
    assert "new events: tool_result" in result.changes and "dropped events: tool_call" in result.changes
    assert "new tools: shout" in result.changes and "dropped commands: old" in result.changes
    # kit's bug: an event type nobody handled at startup must fire right after the reload
    assert host.subscribed("tool_result") and not host.subscribed("tool_call")
    assert host.emit("tool_result", tool_result("out")).payload["content"] == "out [v2]"
    assert not host.emit("tool_call", tool_call("ls")).stopped
    assert [t.name for t in host.tools()] == ["shout"] and host.commands() == []
    assert host.invoke_tool("grows", "shout", {"text": "hi"}) == ("HI", False)


ASKING = """
from ext_sdk import Extension, Block
ext = Extension("asking", permissions={permissions})

@ext.on("tool_call")
def gate(event, ctx):
    return Block(reason="{text}")
"""


def test_a_manifest_asking_for_more_is_refused_unless_trusted(make_ext: MakeExt, tmp_path: Path,
                                                              new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("asking", ASKING.format(permissions=["conversation"], text="v1"), ["tool_call"])
    host = new_host(HostConfig(sandbox=replace(Sandbox(), trust=TrustMode.ASK, allow_weak=True,
                                               trust_file=tmp_path / "trust.json")))
    manifest = load_manifest(directory)
    host.trust.record(manifest, Request.of(manifest))  # what `kithost ext trust asking` does
    ext = host.load(directory)
    assert ext.grant.source == "trusted" and "conversation" in ext.granted

    # An edit that asks for nothing new: no new trust step (the content hash changed all the same).
    (directory / "main.py").write_text(ASKING.format(permissions=["conversation"], text="v2"))
    result = host.reload("asking")
    assert result.ok, result.reason
    assert host.emit("tool_call", tool_call("ls")).reason == "v2"

    # Asking for more: refused with what is new and how to grant it; the old version keeps serving.
    make_ext("asking", ASKING.format(permissions=["conversation", "session"], text="v3"), ["tool_call"],
             permissions=["conversation", "session"])
    result = host.reload("asking")
    assert not result.ok
    assert "asks for more than it was granted (host calls: session)" in result.reason
    assert "kithost ext trust asking" in result.reason
    assert host.emit("tool_call", tool_call("ls")).reason == "v2" and "session" not in ext.granted

    manifest = load_manifest(directory)
    host.trust.record(manifest, Request.of(manifest))  # the operator grants it
    result = host.reload("asking")
    assert result.ok, result.reason
    assert host.emit("tool_call", tool_call("ls")).reason == "v3" and "session" in ext.granted


def test_a_dead_extension_is_brought_back_by_a_fixed_version(make_ext: MakeExt,
                                                             new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("gate", "raise SystemExit(3)\n", ["tool_call"])
    host = new_host()
    report = host.load_many([directory])
    assert report.failed and host.extension("gate").state.value == "dead"
    make_ext("gate", GATE.format(text="fixed"), ["tool_call"])
    result = host.reload("gate")
    assert result.ok, result.reason
    assert host.emit("tool_call", tool_call("ls")).reason == "fixed"
    assert host.extension("gate").state.value == "ready"


def test_reload_of_an_unknown_extension_says_so(new_host: Callable[..., ExtensionHost]) -> None:
    result = new_host().reload("nobody")
    assert not result.ok and result.reason == "no extension named 'nobody' (loaded: none loaded)"


def test_reload_while_a_slow_handler_runs_finishes_it_on_the_old_process(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    slow = GATE.replace('@ext.on("tool_call")\ndef gate(event, ctx):\n',
                        '@ext.on("tool_call", deadline_ms=3000)\ndef gate(event, ctx):\n'
                        '    ctx.set_state("running", True)\n    import time; time.sleep(0.5)\n')
    assert slow != GATE
    directory = make_ext("gate", slow.format(text="old"), ["tool_call"])
    host = new_host()
    host.load(directory)
    (directory / "main.py").write_text(GATE.format(text="new"))
    outcomes: list[str | None] = []
    thread = threading.Thread(target=lambda: outcomes.append(host.emit("tool_call", tool_call("ls")).reason))
    thread.start()
    deadline = time.monotonic() + 5
    while not host.state.get("gate", "running") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.state.get("gate", "running")  # the slow handler is running on the old process
    result = host.reload("gate")
    thread.join(10)
    assert result.ok, result.reason
    assert outcomes == ["old"]
    assert host.emit("tool_call", tool_call("ls")).reason == "new"


def test_a_new_version_that_never_says_hello_times_out_and_the_old_one_serves(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("gate", GATE.format(text="old"), ["tool_call"])
    host = new_host(HostConfig(deadlines=Deadlines(start_ms=1000)))
    ext = host.load(directory)
    (directory / "main.py").write_text("import time\ntime.sleep(60)\n")
    result = host.reload("gate")
    assert not result.ok and result.reason == "the new version did not start: no handshake within 1.0 s"
    assert host.emit("tool_call", tool_call("ls")).reason == "old" and ext.reloads == 0


TOOLBOX = """
import time
from ext_sdk import Extension
ext = Extension("toolbox", permissions=["conversation"])

@ext.tool("work", "Works for a while.")
def work(args, ctx):
    ctx.set_state("working", True)
    time.sleep(0.5)
    return "{text}"
"""


def test_a_tool_running_during_a_reload_finishes_on_the_old_version(make_ext: MakeExt,
                                                                    new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("toolbox", TOOLBOX.format(text="old result"), [])
    host = new_host()
    host.load(directory)
    (directory / "main.py").write_text(TOOLBOX.format(text="new result"))
    results: list[tuple[str, bool]] = []
    thread = threading.Thread(target=lambda: results.append(host.invoke_tool("toolbox", "work", {}, 10)))
    thread.start()
    deadline = time.monotonic() + 5
    while not host.state.get("toolbox", "working") and time.monotonic() < deadline:
        time.sleep(0.01)
    result = host.reload("toolbox")
    thread.join(10)
    assert result.ok, result.reason
    assert results == [("old result", False)]
    assert host.invoke_tool("toolbox", "work", {}, 10) == ("new result", False)
