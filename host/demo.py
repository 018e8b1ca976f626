"""``kithost demo``: the bundled extensions and one misbehaving extension, through real processes.

The events are the ones an agent turn fires (input, context_prepare, tool
calls and results, llm_usage, agent_end); each extension runs in its own
process and the output shows what each one did, and that the broken one
(hangs, then crashes) costs the agent only its deadline.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import HostConfig
from .exthost.host import ExtensionHost
from .exthost.outcome import Outcome
from .exthost.services import LocalServices

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ["permission_gate", "secret_redactor", "usage_budget", "context_pruner"]


def _tool_call(call_id: str, command: str) -> dict[str, Any]:
    args = {"command": command}
    return {"tool_call_id": call_id, "tool_name": "bash", "tool_kind": "execute", "input": json.dumps(args),
            "parsed_args": args, "source": "llm"}


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def _timed(host: ExtensionHost, event: str, payload: dict[str, Any]) -> tuple[Outcome, float]:
    start = time.monotonic()
    out = host.emit(event, payload)
    return out, (time.monotonic() - start) * 1000


def run_demo(quiet: bool = False) -> int:
    """Run the demo; returns the exit status."""
    logging.getLogger("kithost").setLevel(logging.ERROR)  # failures are shown below, in context
    with tempfile.TemporaryDirectory(prefix="kithost-demo-") as tmp:
        state = Path(tmp) / "demo.ext-state.json"
        services = LocalServices(out=sys.stdout)
        with ExtensionHost(HostConfig(state_path=state, search_dirs=()), services=services) as host:
            paths = [ROOT / "extensions" / name for name in BUNDLED]
            paths.append(Path(__file__).parent / "demo_extensions" / "misbehaving")
            start = time.monotonic()
            report = host.load_many(paths)
            for name, error in report.failed:
                print(f"failed to load {name}: {error}")
            _say(quiet, f"== loaded {len(report.loaded)} extensions in {(time.monotonic() - start) * 1000:.0f} ms, "
                        "each in its own process:")
            for ext in report.loaded:
                info = ext.info()
                subs = ", ".join(f"{s['event']}({s['policy']}, {s['deadline_ms']} ms)" for s in info["subscriptions"])
                _say(quiet, f"   {ext.name:<16} pid {info['pid']:<7} {subs}")

            _say(quiet, "\n== context_prepare: a 20-message window with a huge old tool output")
            window = [{"index": 0, "role": "system", "content": "You are a coding agent."}]
            for i in range(1, 20):
                role = ["user", "assistant", "tool"][i % 3]
                content = "x" * 5000 if (role == "tool" and i < 6) else f"message {i}"
                msg: dict[str, Any] = {"index": i, "role": role, "content": content}
                if role == "tool":
                    msg["tool_call_id"] = f"t{i}"
                window.append(msg)
            out, ms = _timed(host, "context_prepare", {"messages": window})
            sizes = sum(len(str(m["content"])) for m in out.payload["messages"])
            before = sum(len(str(m["content"])) for m in window)
            _say(quiet, f"   context-pruner: {before} → {sizes} characters "
                        f"({ms:.1f} ms)")

            _say(quiet, "\n== tool_call `ls -la` "
                        "(misbehaving sleeps 600 ms in its handler: 300 ms deadline, fail-open)")
            out, ms = _timed(host, "tool_call", _tool_call("c1", "ls -la"))
            for f in out.failures:
                _say(quiet, f"   {f.handler}: {f.kind} — {f.detail} → policy {f.policy}: skipped")
            _say(quiet, f"   allowed: {not out.stopped}; the agent waited {ms:.0f} ms, not 600 ms")

            _say(quiet, "\n== tool_result with a secret in it (misbehaving crashes in its handler)")
            result = {"tool_call_id": "c1", "tool_name": "bash", "tool_kind": "execute", "input": "{}",
                      "content": "total 8\n.env: OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz123456\n",
                      "is_error": False, "metadata": "{}"}
            out, ms = _timed(host, "tool_result", result)
            for f in out.failures:
                _say(quiet, f"   {f.handler}: {f.kind} — {f.detail} → policy {f.policy}: skipped")
            _say(quiet, f"   the model sees: {out.payload['content'].splitlines()[-1]!r} ({ms:.0f} ms)")

            _say(quiet, "\n== tool_call `rm -rf /` (misbehaving is gone: its handler fails at once, no waiting)")
            out, ms = _timed(host, "tool_call", _tool_call("c2", "rm -rf /"))
            for f in out.failures:
                _say(quiet, f"   {f.handler}: {f.kind} — {f.detail} → policy {f.policy}: skipped")
            _say(quiet, f"   blocked: {out.stopped} by {out.stop.by if out.stop else '-'}: {out.reason} ({ms:.1f} ms)")

            _say(quiet, "\n== llm_usage ×2, then agent_end (usage-budget keeps totals in host state)")
            for step, cost in ((1, 0.0021), (2, None)):
                host.emit("llm_usage", {"input_tokens": 1200, "output_tokens": 80, "cache_read_tokens": 0,
                                        "cache_write_tokens": 0, "cost": cost, "model": "scripted/demo",
                                        "provider": "scripted", "request_id": "", "step_number": step,
                                        "finish_reason": "tool_calls" if step == 1 else "stop"})
            host.emit("agent_end", {"response": "done", "stop_reason": "completed", "tool_call_count": 2,
                                    "tool_names": ["bash", "bash"], "llm_call_count": 2, "input_tokens_delta": 2400,
                                    "output_tokens_delta": 160, "cache_read_tokens_delta": 0,
                                    "cache_write_tokens_delta": 0, "cost_delta": None, "duration_ms": 950})
            host.flush(10)

            print("\n== what each extension did")
            print(f"   {'extension':<16} {'state':<8} {'handled':>7} {'p50 µs':>8} {'failures':<28} last reason")
            for ext in host.extensions():
                info = ext.info()
                stats = info["stats"]
                p50 = f"{stats['latency_p50_us']:.0f}" if stats["latency_p50_us"] else "-"
                fails = ", ".join(f"{k}={v}" for k, v in stats["failures"].items()) or "-"
                print(f"   {ext.name:<16} {info['state']:<8} {stats['handled'] + stats['notified']:>7} {p50:>8} "
                      f"{fails:<28} {info['last_reason']}")
            print(f"\n   state kept by the host: {json.dumps(host.state.snapshot())}")
        print("\nall extension processes stopped; the agent was never blocked longer than a deadline.")
    return 0
