"""Hook adapter benchmark: per-event cost of a command hook run by the adapter, against a native extension.

Cases, all in one run, each a ``tool_call`` gate event emitted to one
extension of a sandboxed host (every layer this machine gives):

1. **native** — ``bench/_exts/gate_none``: a Python handler that returns ``None``
   (the floor of this bench: one round trip to an extension);
2. **adapter, ``exit 0``** — a Claude ``PreToolUse`` hook ``exit 0`` run by the
   hook adapter: one ``bash -c`` per event inside the extension's sandbox;
3. **adapter, the bundled guard** — ``extensions/hooks/claude_guard``'s
   ``block_rm.sh`` (bash + grep) on a harmless command;
4. **bare spawn** — ``subprocess.run(["bash", "-c", "exit 0"])`` from this
   process, unconfined: what starting the command costs by itself;
5. **timeout** — a hook ``sleep 10`` with ``timeout = "200ms"`` (policy open):
   how far past 200 ms control comes back (information).

The ratio adapter / native says what the adapter costs per event; the share of
the bare spawn in the adapter's cost says how much of it is the command start.
``main()`` prints markdown and returns the figures (also saved for ``run.py``).
``BENCH_QUICK=1`` runs a smoke version; ``BENCH_PIN`` as in ``_common``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c  # sets CPU placement before zmq starts

from host import ExtensionHost, HostConfig
from host.config import Sandbox, TrustMode
from host.hooks import importer

ROOT = Path(__file__).resolve().parent.parent
NATIVE = Path(__file__).resolve().parent / "_exts" / "gate_none"
GUARD = ROOT / "extensions" / "hooks" / "claude_guard"
N_NATIVE = 50 if c.QUICK else 1000
N_HOOK = 10 if c.QUICK else 150
N_TIMEOUT = 2 if c.QUICK else 5
EVENT = {"tool_call_id": "c1", "tool_name": "bash", "tool_kind": "execute", "input": '{"command": "ls -la"}',
         "parsed_args": {"command": "ls -la"}, "source": "llm"}


def _hook_folder(root: Path, name: str, command: str, timeout: str, policy: str) -> Path:
    found = importer.Imported("claude", handlers=[{"event": "PreToolUse", "matcher": "Bash", "command": command,
                                                   "timeout": timeout, "policy": policy}])
    out = root / name
    importer.write_extension(out, name, found, [], root / "settings.json")
    return out


def _per_event(host: ExtensionHost, n: int) -> list[float]:
    """µs per emitted tool_call, ``n`` events after a warm-up."""
    for _ in range(max(3, n // 20)):
        host.emit("tool_call", dict(EVENT))
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        out = host.emit("tool_call", dict(EVENT))
        samples.append((time.perf_counter_ns() - start) / 1e3)
        if out.stopped or out.failures:
            raise RuntimeError(f"the event did not pass: {out.reason or out.failures}")
    return samples


def _case(folder: Path, n: int, tmp: Path) -> list[float]:
    config = HostConfig(search_dirs=(), state_path=tmp / f"{folder.name}.json", sandbox=Sandbox(trust=TrustMode.ALL))
    with ExtensionHost(config) as host:
        host.load(folder)
        return _per_event(host, n)


def _spawn(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        subprocess.run(["bash", "-c", "exit 0"], input=b"{}", capture_output=True, check=True)
        samples.append((time.perf_counter_ns() - start) / 1e3)
    return samples


def _timeouts(folder: Path, n: int, tmp: Path) -> list[float]:
    """ms past the hook's 200 ms timeout at which the event came back."""
    config = HostConfig(search_dirs=(), state_path=tmp / "timeout.json", sandbox=Sandbox(trust=TrustMode.ALL))
    with ExtensionHost(config) as host:
        host.load(folder)
        host.emit("tool_call", dict(EVENT))  # warm-up: get_info and the first spawn
        samples = []
        for _ in range(n):
            start = time.perf_counter_ns()
            host.emit("tool_call", dict(EVENT))
            samples.append((time.perf_counter_ns() - start) / 1e6 - 200.0)
        return samples


def _row(label: str, us: list[float], base: float) -> list[str]:
    s = sorted(us)
    p50 = c.pct(s, 50)
    return [label, str(len(s)), f"{p50:.0f}", f"{c.pct(s, 90):.0f}", f"{c.pct(s, 99):.0f}", f"{p50 / base:.1f}x"]


def main() -> dict[str, Any]:
    """Run every case; print the report; return the figures (p50 µs, ratios, timeout overshoot ms)."""
    c.install_signal_handlers()
    c.header("hooks_adapter: a command hook per event vs a native extension",
             [f"{N_NATIVE} native events, {N_HOOK} per hook case, sandboxed host (trust all)"])
    try:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            native = _case(NATIVE, N_NATIVE, tmp)
            base = c.pct(sorted(native), 50)
            print(f"  .. native p50 {base:.0f} µs", file=sys.stderr, flush=True)
            noop = _case(_hook_folder(tmp, "bench-hook-noop", "exit 0", "5s", "closed"), N_HOOK, tmp)
            print(f"  .. adapter exit 0 p50 {c.pct(sorted(noop), 50):.0f} µs", file=sys.stderr, flush=True)
            guard = _case(GUARD, N_HOOK, tmp)
            spawn = _spawn(N_HOOK)
            late = _timeouts(_hook_folder(tmp, "bench-hook-slow", "sleep 10", "200ms", "open"), N_TIMEOUT, tmp)
    finally:
        c.warn_leftovers()
    p50 = {key: c.pct(sorted(v), 50) for key, v in
           (("native", native), ("noop", noop), ("guard", guard), ("spawn", spawn))}
    figures = {
        "hooks_native_us_p50": p50["native"],
        "hooks_adapter_noop_us_p50": p50["noop"],
        "hooks_adapter_guard_us_p50": p50["guard"],
        "hooks_bare_spawn_us_p50": p50["spawn"],
        "hooks_adapter_vs_native_ratio": p50["noop"] / base,
        "hooks_spawn_share_of_adapter": p50["spawn"] / p50["noop"],
        "hooks_timeout_overshoot_ms_p50": c.pct(sorted(late), 50),
        "hooks_timeout_overshoot_ms_max": max(late),
    }
    print(c.markdown_table(
        "per tool_call event (µs), ratio = p50 / native p50",
        ["case", "n", "p50 µs", "p90 µs", "p99 µs", "ratio"],
        [_row("native Python extension (gate_none)", native, base),
         _row("hook adapter: Claude PreToolUse `exit 0`", noop, base),
         _row("hook adapter: extensions/hooks/claude_guard (bash + grep)", guard, base),
         _row("bare `bash -c 'exit 0'` from this process, unconfined", spawn, base)],
        note=(f"adapter / native: **{figures['hooks_adapter_vs_native_ratio']:.0f}x**; the bare command start "
              f"alone is {figures['hooks_spawn_share_of_adapter']:.0%} of the adapter's per-event cost. "
              f"A hook sleeping past `timeout = \"200ms\"` returns control "
              f"{figures['hooks_timeout_overshoot_ms_p50']:.1f} ms late (p50; max "
              f"{figures['hooks_timeout_overshoot_ms_max']:.1f} ms)."),
    ))
    c.write_results("hooks_adapter", figures)
    print(f"_machine load after: {c.load_note()}_")
    print(json.dumps(figures, indent=2), file=sys.stderr)
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
